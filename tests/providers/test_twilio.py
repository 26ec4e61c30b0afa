from __future__ import annotations

from smsgate.emulators.twilio import TwilioEmulator
from smsgate.message import Message
from tests.providers.contract import ProviderContract
from tests.providers.reconcile_contract import ReconcileContract
from tests.support.webhooks import WebhookReceiver


class TestTwilioContract(ProviderContract):
    emulator_cls = TwilioEmulator
    wrong_credentials = "AC00000000000000000000000000000000:not-the-token"


def test_options_scoped_to_another_provider_are_ignored_and_own_ones_pass_through() -> None:
    import pytest

    import smsgate

    with (
        TwilioEmulator().run_in_thread() as emulator,
        smsgate.Gateway.from_url(emulator.emulator.provider_url()) as gateway,
    ):
        # An SMTP-only option scoped to "smtp" does not stop Twilio from sending...
        gateway.send("+15555550100", "hi", provider_options={"smtp": {"carrier": "verizon"}})
        # ...Twilio's own scoped option reaches the request...
        gateway.send("+15555550101", "hi", provider_options={"twilio": {"SmartEncoded": "true"}})
        # ...and an unknown flat option is refused loudly before anything is sent.
        with pytest.raises(smsgate.UnsupportedFeature, match="carrier"):
            gateway.send("+15555550102", "hi", provider_options={"carrier": "verizon"})
        messages = emulator.call(emulator.emulator.summary)["messages"]
    assert [m["to"] for m in messages] == ["+15555550100", "+15555550101"]
    assert messages[1]["fields"]["SmartEncoded"] == "true"
    assert "SmartEncoded" not in messages[0]["fields"]


