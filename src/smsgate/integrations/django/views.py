"""Provider webhook views: ``include("smsgate.integrations.django.urls")``.

``<provider>/status`` takes delivery receipts and ``<provider>/inbound`` inbound texts, for each
provider configured in ``SMSGATE["providers"]``. The provider's own verify-and-parse code decides:
a request that does not verify gets 403 and changes nothing, a body that is not the provider's
webhook 400, an unknown provider 404. Verified events become signals
(:mod:`~smsgate.integrations.django.signals`); with the outbox backend receipts also move the
stored messages and STOP replies suppress the sender, as ``smsgate serve`` does.

The URL checked against the signature is the one the request arrived at
(``request.build_absolute_uri()``), or ``public_url`` with the request's path when it is set (a
proxy in front of Django rewrites the host).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from smsgate.integrations import core
from smsgate.integrations.django import conf, signals
from smsgate.message import DeliveryEvent, InboundMessage


class SignalListener:
    """Turns :class:`~smsgate.integrations.core.WebhookHandler` events into Django signals."""

    def status_changed(self, provider: str, event: DeliveryEvent) -> None:
        signals.status_changed.send(sender=provider, event=event)

    def inbound_received(self, provider: str, message: InboundMessage) -> None:
        signals.inbound_received.send(sender=provider, message=message)

    def opted_out(
        self, provider: str, recipient: str, our_number: str | None, source: str, text: str | None
    ) -> None:
        signals.opted_out.send(
            sender=provider, recipient=recipient, our_number=our_number, source=source, text=text
        )


def _answer(request: HttpRequest, provider: str, kind: str) -> HttpResponse:
    length = int(request.headers.get("Content-Length") or 0)
    if length > core.MAX_WEBHOOK_BODY:
        return JsonResponse(
            {"error": "too_large", "message": "the webhook body is over 1 MiB"}, status=413
        )
    webhook = core.webhook_request(
        core.public_url_of(request.build_absolute_uri(), conf.settings().config.public_url),
        request.method or "POST",
        request.headers.items(),
        request.body,
    )
    answer = conf.webhook_handler().handle(provider, kind, webhook)
    return JsonResponse(answer.body, status=answer.status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def status_webhook(request: HttpRequest, provider: str) -> HttpResponse:
    return _answer(request, provider, "status")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def inbound_webhook(request: HttpRequest, provider: str) -> HttpResponse:
    return _answer(request, provider, "inbound")
