"""The text carrying a live code reads back masked through the outbox (library, and so the API,
console and CLI), while the stored body the worker sends keeps the code."""

from __future__ import annotations

import json

from smsgate.outbox.records import REDACTED_BODY
from smsgate.verify import Verify
from smsgate.verify.service import MASK
from tests.verify.conftest import MakeVerify, last_code

TO = "+14155552671"


def test_outbox_reads_show_the_code_masked(verify: Verify) -> None:
    started = verify.start(TO, template="Code {code} for {minutes} min")
    code = last_code(verify, started.id)
    (message_id,) = verify.store.list_rows()[0].messages
    masked = f"Code {MASK * len(code)} for 10 min"
    status = verify.outbox.status(message_id)
    got = verify.outbox.get(message_id)
    (listed,) = verify.outbox.list(to=TO).items
    for record in (status, got, listed):
        assert record is not None
        assert record.body == masked and code not in record.body
        assert record.to_dict()["body"] == masked
        assert code not in json.dumps(record.metadata)
        assert record.metadata["verification"] == started.id
    # what the worker sends is the real text
    stored = verify.outbox.store.get(message_id)
    assert stored is not None and json.loads(stored.payload)["body"] == f"Code {code} for 10 min"


def test_a_resend_with_a_new_code_is_masked_too(make_verify: MakeVerify) -> None:
    verify = make_verify(resend="new", webotp_origin="example.com")
    started = verify.start(TO)
    verify.start(TO)
    rows = verify.store.list_rows()
    for message_id in rows[0].messages:
        record = verify.outbox.status(message_id)
        assert record.body.splitlines()[-1] == f"@example.com #{MASK * 6}"
        assert not any(ch.isdigit() for ch in record.body.replace("10 minutes", ""))
    assert last_code(verify, started.id) not in verify.outbox.status(rows[0].messages[-1]).body


def test_other_messages_read_back_as_stored(verify: Verify) -> None:
    from smsgate.message import Message

    plain = verify.outbox.submit(Message(to=TO, body="Your code is 123456", metadata={"a": 1}))
    assert verify.outbox.status(plain).body == "Your code is 123456"
    # the marker is what masks a text: the same message stored with it reads back masked
    marked = verify.outbox.submit(
        Message(to=TO, body="Your code is 654321", metadata={REDACTED_BODY: "Your code is ***"})
    )
    assert verify.outbox.status(marked).body == "Your code is ***"
