"""The SMPP provider against smsgate's SMSC emulator, over real loopback TCP.

The shared contract runs where it fits; the tests it phrases in HTTP terms (a Retry-After header,
an HTTP port to refuse, webhooks) are restated in SMPP terms below it. Then what only SMPP has:
long messages in every mode and coding, receipts folded across parts with ids in either form,
inbound reassembly, the window across a dropped connection, throttling, binds and the mapping of
every command status.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

import smsgate
from smsgate.clock import FakeClock
from smsgate.emulators.base import Callbacks, EmulatorThread, Faults
from smsgate.emulators.smpp import SmppEmulator
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InvalidMessage,
    InvalidRecipient,
    RateLimited,
    SmsgateError,
    TransientError,
)
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.smpp import QueueSink, SmppProvider, error_for_status, id_keys
from smsgate.smpp import pdu as p
from tests.providers.contract import GOOD, ProviderContract, with_options

TO = "+4915112345678"
LONG_TEXTS = {
    "gsm7": "The quick brown fox jumps over the lazy dog {with braces} € " * 6,
    "latin1": "Grüße aus Köln, ça va? Ñandú " * 12,
    "ucs2": "Привет, мир 😜 " * 12,
}


class TestSmppContract(ProviderContract):
    emulator_cls = SmppEmulator
    wrong_credentials = "smsgate:wrong"
    # SMPP has no opt-out status: the SMSC accepts and the receipt says undeliverable.
    opt_out_in_receipt = True

    def test_429_becomes_rate_limited_with_retry_after(
        self, gateway: smsgate.Gateway, emulator: EmulatorThread
    ) -> None:
        # SMPP's throttle carries no Retry-After: the provider's own back-off is the answer.
        emulator.call(lambda: emulator.emulator.faults.update({"rate_limit_rate": 1}))
        url = self.provider_url(emulator.emulator, throttle_backoff="7")
        with smsgate.Gateway.from_url(url) as gw, pytest.raises(RateLimited) as info:
            gw.send(GOOD, "hello")
        assert info.value.retry_after == 7
        assert info.value.retryable and info.value.code == "ESME_RTHROTTLED"

    def test_refused_connection_is_transient(self, emulator: EmulatorThread) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        em = emulator.emulator
        assert isinstance(em, SmppEmulator)
        url = self.provider_url(em, connect_timeout="0.2", backoff="0.05").replace(
            f":{em.smpp_port}?", f":{port}?"
        )
        with smsgate.Gateway.from_url(url) as gateway, pytest.raises(TransientError) as info:
            gateway.send(GOOD, "hello")
        assert f"127.0.0.1:{port}" in str(info.value)

    def test_bad_credentials_are_an_auth_error(self, emulator: EmulatorThread) -> None:
        url = emulator.emulator.provider_url().replace(":emulator@", ":wrong@")
        with smsgate.Gateway.from_url(url) as gateway, pytest.raises(AuthError) as info:
            gateway.send(GOOD, "hello")
        assert info.value.failover and not info.value.retryable
        assert info.value.code == "ESME_RINVPASWD"
        assert self.accepted(emulator) == []

    def test_no_secret_in_logs_reprs_or_errors(
        self, emulator: EmulatorThread, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        url = emulator.emulator.provider_url()
        texts = []
        for candidate in (url, url.replace(":emulator@", ":wrong@")):
            with smsgate.Gateway.from_url(candidate) as gateway:
                texts.append(repr(gateway))
                texts.append(repr(next(iter(gateway.providers.values()))))
                for to in (GOOD, "+15005550001"):
                    try:
                        gateway.send(to, "hello")
                    except SmsgateError as exc:
                        texts += [str(exc), repr(exc)]
        from smsgate.providers.url import ProviderURL

        texts.append(ProviderURL.parse(url).masked())
        joined = caplog.text + "\n".join(texts)
        assert "emulator" not in joined.replace("emulator@", "").replace("-emulator", "")
        assert ":wrong" not in joined and "AuthError" in joined

    def test_inbound_message_verifies_and_parses(
        self, emulator: EmulatorThread, webhook_receiver: Any
    ) -> None:
        # No webhook: the message arrives on the bind and reaches the provider's sink.
        smsc = emulator.emulator
        assert isinstance(smsc, SmppEmulator)

        async def main() -> None:
            provider = create_provider(emulator.emulator.provider_url())
            sink = QueueSink()
            await provider.alisten(sink)
            await _until(lambda: bool(smsc.receivers()))
            emulator.call(lambda: smsc.inject_inbound("+15555550199", "+15005550006", "STOP"))
            inbound = await asyncio.wait_for(sink.inbound_messages.get(), 5)
            await provider.aclose()
            assert inbound.sender.lstrip("+") == "15555550199"
            assert inbound.body == "STOP" and inbound.provider_message_id

        asyncio.run(main())


# -- SMPP-only behaviour ----------------------------------------------------------------------


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def _emulator(**kwargs: Any) -> SmppEmulator:
    kwargs.setdefault("callbacks", Callbacks(delay=0.01))
    emulator = SmppEmulator(**kwargs)
    await emulator.start()
    return emulator


async def _provider(emulator: SmppEmulator, **options: Any) -> SmppProvider:
    provider = create_provider(with_options(emulator.provider_url(), **options))
    assert isinstance(provider, SmppProvider)
    return provider


@pytest.fixture
def smsc() -> Callable[..., Any]:
    """An async context manager: a started emulator, stopped after."""
    import contextlib

    @contextlib.asynccontextmanager
    async def make(**kwargs: Any) -> AsyncIterator[SmppEmulator]:
        emulator = await _emulator(**kwargs)
        try:
            yield emulator
        finally:
            await emulator.stop()

    return make


@pytest.mark.parametrize("mode", p.LONG_MODES)
@pytest.mark.parametrize("coding", list(LONG_TEXTS))
@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_long_messages_arrive_whole_in_every_mode(
    smsc: Any, mode: str, coding: str, packed: bool
) -> None:
    text = LONG_TEXTS[coding]

    async def main() -> None:
        async with smsc(packed=packed) as emulator:
            provider = await _provider(emulator, long=mode, latin1="true")
            result = await provider.asend(Message(to=TO, body=text, sender="MyApp"))
            await provider.aclose()
            [stored] = emulator.messages
            assert stored.body == text
            expected_coding = {"gsm7": 0, "latin1": 3, "ucs2": 8}[coding]
            assert stored.fields["data_coding"] == expected_coding
            assert result.raw["data_coding"] == expected_coding
            parts = emulator.submits
            assert result.segments == parts == len(result.raw["message_ids"])
            # Latin-1 carries 134 characters a part where UCS-2 would need 6 parts of 67.
            assert parts == (1 if mode == "payload" else 3)
            pdus = [x for x in emulator.captured() if x["command"] == "submit_sm"]
            if mode == "sar":
                assert {x["tlvs"]["sar_total_segments"] for x in pdus} == {parts}
            elif mode == "payload":
                assert "message_payload" in pdus[0]["tlvs"]
                assert pdus[0]["fields"]["short_message"] == ""
            else:
                udh = bytes.fromhex(pdus[0]["fields"]["short_message"])
                assert udh[1] == (0x08 if mode == "udh16" else 0x00)

    run(main)


def test_one_part_message_in_each_coding(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator, latin1="true")
            for body, coding in (("Code 1234 [ok]", 0), ("Café ½", 3), ("Ж 😜", 8)):
                result = await provider.asend(Message(to=TO, body=body, sender="MyApp"))
                assert result.segments == 1 and result.raw["data_coding"] == coding
                assert emulator.messages[-1].body == body
            await provider.aclose()

    run(main)


def test_one_body_to_many_numbers_and_senders(smsc: Any) -> None:
    # A campaign: the same text to several numbers from two senders, then long texts (whose
    # concatenation reference must differ from one message to the next).
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator)
            numbers = [f"+49151123456{n:02d}" for n in range(6)]
            for index, to in enumerate(numbers):
                sender = "MyApp" if index % 2 else "+4915100000000"
                await provider.asend(Message(to=to, body="Sale ends today", sender=sender))
            first = await provider.asend(Message(to=TO, body="z" * 300, sender="MyApp"))
            second = await provider.asend(Message(to=TO, body="z" * 300, sender="MyApp"))
            await provider.aclose()
            stored = emulator.messages[: len(numbers)]
            assert [m.to for m in stored] == [n.lstrip("+") for n in numbers]
            assert {m.body for m in stored} == {"Sale ends today"}
            assert [m.sender for m in stored] == ["4915100000000", "MyApp"] * 3
            pdus = [x for x in emulator.captured() if x["command"] == "submit_sm"]
            assert [x["fields"]["source_addr_ton"] for x in pdus[:2]] == [1, 5]
            assert first.segments == second.segments == 2
            references = {bytes.fromhex(x["fields"]["short_message"])[3] for x in pdus[-4:]}
            assert len(references) == 2
            assert [m.body for m in emulator.messages[-2:]] == ["z" * 300] * 2

    run(main)


def test_a_sender_too_long_for_smpp_is_refused_before_sending(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator)
            with pytest.raises(InvalidMessage) as info:
                await provider.asend(Message(to=TO, body="hi", sender="A" * 21))
            await provider.aclose()
            assert info.value.field == "sender" and "at most 20" in str(info.value)
            assert emulator.submits == 0

    run(main)


@pytest.mark.parametrize("receipt_ids", ["hex", "decimal"])
@pytest.mark.parametrize("receipt_form", ["text", "tlv", "both"])
def test_receipts_of_all_parts_fold_into_one_status(
    smsc: Any, receipt_ids: str, receipt_form: str
) -> None:
    async def main() -> None:
        async with smsc(receipt_ids=receipt_ids, receipt_form=receipt_form) as emulator:
            provider = await _provider(emulator)
            sink = QueueSink()
            await provider.alisten(sink)
            message = Message(to=TO, body="x" * 400, sender="MyApp")
            result = await provider.asend(message)
            single = await provider.asend(Message(to=TO, body="short", sender="MyApp"))
            events = [await asyncio.wait_for(sink.deliveries.get(), 5) for _ in range(2)]
            await provider.aclose()
            folded = next(e for e in events if e.parts or e.message_id == message.id)
            assert folded.status == Status.DELIVERED
            assert folded.provider_message_id == result.provider_message_id
            assert folded.message_id == message.id
            assert "3 parts" in (folded.reason or "")
            other = next(e for e in events if e is not folded)
            assert other.provider_message_id == single.provider_message_id
            assert other.status == Status.DELIVERED
            assert sink.deliveries.empty()  # one event per message, not per part

    run(main)


def test_one_undelivered_part_makes_the_message_undelivered(smsc: Any) -> None:
    async def main() -> None:
        mix = Callbacks(delay=0.01, outcomes={"delivered": 1, "undelivered": 1})
        async with smsc(callbacks=mix, faults=Faults(seed=3)) as emulator:
            provider = await _provider(emulator)
            sink = QueueSink()
            await provider.alisten(sink)
            result = await provider.asend(Message(to=TO, body="y" * 1000, sender="MyApp"))
            event = await asyncio.wait_for(sink.deliveries.get(), 5)
            await provider.aclose()
            outcomes = [entry["stat"] for entry in emulator.callback_log]
            assert len(outcomes) == result.segments == 7
            assert "UNDELIV" in outcomes and "DELIVRD" in outcomes
            assert event.status == Status.UNDELIVERED
            assert event.error_code == "001"

    run(main)


def test_the_fold_survives_a_reconnect_between_the_receipts_of_the_parts(smsc: Any) -> None:
    # Receipts sent by hand (the automatic ones would come after a minute): the first part's
    # on the first bind, the others after the SMSC dropped it and the provider bound again.
    async def main() -> None:
        async with smsc(callbacks=Callbacks(delay=60)) as emulator:
            provider = await _provider(emulator, backoff="0.05")
            sink = QueueSink()
            await provider.alisten(sink)
            message = Message(to=TO, body="w" * 400, sender="MyApp")
            result = await provider.asend(message)
            part_ids = result.raw["message_ids"]
            submits = [pdu for pdu in emulator._captured if pdu.command == p.Command.SUBMIT_SM]
            assert len(part_ids) == len(submits) == 3
            emulator.send_receipt("smsgate", submits[0], part_ids[0], "delivered")
            # Answered: the provider holds the first part's state when the bind drops.
            await _until(
                lambda: any(x.command == p.Command.DELIVER_SM_RESP for x in emulator._captured)
            )
            assert emulator.drop_connections() == 1
            await _until(lambda: emulator.binds == 2 and bool(emulator.receivers()))
            emulator.send_receipt("smsgate", submits[2], part_ids[2], "undelivered")
            emulator.send_receipt("smsgate", submits[1], part_ids[1], "delivered")
            event = await asyncio.wait_for(sink.deliveries.get(), 5)
            await provider.aclose()
            assert provider.connects == 2
            assert event.message_id == message.id and event.status == Status.UNDELIVERED
            assert event.reason == "3 parts: 1 delivered, 2 delivered, 3 undelivered"
            assert sink.deliveries.empty()

    run(main)


def test_after_a_restart_the_parts_receipts_arrive_unfolded_as_documented(smsc: Any) -> None:
    # docs/smpp.md: the part ids live in the provider's memory; a new provider reports each
    # part's receipt under the part's own id (the server then folds them from the parts the
    # outbox stored: tests/server/test_smpp_push.py).
    async def main() -> None:
        async with smsc(callbacks=Callbacks(delay=60)) as emulator:
            before = await _provider(emulator)
            result = await before.asend(Message(to=TO, body="v" * 300, sender="MyApp"))
            await before.aclose()
            after = await _provider(emulator)  # the process restarted
            sink = QueueSink()
            await after.alisten(sink)
            await _until(lambda: bool(emulator.receivers()))
            submits = [pdu for pdu in emulator._captured if pdu.command == p.Command.SUBMIT_SM]
            part_ids = result.raw["message_ids"]
            for submit, part_id in zip(submits, part_ids, strict=True):
                emulator.send_receipt("smsgate", submit, part_id, "delivered")
            events = [await asyncio.wait_for(sink.deliveries.get(), 5) for _ in part_ids]
            await after.aclose()
            assert [e.provider_message_id for e in events] == part_ids
            assert events[0].provider_message_id == result.provider_message_id
            assert all(e.message_id is None and e.status == Status.DELIVERED for e in events)

    run(main)


@pytest.mark.parametrize("mode", ["udh8", "udh16", "sar"])
def test_inbound_parts_are_reassembled(smsc: Any, mode: str) -> None:
    text = "Hello from a phone, Привет! " * 10

    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator)
            sink = QueueSink()
            await provider.alisten(sink)
            await _until(lambda: bool(emulator.receivers()))
            assert emulator.inject_inbound("+447700900123", "+4915100000000", text, mode) == 5
            inbound = await asyncio.wait_for(sink.inbound_messages.get(), 5)
            await provider.aclose()
            assert inbound.body == text
            assert inbound.sender == "+447700900123" and inbound.to == "+4915100000000"
            assert sink.inbound_messages.empty()

    run(main)


def test_deliver_sm_without_a_sink_is_left_with_the_smsc(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator)
            await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
            await _until(
                lambda: any(x["command"] == "deliver_sm_resp" for x in emulator.captured())
            )
            await provider.aclose()
            [answer] = [x for x in emulator.captured() if x["command"] == "deliver_sm_resp"]
            assert answer["status"] == "ESME_RX_T_APPN"  # not taken: the SMSC retries later

    run(main)


def test_dropped_connection_mid_window_loses_nothing(smsc: Any) -> None:
    async def main() -> None:
        # Answers take 0.3 s, so the window (5) fills and 15 sends wait for it.
        async with smsc(faults=Faults(latency=0.3)) as emulator:
            provider = await _provider(
                emulator, window="5", backoff="0.05", registered_delivery="0"
            )
            messages = [Message(to=TO, body=f"message {i}", sender="MyApp") for i in range(20)]
            sends = [asyncio.ensure_future(provider.asend_result(m)) for m in messages]
            await _until(lambda: emulator.submits == 5)
            emulator.faults.latency = 0.0
            assert emulator.drop_connections() == 1
            results = await asyncio.gather(*sends)
            await provider.aclose()
            ambiguous = [r for r in results if isinstance(r.error, AmbiguousSend)]
            sent = [r for r in results if r.status == Status.SENT]
            assert len(ambiguous) == 5 and len(sent) == 15
            assert all(r.status == Status.UNKNOWN for r in ambiguous)
            assert provider.connects == 2 and provider.ambiguous == 5
            # Every message reached the SMSC exactly once: the 5 in flight were stored before
            # the drop, the 15 waiting went out on the new connection.
            bodies = sorted(m.body for m in emulator.messages)
            assert bodies == sorted(m.body for m in messages)
            assert not any(m.duplicate for m in emulator.messages)

    run(main)


def test_unanswered_submit_is_ambiguous(smsc: Any) -> None:
    async def main() -> None:
        async with smsc(faults=Faults(hang_rate=1)) as emulator:
            provider = await _provider(emulator, timeout="0.2")
            with pytest.raises(AmbiguousSend) as info:
                await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
            await provider.aclose()
            assert "0.2s" in str(info.value) and len(emulator.messages) == 1

    run(main)


def test_unanswered_submits_among_answered_ones_time_out_alone(smsc: Any) -> None:
    async def main() -> None:
        async with smsc(faults=Faults(hang_rate=0.5, seed=11)) as emulator:
            provider = await _provider(emulator, timeout="0.3", registered_delivery="0")
            await provider.asend_result(Message(to=TO, body="bind first", sender="MyApp"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            messages = [Message(to=TO, body=f"m{i}", sender="MyApp") for i in range(20)]
            results = await asyncio.gather(*(provider.asend_result(m) for m in messages))
            elapsed = loop.time() - started
            connection = provider._tx
            assert connection is not None
            # Nothing is kept for requests that are over, answered or timed out.
            assert not connection.pending and not connection._deadlines
            await provider.aclose()
            hung = [r for r in results if isinstance(r.error, AmbiguousSend)]
            sent = [r for r in results if r.status == Status.SENT]
            assert hung and sent and len(hung) + len(sent) == 20
            # Each waited its own timeout, all at once, not one after another.
            assert 0.25 < elapsed < 2.0

    run(main)


def test_throttling_is_rate_limited_and_pauses_later_submits(smsc: Any) -> None:
    async def main() -> None:
        async with smsc(faults=Faults(rate_limit_rate=1)) as emulator:
            clock = FakeClock()
            # No enquire_link timer: on a fake clock it would move time by itself.
            provider = await _provider(emulator, throttle_backoff="2", enquire_link="0")
            provider.clock = clock
            message = Message(to=TO, body="hi", sender="MyApp")
            with pytest.raises(RateLimited) as first:
                await provider.asend(message)
            with pytest.raises(RateLimited) as second:
                await provider.asend(message)
            # The second waited out the first pause on the clock, then backed off further.
            assert (first.value.retry_after, second.value.retry_after) == (2, 4)
            assert clock.monotonic() == pytest.approx(2)
            emulator.faults.rate_limit_rate = 0
            result = await provider.asend(message)
            assert result.status == Status.SENT and clock.monotonic() == pytest.approx(6)
            await provider.aclose()
            assert len(emulator.messages) == 1

    run(main)


def test_queue_full_is_rate_limited_too() -> None:
    error = error_for_status(p.Status.ESME_RMSGQFUL)
    assert isinstance(error, RateLimited) and error.code == "ESME_RMSGQFUL"


def test_every_command_status_maps_into_the_taxonomy() -> None:
    for status in p.Status:
        if status == p.Status.ESME_ROK:
            continue
        error = error_for_status(status)
        assert type(error) is not SmsgateError, status
        assert error.code == status.name
    assert isinstance(error_for_status(p.Status.ESME_RINVDSTADR), InvalidRecipient)
    assert isinstance(error_for_status(p.Status.ESME_RINVMSGLEN), InvalidMessage)
    assert isinstance(error_for_status(p.Status.ESME_RSYSERR), TransientError)
    assert isinstance(error_for_status(p.Status.ESME_RINVPASWD), AuthError)
    vendor = error_for_status(0x0401)
    assert vendor.failover and vendor.code == "vendor-specific 0x0401"


def test_injected_error_status_maps(smsc: Any) -> None:
    async def main() -> None:
        async with smsc(faults=Faults(error_rate=1), error_status="ESME_RINVSRCADR") as emulator:
            provider = await _provider(emulator)
            with pytest.raises(InvalidMessage) as info:
                await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
            await provider.aclose()
            assert info.value.field == "sender" and info.value.raw["status"] == "ESME_RINVSRCADR"

    run(main)


def test_message_ids_match_across_hex_and_decimal() -> None:
    assert "4096" in id_keys("1000") and "1000" in id_keys("4096")
    assert "ff" in id_keys("00FF")


def test_transmitter_and_receiver_pair(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator, bind="pair")
            sink = QueueSink()
            await provider.alisten(sink)
            result = await provider.asend(Message(to=TO, body="pair", sender="+4930123456"))
            event = await asyncio.wait_for(sink.deliveries.get(), 5)
            await provider.aclose()
            assert event.provider_message_id == result.provider_message_id
            binds = [x["command"] for x in emulator.captured() if x["command"].startswith("bind")]
            assert sorted(binds) == ["bind_receiver", "bind_transmitter"]
            submit = next(x for x in emulator.captured() if x["command"] == "submit_sm")
            assert submit["fields"]["source_addr_ton"] == 1  # an international number

    run(main)


def test_enquire_link_and_graceful_unbind(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator, enquire_link="0.05")
            await provider.asend(Message(to=TO, body="hi", sender="MyApp"))
            await _until(
                lambda: sum(x["command"] == "enquire_link" for x in emulator.captured()) >= 2
            )
            await provider.aclose()
            await _until(lambda: not emulator.sessions)
            assert emulator.captured()[-1]["command"] == "unbind"

    run(main)


def test_bind_survives_an_smsc_restart_while_listening(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            provider = await _provider(emulator, backoff="0.05")
            sink = QueueSink()
            await provider.alisten(sink)
            await _until(lambda: emulator.binds == 1)
            emulator.drop_connections()
            await _until(lambda: emulator.binds == 2)  # re-bound with nothing to send
            emulator.inject_inbound("+447700900123", "MyApp", "back")
            inbound = await asyncio.wait_for(sink.inbound_messages.get(), 5)
            await provider.aclose()
            assert inbound.body == "back"

    run(main)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ("bind=both", "bind"),
        ("long=udh32", "long"),
        ("window=0", "window"),
        ("window=ten", "window"),
        ("gsm7=squeezed", "gsm7"),
        ("colour=blue", "colour"),
        ("timeout=-1", "timeout"),
    ],
)
def test_url_mistakes_name_the_option(options: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_provider(f"smpp://sys:pw@127.0.0.1:2775?from=MyApp&{options}")
    assert info.value.field == field


def test_repr_and_masked_url_hide_the_password() -> None:
    provider = create_provider("smpp://sys:s3cret@127.0.0.1:2775?from=MyApp")
    assert "s3cret" not in repr(provider)
    from smsgate.providers.url import ProviderURL

    assert "s3cret" not in ProviderURL.parse("smpp://sys:s3cret@h:1?from=x").masked()
    with pytest.raises(ConfigError):
        create_provider("smpp://sys:waytoolongpassword@127.0.0.1:2775?from=MyApp")


def _seed_for(pattern: list[bool], rate: float) -> int:
    """A seed whose draws fall under ``rate`` exactly where ``pattern`` says (the emulator
    draws once per submit when a fault is set)."""
    import random

    for seed in range(10_000):
        rng = random.Random(seed)
        if [rng.random() < rate for _ in pattern] == pattern:
            return seed
    raise AssertionError("no seed found")


def test_a_later_part_refused_makes_the_send_ambiguous(smsc: Any) -> None:
    seed = _seed_for([False, True], 0.5)

    async def main() -> None:
        async with smsc(faults=Faults(error_rate=0.5, seed=seed)) as emulator:
            provider = await _provider(emulator, registered_delivery="0")
            with pytest.raises(AmbiguousSend) as info:
                await provider.asend(Message(to=TO, body="p" * 300, sender="MyApp"))
            await provider.aclose()
            assert "part 2 of 2" in str(info.value) and info.value.code == "ESME_RSYSERR"
            assert emulator.submits == 1  # the first part went out: a resend would repeat it

    run(main)


def test_a_later_part_throttled_is_retried_after_the_pause(smsc: Any) -> None:
    seed = _seed_for([False, True, False], 0.5)

    async def main() -> None:
        async with smsc(faults=Faults(rate_limit_rate=0.5, seed=seed)) as emulator:
            # No receipts: their outcomes would take draws from the same seeded generator.
            provider = await _provider(emulator, throttle_backoff="0.01", registered_delivery="0")
            result = await provider.asend(Message(to=TO, body="q" * 300, sender="MyApp"))
            await provider.aclose()
            assert result.status == Status.SENT and result.segments == 2
            assert [m.body for m in emulator.messages] == ["q" * 300]
            statuses = [x["status"] for x in emulator.captured() if x["command"] == "submit_sm"]
            assert len(statuses) == 3  # part 2 was sent twice: throttled, then accepted

    run(main)


def test_throughput_paces_submits_on_the_clock(smsc: Any) -> None:
    async def main() -> None:
        async with smsc() as emulator:
            clock = FakeClock()
            provider = await _provider(emulator, throughput="10", enquire_link="0")
            provider.clock = clock
            for i in range(5):
                await provider.asend(Message(to=TO, body=f"m{i}", sender="MyApp"))
            await provider.aclose()
            assert clock.monotonic() == pytest.approx(0.4)  # 5 submits at 10/s: 4 gaps
            assert len(emulator.messages) == 5

    run(main)


def test_a_receipt_ahead_of_its_submit_sm_resp_still_finds_its_message(smsc: Any) -> None:
    async def main() -> None:
        # Each receipt leaves at once, its submit_sm_resp 50 ms later.
        async with smsc(
            receipt_first=True,
            receipt_ids="decimal",
            receipt_form="text",
            faults=Faults(latency=0.05),
        ) as em:
            provider = await _provider(em)
            sink = QueueSink()
            await provider.alisten(sink)
            message = Message(to=TO, body="r" * 400, sender="MyApp")
            result = await provider.asend(message)
            event = await asyncio.wait_for(sink.deliveries.get(), 5)
            await provider.aclose()
            commands = [x["command"] for x in em.captured()]
            assert commands.count("deliver_sm_resp") == 3
            assert event.provider_message_id == result.provider_message_id
            assert event.message_id == message.id and event.status == Status.DELIVERED
            assert sink.deliveries.empty()

    run(main)
