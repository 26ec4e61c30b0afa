"""Rows and messages: rebuilt messages are equal to the ones submitted."""

from __future__ import annotations

import gc
import re
import traceback
import tracemalloc
from datetime import UTC, datetime

import pytest

from smsgate.errors import InvalidMessage
from smsgate.message import Message, Purpose
from smsgate.outbox.codec import (
    MESSAGE_FIELDS,
    SENDER_CACHE,
    Validator,
    message_from_row,
    row_for,
)
from smsgate.outbox.store import StoredMessage


def test_the_validator_builds_the_same_row_either_way() -> None:
    validator = Validator()
    fast, _, fresh = validator.build({"to": "+15555550100", "body": "hi", "sender": "ACME"}, 5.0)
    slow, _, _ = validator.build(Message(to="+15555550100", body="hi", sender="ACME"), 5.0)
    assert fresh
    assert fast._replace(id=slow.id) == slow


def test_a_message_rebuilt_from_its_row_equals_the_original() -> None:
    assert set(MESSAGE_FIELDS) == {
        "to",
        "body",
        "sender",
        "media",
        "purpose",
        "idempotency_key",
        "send_at",
        "validity",
        "metadata",
        "provider_options",
        "via",
        "id",
    }
    original = Message(
        to="+15555550100",
        body="Hello €",
        sender="+15005550006",
        media=("https://example.com/a.jpg",),
        purpose=Purpose.OTP,
        idempotency_key="k-1",
        send_at=datetime(2030, 1, 1, 9, 0, tzinfo=UTC),
        validity=300,
        metadata={"order": 7, "tags": ["a"]},
        provider_options={"SmartEncoded": "true"},
        via="telnyx",
    )
    row, _ = row_for(original, 1_700_000_000.0)
    stored = StoredMessage.from_row(
        (
            *row[:7],
            0,
            None,
            1,
            None,
            None,
            row.send_at,
            row.expires_at,
            row.next_attempt_at,
            None,
            None,
            None,
            row.created_at,
            row.created_at,
        )
    )
    rebuilt = message_from_row(stored)
    assert rebuilt == original
    assert dict(rebuilt.metadata) == {"order": 7, "tags": ["a"]}
    assert rebuilt.replace(body="again").body == "again"


def test_ids_made_by_the_fast_path_increase_in_submit_order() -> None:
    validator = Validator()
    made = [
        validator.build({"to": "+15555550100", "body": f"m{n}"}, 1.0)[0].id for n in range(3000)
    ]
    assert all(re.match(r"^msg_[0-9A-HJKMNP-TV-Z]{26}$", i) for i in made)
    assert made == sorted(made) and len(set(made)) == len(made)


# A server's Outbox keeps one Validator for its whole life: what it remembers must not grow with
# what its clients send.


def test_refusing_the_same_sender_again_and_again_holds_on_to_nothing() -> None:
    # an error object raised again grows its traceback, keeping every frame (and request) it
    # passed through; each refusal must be a new error of the same size
    validator = Validator()
    depths = []
    for n in range(50):
        with pytest.raises(InvalidMessage) as caught:
            validator.build({"to": "+15555550100", "body": f"m{n}", "sender": "AC\nME"}, 5.0)
        assert caught.value.field == "sender"
        assert "control characters" in str(caught.value)
        depths.append(len(traceback.extract_tb(caught.value.__traceback__)))
    assert depths == [depths[0]] * 50


def test_the_validator_remembers_a_bounded_number_of_senders() -> None:
    validator = Validator()

    def build(n: int) -> None:
        validator.build({"to": "+15555550100", "body": "x", "sender": f"+1555{n:07d}"}, 5.0)

    tracemalloc.start()
    try:
        for n in range(SENDER_CACHE):  # as many distinct senders as it keeps
            build(n)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(SENDER_CACHE, SENDER_CACHE + 10_000):  # then ten thousand more
            build(n)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # one entry per sender ever seen would be about 100 bytes each: a megabyte here
    assert grown < 100_000
