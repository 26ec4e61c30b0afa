"""smsgate for Django: add ``"smsgate.integrations.django"`` to ``INSTALLED_APPS``.

>>> from smsgate.integrations.django import send_sms
>>> send_sms("+15555550100", "Your order shipped")            # through settings.SMSGATE's backend

Backends (``SMSGATE["backend"]``): ``direct`` sends now through a :class:`smsgate.Gateway`;
``outbox`` stores the message in the durable outbox when the surrounding transaction commits (a
rolled-back view sends nothing) for ``manage.py smsgate_worker`` to send; ``http`` submits to a
remote ``smsgate serve``; ``console`` prints; ``locmem`` keeps messages in
:data:`outbox` (``smsgate.integrations.django.outbox``), and is used automatically under Django's
test runner, as ``mail.outbox`` is. Signals are in :mod:`~smsgate.integrations.django.signals`,
webhook URLs in :mod:`~smsgate.integrations.django.urls`, validators and fields in
:mod:`~smsgate.integrations.django.validators`, :mod:`~smsgate.integrations.django.forms` and
:mod:`~smsgate.integrations.django.fields`.
"""

from __future__ import annotations

import logging
from typing import Any

from smsgate.errors import SmsgateError
from smsgate.message import Message, SendResult, Status

__all__ = ["SMSMessage", "outbox", "send_sms"]

logger = logging.getLogger("smsgate.integrations.django")


class SMSMessage:
    """One text, like Django's ``EmailMessage``: build it, change it, ``send()`` it.

    ``to`` is an E.164 string or a ``phonenumbers.PhoneNumber`` (django-phonenumber-field's
    ``PhoneNumber`` is one); ``options`` are :class:`smsgate.Message` fields (``sender``,
    ``purpose``, ``idempotency_key``, ``send_at``, ``media``, ``metadata``, ...).
    """

    def __init__(self, to: Any, body: str = "", *, backend: str | None = None, **options: Any):
        self.to = to
        self.body = body
        self.backend = backend
        self.options = options
        #: the validated message and the backend's answer, once sent
        self.message: Message | None = None
        self.result: SendResult | None = None

    def __repr__(self) -> str:
        return f"SMSMessage(to={self.to!r}, body={self.body[:30]!r})"

    def build(self) -> Message:
        from smsgate.integrations import core

        return core.build_message(self.to, self.body, **self.options)

    def send(self, fail_silently: bool = False) -> SendResult | None:
        """Hand the message to the backend; the result (status ``queued`` for the outbox and
        http backends, ``canceled`` when a ``pre_send`` receiver cancelled it). With
        ``fail_silently`` a :class:`smsgate.SmsgateError` is logged and None returned."""
        from smsgate.integrations.django import conf, signals

        backend = conf.backend_name(self.backend)
        try:
            try:
                signals.pre_send.send(sender=SMSMessage, sms=self, backend=backend)
            except signals.CancelSend:
                message = self.message or self.build()
                self.result = SendResult(id=message.id, to=message.to, status=Status.CANCELED)
                return self.result
            self.message = self.build()
            if backend == "outbox":
                self.result = self._on_commit(conf, backend)
            else:
                self.result = conf.sender(backend).send(self.message)
                signals.post_send.send(
                    sender=SMSMessage,
                    sms=self,
                    message=self.message,
                    result=self.result,
                    backend=backend,
                )
        except SmsgateError:
            if not fail_silently:
                raise
            logger.warning("SMS to %s not sent", self.to, exc_info=True)
            return None
        return self.result

    def _on_commit(self, conf: Any, backend: str) -> SendResult:
        """Store once the transaction commits: a rolled-back view leaves nothing to send."""
        from django.db import transaction

        from smsgate.integrations.django import signals

        message = self.message
        assert message is not None
        sender = conf.sender(backend)

        def submit() -> None:
            try:
                result = sender.send(message)
            except SmsgateError as exc:
                # After COMMIT there is no caller left to raise to: say what was refused.
                logger.error("SMS to %s refused by the outbox: %s", message.to, exc)
                return
            self.result = result
            signals.post_send.send(
                sender=SMSMessage, sms=self, message=message, result=result, backend=backend
            )

        transaction.on_commit(submit, using=conf.settings().database)
        return SendResult(id=message.id, to=message.to, status=Status.QUEUED)


def send_sms(
    to: Any,
    body: str = "",
    *,
    backend: str | None = None,
    fail_silently: bool = False,
    **options: Any,
) -> SendResult | None:
    """Send one text through ``settings.SMSGATE``'s backend (see :class:`SMSMessage`)."""
    return SMSMessage(to, body, backend=backend, **options).send(fail_silently=fail_silently)


def __getattr__(name: str) -> Any:
    if name == "outbox":
        from smsgate.integrations.django import conf

        return conf.test_outbox()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
