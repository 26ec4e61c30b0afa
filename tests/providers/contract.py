"""The shared contract every provider passes, against its emulator over real loopback HTTP.

A provider's test module subclasses :class:`ProviderContract`, sets the class attributes and, where
its webhooks differ, overrides the small hooks at the top. The tests themselves are not changed
per provider: if a provider cannot pass them, the provider (or the base) is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import pytest

import smsgate
from smsgate.emulators.base import Emulator, EmulatorThread, Faults
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    InvalidRecipient,
    OptedOut,
    RateLimited,
    TransientError,
    UnsupportedFeature,
    WebhookVerificationError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.base import Provider, WebhookRequest
from tests.support.webhooks import WebhookReceiver

GOOD = "+15555550100"
GOOD_2 = "+447700900123"
MAGIC_INVALID = "+15005550001"
MAGIC_OPTED_OUT = "+15005550004"
MEDIA = "https://example.com/cat.jpg"


def with_options(url: str, **options: str) -> str:
    joiner = "&" if "?" in url else "?"
    return url + joiner + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in options.items())


def post_inbound(emulator: EmulatorThread, url: str, body: str, media: Sequence[str] = ()) -> None:
    """Have the emulator deliver an incoming message from +15555550199 to ``url``."""
    import requests

    answer = requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={
            "from": "+15555550199",
            "to": "+15005550006",
            "body": body,
            "media": list(media),
            "url": url,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


class ProviderContract:
    #: the emulator class to run
    emulator_cls: ClassVar[type[Emulator]]
    #: credentials the emulator will refuse, in the provider URL's form
    wrong_credentials: ClassVar[str]
    #: the option name that carries the status-callback URL in the provider URL
    callback_option: ClassVar[str] = "callback"
    #: whether the provider's webhooks carry a timestamp that can go stale
    signs_timestamps: ClassVar[bool] = False
    #: whether the provider accepts a message to an opted-out recipient and reports the opt-out
    #: later, in a failed delivery receipt (Plivo), instead of refusing the send with OptedOut
    opt_out_in_receipt: ClassVar[bool] = False
    #: whether the provider's webhook authentication covers the body (a signature); False for a
    #: provider that offers only a secret in the URL (Infobip), where a changed body cannot show
    signs_body: ClassVar[bool] = True

    # -- hooks ----------------------------------------------------------------------------------

    def provider_url(self, emulator: Emulator, **options: str) -> str:
        url = emulator.provider_url()
        return with_options(url, **options) if options else url

    def webhook_provider(self, emulator: Emulator, *, wrong_key: bool = False) -> Provider:
        """The provider object a server would use to verify this emulator's webhooks."""
        if wrong_key:
            other = self.emulator_cls(credentials=self.wrong_credentials)
            other.url = emulator.url
            return create_provider(other.provider_url())
        return create_provider(emulator.provider_url())

    def stale(self, request: WebhookRequest, emulator: Emulator) -> WebhookRequest:
        """The same webhook re-signed with a timestamp older than the tolerance."""
        raise NotImplementedError("providers whose webhooks carry timestamps override this")

    def secrets(self, emulator: Emulator) -> list[str]:
        """Values that must never appear in logs, reprs or errors."""
        return [part for part in emulator.credentials.split(":")[1:] if part] or [
            emulator.credentials
        ]

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def emulator(self) -> Iterator[EmulatorThread]:
        running = self.emulator_cls(faults=Faults(seed=7)).run_in_thread()
        yield running
        running.stop()

    @pytest.fixture
    def gateway(self, emulator: EmulatorThread) -> Iterator[smsgate.Gateway]:
        gateway = smsgate.Gateway.from_url(self.provider_url(emulator.emulator))
        yield gateway
        gateway.close()

    def accepted(self, emulator: EmulatorThread) -> list[dict[str, Any]]:
        summary: dict[str, Any] = emulator.call(emulator.emulator.summary)
        return summary["messages"]

    # -- sending --------------------------------------------------------------------------------

    def test_send_returns_provider_id_and_reaches_the_provider(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        result = gateway.send(GOOD, "Your code is 481902")
        assert result.ok
        assert result.status in (Status.QUEUED, Status.SENT, Status.SENDING)
        assert result.provider_message_id
        assert result.segments == 1 and result.encoding == "GSM-7"
        [stored] = self.accepted(emulator)
        assert stored["to"].lstrip("+") == GOOD.lstrip("+")
        assert stored["body"] == "Your code is 481902"
        assert stored["id"] == result.provider_message_id

    def test_unicode_body_arrives_intact(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        result = gateway.send(GOOD, "Привет 😜")
        assert result.encoding == "UCS-2"
        assert self.accepted(emulator)[0]["body"] == "Привет 😜"

    def test_mms_is_sent_or_refused_before_any_request(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        provider = next(iter(gateway.providers.values()))
        if provider.capabilities.mms:
            result = gateway.send(GOOD, "look", media=(MEDIA,))
            assert result.ok
            assert self.accepted(emulator)[0]["media"] == [MEDIA]
        else:
            with pytest.raises(UnsupportedFeature):
                gateway.send(GOOD, "look", media=(MEDIA,))
            assert self.accepted(emulator) == []

    def test_invalid_recipient(self, gateway: smsgate.Gateway, emulator: EmulatorThread) -> None:
        with pytest.raises(InvalidRecipient) as info:
            gateway.send(MAGIC_INVALID, "hello")
        assert info.value.code and info.value.raw is not None
        assert self.accepted(emulator) == []

    def test_opted_out_recipient(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        if not self.opt_out_in_receipt:
            with pytest.raises(OptedOut) as info:
                gateway.send(MAGIC_OPTED_OUT, "hello")
            assert info.value.code
            return
        # Accepted (the send raises nothing), then failed in a receipt that says why.
        self._status_webhooks(emulator, webhook_receiver, to=MAGIC_OPTED_OUT)
        provider = self.webhook_provider(emulator.emulator)
        final = {Status.FAILED, Status.UNDELIVERED}
        events = self._events_until(provider, webhook_receiver, final)
        failed = [e for e in events if e.status in final]
        assert any(e.opted_out and e.error_code for e in failed)
        assert all(e.provider_message_id == self._sent_id for e in failed)

    def test_429_becomes_rate_limited_with_retry_after(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        emulator.call(
            lambda: emulator.emulator.faults.update({"rate_limit_rate": 1, "retry_after": 7})
        )
        with pytest.raises(RateLimited) as info:
            gateway.send(GOOD, "hello")
        assert info.value.retry_after == 7
        assert info.value.retryable

    def test_unavailable_is_transient(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        emulator.call(lambda: emulator.emulator.faults.update({"error_rate": 1}))
        with pytest.raises(TransientError):
            gateway.send(GOOD, "hello")

    def test_bad_credentials_are_an_auth_error(self, emulator: EmulatorThread) -> None:
        other = self.emulator_cls(credentials=self.wrong_credentials)
        other.url = emulator.url
        with (
            smsgate.Gateway.from_url(other.provider_url()) as gateway,
            pytest.raises(AuthError) as info,
        ):
            gateway.send(GOOD, "hello")
        assert info.value.failover and not info.value.retryable
        assert self.accepted(emulator) == []

    def test_hang_past_timeout_is_ambiguous(self, emulator: EmulatorThread) -> None:
        emulator.call(lambda: emulator.emulator.faults.update({"hang_rate": 1, "hang_seconds": 3}))
        url = self.provider_url(emulator.emulator, timeout="0.3")
        with smsgate.Gateway.from_url(url) as gateway, pytest.raises(AmbiguousSend):
            gateway.send(GOOD, "hello")

    def test_reset_after_accept_is_ambiguous(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        emulator.call(lambda: emulator.emulator.faults.update({"reset_rate": 1}))
        with pytest.raises(AmbiguousSend):
            gateway.send(GOOD, "hello")
        assert len(self.accepted(emulator)) == 1  # it did arrive: resending blindly would duplicate

    def test_refused_connection_is_transient(self, emulator: EmulatorThread) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = self.provider_url(emulator.emulator).replace(emulator.url, f"http://127.0.0.1:{port}")
        with smsgate.Gateway.from_url(url) as gateway, pytest.raises(TransientError):
            gateway.send(GOOD, "hello")

    def test_send_many_mixes_good_and_bad_recipients_in_order(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        numbers = [GOOD, MAGIC_INVALID, GOOD_2, MAGIC_OPTED_OUT, "+15555550101"]
        results = gateway.send_many([Message(to=n, body="Your order shipped") for n in numbers])
        assert [r.to for r in results] == numbers
        # A provider that reports opt-outs in receipts accepts the opted-out recipient here.
        assert [r.ok for r in results] == [True, False, True, self.opt_out_in_receipt, True]
        assert isinstance(results[1].error, InvalidRecipient)
        accepted = [GOOD, GOOD_2, "+15555550101"]
        if self.opt_out_in_receipt:
            assert results[3].provider_message_id
            accepted.append(MAGIC_OPTED_OUT)
        else:
            assert isinstance(results[3].error, OptedOut)
        assert sorted(m["to"].lstrip("+") for m in self.accepted(emulator)) == sorted(
            n.lstrip("+") for n in accepted
        )

    def test_no_secret_in_logs_reprs_or_errors(
        self, emulator: EmulatorThread, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        url = self.provider_url(emulator.emulator)
        texts = []
        with smsgate.Gateway.from_url(url) as gateway:
            texts.append(repr(gateway))
            gateway.send(GOOD, "hello")
            try:
                gateway.send(MAGIC_INVALID, "hello")
            except smsgate.SmsgateError as exc:
                texts += [str(exc), repr(exc)]
        other = self.emulator_cls(credentials=self.wrong_credentials)
        other.url = emulator.url
        with smsgate.Gateway.from_url(other.provider_url()) as gateway:
            try:
                gateway.send(GOOD, "hello")
            except smsgate.SmsgateError as exc:
                texts += [str(exc), repr(exc)]
        from smsgate.providers.url import ProviderURL

        texts.append(ProviderURL.parse(url).masked())
        joined = caplog.text + "\n".join(texts)
        for secret in self.secrets(emulator.emulator) + [s for s in self.secrets(other) if s]:
            assert secret not in joined

    # -- webhooks -------------------------------------------------------------------------------

    def _require(self, emulator: EmulatorThread, capability: str) -> None:
        """Skip a webhook test for a provider that declares it has no such webhook."""
        capabilities = create_provider(emulator.emulator.provider_url()).capabilities
        if not getattr(capabilities, capability):
            pytest.skip(f"{self.emulator_cls.name} declares no {capability.replace('_', ' ')}")

    def _status_webhooks(
        self, emulator: EmulatorThread, receiver: WebhookReceiver, count: int = 1, to: str = GOOD
    ) -> list[WebhookRequest]:
        self._require(emulator, "delivery_webhooks")
        url = self.provider_url(
            emulator.emulator, **{self.callback_option: f"{receiver.url}/status"}
        )
        with smsgate.Gateway.from_url(url) as gateway:
            result = gateway.send(to, "track me")
        requests = receiver.wait(count, path="/status")
        self._sent_id = result.provider_message_id
        self._our_id = result.id
        return requests

    def _events_until(
        self,
        provider: Provider,
        receiver: WebhookReceiver,
        wanted: set[Status],
        timeout: float = 5.0,
    ) -> list[smsgate.DeliveryEvent]:
        """Parse every status webhook received until one reaches a wanted status."""
        import time

        deadline = time.monotonic() + timeout
        events: list[smsgate.DeliveryEvent] = []
        while time.monotonic() < deadline:
            requests = [r.request for r in receiver.received if r.path == "/status"]
            events = [e for r in requests for e in provider.handle_status_webhook(r)]
            if any(e.status in wanted for e in events):
                return events
            time.sleep(0.02)
        raise AssertionError(f"no {wanted} receipt; got {[e.status for e in events]}")

    def test_delivery_receipt_verifies_and_parses(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        self._status_webhooks(emulator, webhook_receiver)
        provider = self.webhook_provider(emulator.emulator)
        events = self._events_until(provider, webhook_receiver, {Status.DELIVERED})
        assert all(e.provider_message_id == self._sent_id for e in events)
        assert all(e.event_id for e in events)
        assert len({e.event_id for e in events}) == len(events)
        assert all(e.raw for e in events)

    def test_a_repeated_text_is_its_own_message_with_its_own_receipts(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        # Same recipient, sender and body twice: a real provider sends both and reports both.
        self._require(emulator, "delivery_webhooks")
        url = self.provider_url(
            emulator.emulator, **{self.callback_option: f"{webhook_receiver.url}/status"}
        )
        with smsgate.Gateway.from_url(url) as gateway:
            first = gateway.send(GOOD, "Your code is 1234")
            second = gateway.send(GOOD, "Your code is 1234")
        assert first.provider_message_id and second.provider_message_id
        assert first.provider_message_id != second.provider_message_id
        provider = self.webhook_provider(emulator.emulator)
        import time

        deadline = time.monotonic() + 5
        delivered: set[str | None] = set()
        while time.monotonic() < deadline and len(delivered) < 2:
            requests = [r.request for r in webhook_receiver.received if r.path == "/status"]
            delivered = {
                e.provider_message_id
                for r in requests
                for e in provider.handle_status_webhook(r)
                if e.status is Status.DELIVERED
            }
            time.sleep(0.02)
        assert delivered == {first.provider_message_id, second.provider_message_id}

    def test_undelivered_receipt_keeps_code_and_reason(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        emulator.call(
            lambda: setattr(emulator.emulator.callbacks, "outcomes", {"undelivered": 1.0})
        )
        provider = self.webhook_provider(emulator.emulator)
        self._status_webhooks(emulator, webhook_receiver)
        events = self._events_until(provider, webhook_receiver, {Status.UNDELIVERED, Status.FAILED})
        bad = [e for e in events if e.status in (Status.UNDELIVERED, Status.FAILED)]
        assert bad[0].error_code and bad[0].reason
        assert bad[0].provider_message_id == self._sent_id

    def test_tampered_webhook_is_refused(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        if not self.signs_body:
            pytest.skip(
                "this provider signs no webhook: a URL secret authenticates the sender only"
            )
        [request, *_] = self._status_webhooks(emulator, webhook_receiver)
        provider = self.webhook_provider(emulator.emulator)
        body = request.body
        tampered_body = (
            body.replace(b"delivered", b"failed") if b"delivered" in body else body + b" "
        )
        if tampered_body == body or not body:
            tampered_body = body[:-1] + (b"x" if body[-1:] != b"x" else b"y")
        tampered = WebhookRequest(request.url, request.method, request.headers, tampered_body)
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(tampered)

    def test_webhook_signed_with_another_key_is_refused(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        [request, *_] = self._status_webhooks(emulator, webhook_receiver)
        with pytest.raises(WebhookVerificationError):
            self.webhook_provider(emulator.emulator, wrong_key=True).handle_status_webhook(request)

    def test_webhook_with_stale_timestamp_is_refused(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        if not self.signs_timestamps:
            pytest.skip("this provider's webhooks carry no timestamp")
        [request, *_] = self._status_webhooks(emulator, webhook_receiver)
        provider = self.webhook_provider(emulator.emulator)
        provider.handle_status_webhook(request)  # fresh: accepted
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(self.stale(request, emulator.emulator))

    def test_inbound_message_verifies_and_parses(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        self._require(emulator, "inbound")
        post_inbound(emulator, f"{webhook_receiver.url}/inbound", "STOP")
        [request] = webhook_receiver.wait(1, path="/inbound")
        [inbound] = self.webhook_provider(emulator.emulator).handle_inbound_webhook(request)
        assert inbound.sender.lstrip("+") == "15555550199"
        assert inbound.body == "STOP"
        assert inbound.provider_message_id