def test_signature_counts_repeated_identical_parameters_once_like_twilios_validator() -> None:
    from twilio.request_validator import RequestValidator

    from smsgate.providers.signing import twilio_signature

    class MultiDict(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    pairs = [
        ("MediaUrl", "https://b"),
        ("To", "+1555"),
        ("MediaUrl", "https://b"),
        ("MediaUrl", "https://a"),
    ]
    params = MultiDict()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    url = "https://hooks.example.com/twilio/status?x=1"
    ours = twilio_signature("secret-token", url, pairs)
    assert ours == RequestValidator("secret-token").compute_signature(url, params)
    assert ours != twilio_signature("secret-token", url, [*pairs, ("MediaUrl", "https://c")])


def test_reconcile_finds_an_ambiguous_send_but_not_an_older_identical_text() -> None:
    import asyncio
    import time

    from smsgate.message import Message
    from smsgate.providers import create_provider

    with TwilioEmulator().run_in_thread() as emulator:
        provider = create_provider(emulator.emulator.provider_url())
        earlier = Message(to="+15555550100", body="Your order shipped")

        async def scenario() -> tuple[object, object, object]:
            sent = await provider.asend(earlier)
            again = Message(to="+15555550100", body="Your order shipped")
            # Stored long before: the earlier identical text is found and is the one sent.
            found = await provider.areconcile(again, since=time.time() - 60)
            # Stored after the provider created it: the earlier text cannot be this message.
            missing = await provider.areconcile(again, since=time.time() + 5)
            await provider.aclose()
            return sent, found, missing

        sent, found, missing = asyncio.run(scenario())
    assert found is not None and found.provider_message_id == sent.provider_message_id  # type: ignore[attr-defined]
    assert missing is None


def _reconcile(
    emulator: TwilioEmulator, url: str, message: object, since: float, **attrs: int
) -> object:
    import asyncio

    from smsgate.providers import create_provider

    provider = create_provider(url)
    for name, value in attrs.items():
        setattr(provider, name, value)

    async def run() -> object:
        try:
            return await provider.areconcile(message, since=since)  # type: ignore[arg-type]
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_reconcile_reads_every_page_of_the_window_and_finds_queued_and_sent_messages() -> None:
    import asyncio
    import time

    import pytest

    import smsgate
    from smsgate.errors import AmbiguousSend
    from smsgate.message import Message

    emulator = TwilioEmulator()
    emulator.max_page_size = 3
    emulator.callbacks.delay = 0.05
    with (
        emulator.run_in_thread() as running,
        smsgate.Gateway.from_url(emulator.provider_url()) as gateway,
    ):
        since = time.time()
        first = gateway.send("+15555550100", "body 0")
        for i in range(1, 10):
            gateway.send("+15555550100", f"body {i}")
        # Once all are sent the first is found by DateSent, on the last of four pages.
        sent = emulator.wait_for(
            lambda: all(emulator._resource(m)["date_sent"] for m in emulator.messages)
        )
        assert asyncio.run_coroutine_threadsafe(sent, running.loop).result(10)
        found = _reconcile(
            emulator, emulator.provider_url(), Message(to="+15555550100", body="body 0"), since
        )
        assert found is not None and found.provider_message_id == first.provider_message_id  # type: ignore[attr-defined]
        # Read to the last page, no such text: a proven miss.
        assert (
            _reconcile(
                emulator, emulator.provider_url(), Message(to="+15555550100", body="other"), since
            )
            is None
        )
        # More pages than the lookup may read: no conclusion, not "not sent".
        with pytest.raises(AmbiguousSend, match="more than 2 pages"):
            _reconcile(
                emulator,
                emulator.provider_url(),
                Message(to="+15555550100", body="other"),
                since,
                reconcile_max_pages=2,
            )
        # Taken but not sent yet (no date_sent, so no DateSent filter lists it): still found.
        running.call(lambda: setattr(emulator.callbacks, "delay", 30))
        queued = gateway.send("+15555550100", "still queued")
        again = _reconcile(
            emulator,
            emulator.provider_url(),
            Message(to="+15555550100", body="still queued"),
            since,
        )
        assert again is not None and again.provider_message_id == queued.provider_message_id  # type: ignore[attr-defined]


def test_reconcile_that_cannot_read_a_page_is_no_proof_of_absence() -> None:
    import time

    import pytest

    import smsgate
    from smsgate.errors import AmbiguousSend
    from smsgate.message import Message

    emulator = TwilioEmulator()
    with (
        emulator.run_in_thread() as running,
        smsgate.Gateway.from_url(emulator.provider_url()) as gateway,
    ):
        since = time.time()
        gateway.send("+15555550100", "hello")
        running.call(lambda: emulator.faults.update({"error_rate": 1}))
        with pytest.raises(AmbiguousSend, match="partial search proves nothing"):
            _reconcile(
                emulator, emulator.provider_url(), Message(to="+15555550100", body="gone?"), since
            )
        with pytest.raises(AmbiguousSend, match="no time of the first attempt"):
            _reconcile(
                emulator, emulator.provider_url(), Message(to="+15555550100", body="x"), None
            )  # type: ignore[arg-type]


def test_the_emulators_inbound_webhook_carries_twilios_legacy_fields_and_parses(
    webhook_receiver: WebhookReceiver,
) -> None:
    import requests

    from smsgate.providers import create_provider

    receiver = webhook_receiver
    with TwilioEmulator().run_in_thread() as running:
        answer = requests.post(
            f"{running.url}/_emulator/inbound",
            json={
                "from": "+15555550199",
                "to": "+15005550006",
                "body": "hi",
                "url": f"{receiver.url}/in",
            },
            timeout=10,
        )
        assert answer.status_code == 200
        [request] = receiver.wait(1)
        form = dict(request.form())
        provider = create_provider(running.emulator.provider_url())
        [inbound] = provider.handle_inbound_webhook(request)
    assert form["SmsMessageSid"] == form["MessageSid"] == form["SmsSid"]
    assert form["SmsStatus"] == "received"
    assert inbound.provider_message_id == form["MessageSid"] and inbound.body == "hi"


class TestTwilioReconcile(ReconcileContract):
    emulator_cls = TwilioEmulator

    def decoys(self, message: Message) -> list[Message]:
        # Twilio lists by recipient and tells messages apart by their text.
        return [Message(to=message.to, body=f"another text {i}") for i in range(5)]
