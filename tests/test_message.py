"""The message model: refusals at construction that name the field, immutability, statuses."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from smsgate.errors import InvalidMessage, InvalidRecipient, SmsgateError
from smsgate.message import (
    MAX_BODY_CHARS,
    MAX_MEDIA,
    DeliveryEvent,
    InboundMessage,
    Message,
    Purpose,
    SendResult,
    Status,
    accepted_result,
    is_bad_text,
)

TO = "+15555550100"
MEDIA = "https://example.com/cat.jpg"


def refused(**fields: Any) -> SmsgateError:
    fields.setdefault("to", TO)
    with pytest.raises(SmsgateError) as info:
        Message(**fields)
    return info.value


# -- construction -----------------------------------------------------------------------------


def test_a_plain_message_is_normalized_and_gets_an_id() -> None:
    m = Message(to="+1 (555) 555-0100", body="hello")
    assert m.to == TO
    assert m.purpose is Purpose.TRANSACTIONAL
    assert m.id.startswith("msg_") and len(m.id) == 30
    assert Message(to=TO, body="hello").id != m.id
    assert not m.is_mms


# Message converts lists, a single URL, purpose names and timedeltas at run time; its field
# annotations name the converted types, hence the type: ignore comments where a test relies on it.


def test_media_only_is_an_mms() -> None:
    m = Message(to=TO, media=[MEDIA])  # type: ignore[arg-type]
    assert m.media == (MEDIA,) and m.is_mms and m.body == ""
    assert Message(to=TO, body="x", media=MEDIA).media == (MEDIA,)  # type: ignore[arg-type]  # one URL as a string


def test_empty_body_and_no_media_is_refused() -> None:
    error = refused(body="")
    assert isinstance(error, InvalidMessage) and error.field == "body"
    assert "media" in str(error)  # says how to fix it


@pytest.mark.parametrize("to", ["not a number", "+1 555", "+999 1234567", "", "4155552671"])
def test_a_number_that_is_not_a_number_is_refused(to: str) -> None:
    error = refused(to=to, body="hi")
    assert isinstance(error, InvalidRecipient)
    assert error.field == "to"


def test_fictional_test_numbers_are_accepted() -> None:
    assert Message(to="+447700900123", body="hi").to == "+447700900123"
    assert Message(to="+1 555 555 0199", body="hi").to == "+15555550199"


def test_body_cap_is_1600_characters() -> None:
    assert MAX_BODY_CHARS == 1600
    assert len(Message(to=TO, body="x" * 1600).body) == 1600
    assert len(Message(to=TO, body="😜" * 1600).body) == 1600  # characters, not UTF-16 units
    error = refused(body="x" * 1601)
    assert isinstance(error, InvalidMessage) and error.field == "body"
    assert "1601" in str(error) and "1600" in str(error)


@pytest.mark.parametrize("body", [None, 42, b"bytes"])
def test_body_must_be_text(body: object) -> None:
    error = refused(body=body)
    assert isinstance(error, InvalidMessage) and error.field == "body"


def test_nul_in_body_is_refused() -> None:
    assert refused(body="a\x00b").field == "body"


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("héllo\x00", "a NUL character at position 5"),
        ("😜\x00", "a NUL character at position 1"),
        ("caf\udce9", "a lone surrogate (not valid Unicode) at position 3"),
    ],
)
def test_bad_text_is_refused_in_any_script(body: str, what: str) -> None:
    error = refused(body=body)
    assert error.field == "body" and what in str(error)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("plain text", False),
        ("a\x00b", True),
        ("café 😜", False),
        ("café\x00", True),
        ("caf\udce9", True),
        ("", False),
    ],
)
def test_is_bad_text_finds_nul_and_lone_surrogates(text: str, bad: bool) -> None:
    assert is_bad_text(text) is bad


def test_an_id_not_given_is_made_fresh() -> None:
    first, second = Message(to=TO, body="hi", id=None), Message(to=TO, body="hi")
    assert first.id.startswith("msg_") and second.id.startswith("msg_")
    assert first.id != second.id


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/cat.jpg",
        "file:///etc/passwd",
        "example.com/cat.jpg",
        "javascript:alert(1)",
        "https://exa mple.com/cat.jpg",
        "https://example.com/\ncat.jpg",
        "http://",
        42,
    ],
)
def test_media_must_be_http_urls(url: object) -> None:
    error = refused(body="look", media=[url])
    assert isinstance(error, InvalidMessage) and error.field == "media"


def test_http_and_https_media_are_accepted_in_any_case() -> None:
    urls = ("http://example.com/a.png", "HTTPS://example.com/b.png")
    assert Message(to=TO, media=urls).media == urls


def test_too_many_media_is_refused() -> None:
    assert len(Message(to=TO, media=[MEDIA] * MAX_MEDIA).media) == MAX_MEDIA  # type: ignore[arg-type]
    error = refused(body="x", media=[MEDIA] * (MAX_MEDIA + 1))
    assert error.field == "media"


def test_naive_send_at_is_refused() -> None:
    error = refused(body="later", send_at=datetime(2030, 1, 1, 9, 0))
    assert isinstance(error, InvalidMessage) and error.field == "send_at"
    assert "time zone" in str(error)
    aware = datetime(2030, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert Message(to=TO, body="later", send_at=aware).send_at == aware


def test_send_at_must_be_a_datetime() -> None:
    assert refused(body="later", send_at="2030-01-01T09:00:00Z").field == "send_at"


@pytest.mark.parametrize("purpose", ["spam", "OTP ", "", None])
def test_bad_purpose_is_refused(purpose: object) -> None:
    error = refused(body="hi", purpose=purpose)
    assert isinstance(error, InvalidMessage) and error.field == "purpose"


def test_purpose_text_becomes_the_enum() -> None:
    m = Message(to=TO, body="481902", purpose="otp")  # type: ignore[arg-type]
    assert m.purpose is Purpose.OTP


@pytest.mark.parametrize("sender", ["Acme\r\nBcc: x", "Acme\n", "Ac\x00me", "Acme\x7f", "\tAcme"])
def test_control_characters_in_sender_are_refused(sender: str) -> None:
    error = refused(body="hi", sender=sender)
    assert isinstance(error, InvalidMessage) and error.field == "sender"
    assert "control" in str(error)


@pytest.mark.parametrize("sender", ["", "   ", "x" * 65, 42])
def test_empty_long_or_non_text_sender_is_refused(sender: object) -> None:
    assert refused(body="hi", sender=sender).field == "sender"


def test_sender_forms_that_are_fine() -> None:
    for sender in ("+15017122661", "MyApp", "MG0123456789abcdef", "Café Ünïcode"):
        assert Message(to=TO, body="hi", sender=sender).sender == sender


@pytest.mark.parametrize("key", ["", "x" * 201, "line\nbreak", 7])
def test_bad_idempotency_key_is_refused(key: object) -> None:
    assert refused(body="hi", idempotency_key=key).field == "idempotency_key"


def test_validity_takes_seconds_or_a_timedelta() -> None:
    assert Message(to=TO, body="hi", validity=timedelta(hours=1)).validity == 3600  # type: ignore[arg-type]
    assert Message(to=TO, body="hi", validity=60).validity == 60
    for bad in (0, -5, True, 1.5, "60"):
        assert refused(body="hi", validity=bad).field == "validity"


def test_metadata_and_options_must_be_mappings() -> None:
    assert refused(body="hi", metadata=["a"]).field == "metadata"
    assert refused(body="hi", provider_options="x").field == "provider_options"


# -- immutability and replace -----------------------------------------------------------------


def test_messages_are_immutable() -> None:
    m = Message(to=TO, body="hi", metadata={"order": 42}, provider_options={"SmartEncoded": True})
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.body = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.to = "+15555550101"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.metadata["order"] = 43  # type: ignore[index]
    with pytest.raises(TypeError):
        m.provider_options["x"] = 1  # type: ignore[index]
    assert isinstance(m.media, tuple)


def test_the_caller_mutating_its_dict_does_not_change_the_message() -> None:
    meta = {"order": 42}
    m = Message(to=TO, body="hi", metadata=meta)
    meta["order"] = 43
    assert m.metadata["order"] == 42
    media = [MEDIA]
    m2 = Message(to=TO, media=media)  # type: ignore[arg-type]
    media.append("https://example.com/dog.jpg")
    assert m2.media == (MEDIA,)


def test_replace_returns_a_validated_copy() -> None:
    m = Message(to=TO, body="hi", sender="MyApp", purpose="otp", metadata={"a": 1})  # type: ignore[arg-type]
    changed = m.replace(body="bye", to="+44 7700 900123")
    assert (changed.body, changed.to) == ("bye", "+447700900123")
    kept = (changed.sender, changed.purpose, dict(changed.metadata))
    assert kept == ("MyApp", Purpose.OTP, {"a": 1})
    assert changed.id == m.id  # the same message, edited
    assert (m.body, m.to) == ("hi", TO)  # the original is untouched
    with pytest.raises(InvalidMessage) as info:
        m.replace(body="")
    assert info.value.field == "body"
    with pytest.raises(InvalidRecipient):
        m.replace(to="nope")


# -- statuses ---------------------------------------------------------------------------------

FINAL = {"delivered", "undelivered", "failed", "rejected", "expired", "canceled", "unknown"}


def test_which_statuses_are_final() -> None:
    assert {s.value for s in Status if s.is_final} == FINAL
    assert len(Status) == 11


def test_a_late_sent_never_beats_delivered() -> None:
    assert not Status.DELIVERED.can_move_to(Status.SENT)
    assert not Status.DELIVERED.can_move_to(Status.QUEUED)
    assert Status.SENT.can_move_to(Status.DELIVERED)


def test_progress_order_moves_forward_only() -> None:
    path = [Status.SCHEDULED, Status.QUEUED, Status.SENDING, Status.SENT, Status.DELIVERED]
    for i, earlier in enumerate(path):
        for later in path[i + 1 :]:
            assert earlier.can_move_to(later), (earlier, later)
            assert not later.can_move_to(earlier), (later, earlier)
        assert not earlier.can_move_to(earlier)  # a repeat is not a move


def test_unknown_can_be_resolved_by_a_late_receipt() -> None:
    assert Status.UNKNOWN.is_final  # the worker stops trying...
    for resolved in (Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED):
        assert Status.UNKNOWN.can_move_to(resolved)  # ...but the provider may still tell us
    assert not Status.UNKNOWN.can_move_to(Status.QUEUED)
    assert not Status.UNKNOWN.can_move_to(Status.SENDING)
    assert not Status.SENT.can_move_to(Status.UNKNOWN)


def test_a_final_outcome_is_never_replaced() -> None:
    outcomes = [s for s in Status if s.is_final and s is not Status.UNKNOWN]
    for done in outcomes:
        assert [s for s in Status if done.can_move_to(s)] == [], done


def test_every_status_reaches_a_final_one() -> None:
    for status in Status:
        if not status.is_final:
            assert any(status.can_move_to(s) for s in Status if s.is_final), status


# -- results and events -----------------------------------------------------------------------


def test_send_result_keeps_raw_and_serializes_without_it() -> None:
    raw = {"sid": "SM1", "status": "queued", "secret_looking": "x"}
    result = SendResult(
        id="msg_1",
        to=TO,
        status=Status.QUEUED,
        provider="twilio",
        provider_message_id="SM1",
        segments=1,
        encoding="GSM-7",
        raw=raw,
    )
    assert result.ok and result.raw is raw
    data = result.to_dict()
    assert data["status"] == "queued" and data["error"] is None
    assert "raw" not in data
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = Status.SENT  # type: ignore[misc]


def test_an_accepted_result_built_fast_is_the_result_the_constructor_builds() -> None:
    # Every field set, each to a value no other field holds: a field the fast builder misses or
    # swaps makes the two differ (or fails to compare at all).
    fields = {
        "id": "msg_1",
        "to": TO,
        "status": Status.SENT,
        "provider": "twilio",
        "provider_message_id": "SM1",
        "segments": 2,
        "encoding": "UCS-2",
        "price": "-0.0075",
        "price_unit": "USD",
        "raw": {"sid": "SM1"},
    }
    fast = accepted_result(**fields)
    assert fast == SendResult(**fields)
    assert {f.name: getattr(fast, f.name) for f in dataclasses.fields(SendResult)} == {
        **fields,
        "error": None,
        "part_ids": (),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = Status.FAILED  # type: ignore[misc]


def test_a_failed_result_is_not_ok_and_carries_its_error() -> None:
    error = InvalidRecipient("bad", provider="twilio", code=21211, raw={"code": 21211})
    result = SendResult(id="msg_1", to=TO, status=Status.REJECTED, error=error, raw=error.raw)
    assert not result.ok
    assert result.to_dict()["error"]["code"] == "21211"
    assert not SendResult(id="m", to=TO, status=Status.FAILED).ok


def test_events_are_immutable_and_keep_the_payload() -> None:
    when = datetime(2025, 1, 1, tzinfo=UTC)
    event = DeliveryEvent(
        provider="twilio",
        provider_message_id="SM1",
        status=Status.DELIVERED,
        event_id="e1",
        occurred_at=when,
        raw={"MessageStatus": "delivered"},
    )
    assert event.raw == {"MessageStatus": "delivered"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = Status.SENT  # type: ignore[misc]
    inbound = InboundMessage(
        provider="twilio",
        provider_message_id="SM2",
        sender=TO,
        to="+15005550006",
        body="STOP",
        raw={"Body": "STOP"},
    )
    assert inbound.media == () and inbound.raw == {"Body": "STOP"}
