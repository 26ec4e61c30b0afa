"""``Verify`` on a real store (SQLite file and PostgreSQL schema): codes, states, limits."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from smsgate.clock import FakeClock
from smsgate.errors import ConfigError, InvalidMessage, InvalidRecipient, OptedOut, RateLimited
from smsgate.message import Purpose, Status
from smsgate.outbox.suppressions import ALL_NUMBERS
from smsgate.outbox.tables.server import ServerStore, Suppression
from smsgate.verify import (
    Verification,
    VerificationBlocked,
    VerificationNotFound,
    VerificationStatus,
    Verify,
)
from tests.verify.conftest import MakeVerify, last_code, sent_codes

TO = "+14155552671"
OTHER = "+447400123456"


def wrong(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def test_start_queues_an_otp_text_and_the_right_code_approves_once(verify: Verify) -> None:
    started = verify.start(TO)
    assert started.status is VerificationStatus.PENDING
    assert (started.sends, started.attempts_left, started.country) == (1, 5, "US")
    (row,) = verify.store.list_rows()
    (message_id,) = row.messages
    message = verify.outbox.get(message_id)
    assert message is not None
    assert message.purpose == Purpose.OTP and message.to == TO and message.status is Status.QUEUED
    code = last_code(verify, started.id)
    assert len(code) == 6

    approved = verify.check(started.id, code)
    assert approved.status is VerificationStatus.APPROVED and approved.valid
    again = verify.check(started.id, code)
    assert again.status is VerificationStatus.APPROVED and not again.valid


def test_the_store_holds_no_code(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    (row,) = verify.store.list_rows()
    assert code not in repr(tuple(row))
    assert row.code_hash is not None and len(row.code_hash) == 64
    # the hash is a MAC under the server secret: a bare SHA-256 of the code is not it
    import hashlib

    assert hashlib.sha256(code.encode()).hexdigest() != row.code_hash


def test_full_width_digits_spaces_and_dashes_are_accepted(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in code)
    typed = f" {full_width[:3]} \u2013 {full_width[3:]} "
    done = verify.check(started.id, typed)
    assert done.valid and done.status is VerificationStatus.APPROVED


def test_check_by_number_finds_the_pending_verification(verify: Verify) -> None:
    started = verify.start(TO)
    done = verify.check("+1 (415) 555-2671", last_code(verify, started.id))
    assert done.id == started.id and done.valid


def test_unknown_ids_are_not_found(verify: Verify) -> None:
    with pytest.raises(VerificationNotFound) as by_id:
        verify.check("ver_01NOPE", "123456")
    assert by_id.value.field == "id"


def test_a_number_without_a_pending_verification_answers_like_a_wrong_code(
    verify: Verify,
) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    wrong_code = verify.check(TO, wrong(code))
    never_seen = verify.check(OTHER, wrong(code))
    assert wrong_code.to_dict().keys() == never_seen.to_dict().keys()
    for answer in (wrong_code, never_seen):
        assert answer.status is VerificationStatus.PENDING and not answer.valid
        assert answer.attempts == 1 and answer.attempts_left == 4
        assert answer.id.startswith("ver_") and answer.sends == 1
    # the decoy's id is fresh each time and stored nowhere
    assert never_seen.id != started.id and never_seen.id != verify.check(OTHER, "1").id
    with pytest.raises(VerificationNotFound):
        verify.get(never_seen.id)
    assert [d.reason for d in verify.decisions(to=OTHER)] == ["no pending verification"] * 2
    # a number whose verification is over answers exactly like one never seen
    verify.check(started.id, code)
    over = verify.check(TO, code)
    assert over.status is VerificationStatus.PENDING and not over.valid
    assert over.id != started.id and over.to_dict().keys() == never_seen.to_dict().keys()


def test_max_attempts_then_every_check_is_refused(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    for n in range(1, 5):
        answer = verify.check(started.id, wrong(code))
        assert answer.status is VerificationStatus.PENDING and answer.attempts_left == 5 - n
    answer = verify.check(started.id, wrong(code))
    assert answer.status is VerificationStatus.MAX_ATTEMPTS and not answer.valid
    assert not verify.check(started.id, code).valid  # the right code is too late


def test_a_million_guesses_are_stopped_after_the_allowed_checks(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    accepted = 0
    first_refusal = None
    guess = 0
    for guess in range(1_000_000):
        typed = str(guess).zfill(6)
        answer = verify.check(started.id, typed)
        if answer.valid:
            accepted += 1
        if answer.status is not VerificationStatus.PENDING:
            first_refusal = guess
            break
    assert first_refusal is not None and first_refusal < 5
    # the remaining guesses (the right code among them) are answered from the final state:
    # never valid, and without a store transaction (the decisions stay at the five counted)
    right_index = int(code)
    for guess in range(first_refusal + 1, 1_000_000):
        answer = verify.check(started.id, str(guess).zfill(6))
        assert not answer.valid and answer.status.final
    assert accepted == (1 if int(code) < 5 else 0)
    assert right_index >= 0
    checks = [d for d in verify.decisions(verification_id=started.id) if d.action == "check"]
    assert len(checks) == first_refusal + 1


def test_guesses_across_many_verifications_are_stopped_by_the_number_limits(
    verify: Verify, clock: FakeClock
) -> None:
    sends = checks = 0
    refused: Exception | None = None
    for _ in range(100):
        try:
            started = verify.start(TO)
            sends += 1
            for _ in range(5):
                answer = verify.check(started.id, "000000")
                checks += 1
                if answer.valid or answer.status.final:
                    break
            verify.cancel(started.id)
        except RateLimited as exc:
            refused = exc
            break
    assert isinstance(refused, RateLimited) and refused.retry_after
    # number_checks "10/10m" stops the guessing first: 10 guesses in 10 minutes, not 5 x 5
    assert checks == 10 and sends <= 3
    assert "number_checks" in str(refused)
    # and they come back at the limit's rate, not at once
    clock.advance(60)
    started = verify.start(TO)
    verify.check(started.id, "000000")
    with pytest.raises(RateLimited):
        verify.check(started.id, "000000")


def test_starts_per_number_are_limited(make_verify: MakeVerify) -> None:
    verify = make_verify(limits={"number_starts": "3/10m"})
    for _ in range(3):
        verify.cancel(verify.start(TO).id)
    with pytest.raises(RateLimited) as refused:
        verify.start(TO)
    assert "number_starts (3/10m)" in str(refused.value)
    assert refused.value.retry_after and 150 < refused.value.retry_after <= 200
    verify.start(OTHER)  # another number is not affected
    reasons = [d.reason for d in verify.decisions(to=TO)]
    assert reasons[0] == "over the number_starts (3/10m) limit"


def test_ip_and_api_key_buckets(make_verify: MakeVerify) -> None:
    verify = make_verify(limits={"ip_starts": "2/h", "api_key_starts": "3/h"})
    verify.start(TO, client_ip="203.0.113.7", key="k1")
    verify.start(OTHER, client_ip="203.0.113.7", key="k1")
    with pytest.raises(RateLimited, match="ip_starts"):
        verify.start("+33612345678", client_ip="203.0.113.7", key="k1")
    verify.start("+33612345678", client_ip="203.0.113.8", key="k1")
    with pytest.raises(RateLimited, match="api_key_starts"):
        verify.start("+4915123456789", client_ip="203.0.113.9", key="k1")


def test_expiry(verify: Verify, clock: FakeClock) -> None:
    started = verify.start(TO, ttl="2m")
    code = last_code(verify, started.id)
    clock.advance(119)
    assert verify.get(started.id).status is VerificationStatus.PENDING
    clock.advance(1)
    assert verify.get(started.id).status is VerificationStatus.EXPIRED
    answer = verify.check(started.id, code)
    assert answer.status is VerificationStatus.EXPIRED and not answer.valid
    # a new start after expiry is a new verification with a new code
    fresh = verify.start(TO)
    assert fresh.id != started.id


def test_cancel_stops_the_code_and_the_unsent_text(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    canceled = verify.cancel(started.id)
    assert canceled.status is VerificationStatus.CANCELED
    (row,) = verify.store.list_rows()
    message = verify.outbox.get(row.messages[0])
    assert message is not None and message.status is Status.CANCELED
    assert not verify.check(started.id, code).valid
    assert verify.cancel(started.id).status is VerificationStatus.CANCELED
    with pytest.raises(VerificationNotFound):
        verify.cancel("ver_nope")


def test_resend_same_code_keeps_the_expiry(verify: Verify, clock: FakeClock) -> None:
    first = verify.start(TO)
    clock.advance(30)
    again = verify.start(TO)
    assert again.id == first.id and again.sends == 2
    assert again.expires_at == first.expires_at
    codes = sent_codes(verify, first.id)
    assert len(codes) == 2 and codes[0] == codes[1]
    assert verify.check(TO, codes[0]).valid


def test_resend_new_code_voids_the_old_one(make_verify: MakeVerify, clock: FakeClock) -> None:
    verify = make_verify(resend="new")
    first = verify.start(TO)
    clock.advance(30)
    again = verify.start(TO)
    assert again.id == first.id and again.expires_at == first.expires_at + 30
    old, new = sent_codes(verify, first.id)
    assert old != new
    assert not verify.check(first.id, old).valid
    assert verify.check(first.id, new).valid


def test_resends_are_capped_per_verification(make_verify: MakeVerify) -> None:
    verify = make_verify(max_sends=2, limits={"number_starts": "100/10m"})
    verify.start(TO)
    verify.start(TO)
    with pytest.raises(RateLimited, match="had its 2 texts"):
        verify.start(TO)


def test_concurrent_right_checks_approve_exactly_once(verify: Verify) -> None:
    started = verify.start(TO)
    code = last_code(verify, started.id)
    # each thread uses its own Verify (no shared in-process cache), as separate servers would
    others = [Verify(verify.outbox, verify.settings, clock=verify.clock) for _ in range(20)]
    barrier = threading.Barrier(20)
    answers: list[Verification] = []
    errors: list[BaseException] = []

    def run(v: Verify) -> None:
        barrier.wait()
        try:
            answers.append(v.check(started.id, code))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(answers) == 20
    assert sum(a.valid for a in answers) == 1
    assert all(a.status is VerificationStatus.APPROVED for a in answers)


def test_async_twins(verify: Verify) -> None:
    async def flow() -> Verification:
        started = await verify.astart(TO)
        code = last_code(verify, started.id)
        done = await verify.acheck(started.id, code)
        assert (await verify.aget(started.id)).status is VerificationStatus.APPROVED
        return done

    assert asyncio.run(flow()).valid


def test_country_permissions(make_verify: MakeVerify) -> None:
    verify = make_verify(countries={"default": "deny", "allow": ["US"], "monitor": ["GB"]})
    verify.start(TO)
    monitored = verify.start(OTHER)
    assert monitored.status is VerificationStatus.PENDING
    assert verify.decisions(to=OTHER)[0].outcome == "monitored"
    with pytest.raises(VerificationBlocked) as refused:
        verify.start("+33612345678")
    assert refused.value.verification.status is VerificationStatus.BLOCKED
    assert "country FR is not allowed" in str(refused.value)
    decision = verify.decisions(to="+33612345678")[0]
    assert (decision.outcome, decision.country) == ("blocked", "FR")
    # a refused start sends nothing
    assert verify.store.list_rows(to="+33612345678")[0].messages == []


def test_test_mode_magic_numbers(make_verify: MakeVerify) -> None:
    verify = make_verify(test_mode=True)
    good = verify.start("+15005550006")
    assert verify.check(good.id, "whatever").valid
    bad = verify.start("+15005550001")
    for _ in range(5):
        answer = verify.check(bad.id, "123456")
    assert answer.status is VerificationStatus.MAX_ATTEMPTS and not answer.valid
    assert verify.store.list_rows(to="+15005550006")[0].messages == []  # nothing sent
    # without test mode they are ordinary numbers
    plain = make_verify()
    ordinary = plain.start("+15005550006")
    assert not plain.check(ordinary.id, "whatever").valid


def test_opted_out_numbers_are_refused_and_nothing_is_stored(verify: Verify) -> None:
    ServerStore.of(verify.outbox.store).add_suppression(
        Suppression(TO, ALL_NUMBERS, "api", None, None, 0.0)
    )
    with pytest.raises(OptedOut):
        verify.start(TO)
    assert verify.store.list_rows() == []


def test_bad_input_names_the_field(verify: Verify) -> None:
    with pytest.raises(InvalidRecipient) as bad_to:
        verify.start("12")
    assert bad_to.value.field == "to"
    for kwargs, field in (
        ({"code_length": 3}, "code_length"),
        ({"ttl": "forever"}, "ttl"),
        ({"ttl": "2d"}, "ttl"),
        ({"template": "no placeholder"}, "template"),
        ({"template": "{code} {oops}"}, "template"),
    ):
        with pytest.raises(InvalidMessage) as exc:
            verify.start(TO, **kwargs)  # type: ignore[arg-type]
        assert exc.value.field == field
    with pytest.raises(ConfigError, match=r"verify\.secret"):
        Verify(verify.outbox, secret="short")


def test_custom_template_locale_and_length(verify: Verify) -> None:
    started = verify.start(TO, template="{code} is your code for {minutes} min", code_length=8)
    (row,) = verify.store.list_rows()
    record = verify.outbox.get(row.messages[0])
    assert record is not None
    assert record.body.endswith("is your code for 10 min") and len(record.body.split()[0]) == 8
    verify.cancel(started.id)
    german = verify.start(OTHER, locale="de-AT")
    body = verify.outbox.get(verify.store.list_rows(to=OTHER)[0].messages[0])
    assert body is not None and "Bestätigungscode" in body.body
    assert german.locale == "de-AT"


def test_no_code_or_hash_in_logs(verify: Verify, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = verify.start(TO)
    code = last_code(verify, started.id)
    verify.check(started.id, wrong(code))
    verify.check(started.id, code)
    (row,) = verify.store.list_rows()
    text = caplog.text + repr(verify) + repr(verify.settings)
    for secret in (code, row.code_hash, row.salt, verify.settings.secret.decode()):
        assert secret and secret not in text
    for decision in verify.decisions():
        assert code not in repr(decision)


def test_grouped_steps_share_a_transaction_and_fail_alone(verify: Verify) -> None:
    """The server groups concurrent steps into one transaction: a step that fails (here an
    opted-out number) is undone alone, the others commit."""
    ServerStore.of(verify.outbox.store).add_suppression(
        Suppression(OTHER, ALL_NUMBERS, "api", None, None, 0.0)
    )

    async def flow() -> list[Verification | BaseException]:
        verify.start_grouping()
        try:
            return await asyncio.gather(
                verify.astart(TO),
                verify.astart(OTHER),
                verify.astart("+33612345678"),
                return_exceptions=True,
            )
        finally:
            await verify.stop_grouping()

    first, refused, third = asyncio.run(flow())
    assert isinstance(refused, OptedOut)
    assert isinstance(first, Verification) and isinstance(third, Verification)
    assert {r.to_number for r in verify.store.list_rows()} == {TO, "+33612345678"}
    assert verify.decisions(to=OTHER) == []
    # the same isolation when the steps are run together directly
    results = verify._execute(
        [
            verify._start_op(OTHER, "sms", None, None, None, None, None, None),
            verify._cancel_op(first.id),
        ]
    )
    assert isinstance(results[0], OptedOut)
    assert isinstance(results[1], Verification) and results[1].status is VerificationStatus.CANCELED


def test_checks_of_unknown_numbers_count_against_the_number(verify: Verify) -> None:
    """Probing numbers that have no verification is limited like guessing codes for one, so
    the limit does not tell which numbers have a pending verification either."""
    for _ in range(10):
        assert verify.check(OTHER, "123456").status is VerificationStatus.PENDING
    with pytest.raises(RateLimited, match="number_checks"):
        verify.check(OTHER, "123456")
