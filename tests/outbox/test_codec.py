"""Rows and messages: rebuilt messages are equal to the ones submitted."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from smsgate.message import Message, Purpose
from smsgate.outbox.codec import (
    MESSAGE_FIELDS,
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
