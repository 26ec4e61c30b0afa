"""``smsgate.Verify``: send a one-time code, check it once, and refuse to pay for SMS pumping.

>>> verify = Verify(outbox, VerifySettings.from_config(config))
>>> v = verify.start("+14155552671", client_ip="203.0.113.7")
>>> verify.check(v.id, "123 456").status
<VerificationStatus.APPROVED: 'approved'>

A start stores the verification, the guard's decision and the text (an ``otp`` message, so it
leaves on the otp route with that route's sender and ambiguous-send policy) in one transaction.
A check is one transaction too: the row is locked (PostgreSQL) or the writer lock held (SQLite),
the attempt counted, the typed code compared, so two concurrent checks of the right code approve
once. Everything the guard decides is recorded with its reason (:meth:`Verify.decisions`).

Resend policy (``[verify] resend``): a start for a number that has a pending verification on the
same channel is a resend of that verification, limited to ``max_sends`` texts in all. With
``"same"`` (the default) it carries the same code and the expiry does not move; with ``"new"`` a
new code replaces the old one, which stops working, and the expiry restarts. Wrong guesses are
never reset by a resend.

Known and unknown numbers get the same answers: a start always answers with a verification of
the same shape; a check by number with no pending verification (never seen, or already approved,
expired, canceled) answers like a wrong code (a ``pending`` verification, ``valid`` False, under
a fresh id stored nowhere) after the same work (the same lookup, the same MAC, the same check
limits, a decision written).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.config import parse_duration
from smsgate.errors import (
    ConfigError,
    InvalidMessage,
    RateLimited,
    SmsgateError,
    UnsupportedFeature,
)
from smsgate.ids import new_id
from smsgate.message import Message, Purpose
from smsgate.outbox import Outbox
from smsgate.outbox.records import REDACTED_BODY, NotCancelable
from smsgate.outbox.tables.verify import Row, VerifyStore, VerifyTx
from smsgate.phone import normalize
from smsgate.verify import codes
from smsgate.verify.guard import Guard, Who
from smsgate.verify.messages import check_template, render
from smsgate.verify.models import (
    Block,
    Decision,
    Verification,
    VerificationBlocked,
    VerificationNotFound,
    VerificationStatus,
)
from smsgate.verify.settings import VerifySettings

if TYPE_CHECKING:
    from smsgate.outbox.groupcommit import GroupCommit

logger = logging.getLogger("smsgate.verify")

CHANNELS = ("sms",)
ID_PREFIX = "ver"
_PENDING = VerificationStatus.PENDING.value
_DAY = 86400.0
#: terminal verifications remembered per process: a final state never changes, so a check of one
#: (a brute-force loop, typically) is answered without the store
_FINAL_CACHE = 20_000
#: prune the detector's old slots once per this many starts
_PRUNE_EVERY = 1000
#: what the not-found path compares a code against (so it spends the same MAC and compare)
_ABSENT_HASH = "0" * 64
#: what stands for each digit of the code in the text as messages read it back
MASK = "\u2022"


@dataclass(slots=True)
class _Effects:
    """What a step leaves to do once its transaction has committed."""

    block: Block | None = None
    final: Verification | None = None
    cancel: list[str] = field(default_factory=list)
    started: float | None = None


#: one start, check or cancel, run inside a write transaction: it returns the answer, or the
#: refusal to raise once its decision is committed
_Op = Callable[[VerifyTx, _Effects], "Verification | SmsgateError"]


class Verify:
    """Start, check and cancel verifications stored in ``outbox``'s store.

    ``on_block(block)`` is called after a prefix is blocked (the server turns it into a
    ``verify.blocked`` webhook); :attr:`counters` counts decisions by ``(action, outcome)`` for
    metrics. Methods are synchronous and thread-safe; the ``a``-prefixed twins run them on a
    worker thread.
    """

    def __init__(
        self,
        outbox: Outbox,
        settings: VerifySettings | None = None,
        *,
        secret: str | bytes | None = None,
        clock: Clock | None = None,
        on_block: Callable[[Block], None] | None = None,
    ) -> None:
        if settings is None:
            if secret is None:
                raise ConfigError(
                    "Verify needs a server secret: Verify(outbox, secret=...) or "
                    "Verify(outbox, VerifySettings.from_config(config))",
                    field="verify.secret",
                )
            settings = VerifySettings.from_mapping({"secret": secret})
        elif secret is not None:
            raise ValueError("give either settings or secret, not both")
        self.settings = settings
        self.store = VerifyStore(outbox)
        self.guard = Guard(settings)
        self.outbox = outbox
        self.clock = clock or outbox.clock or SYSTEM_CLOCK
        self.on_block = on_block
        self.counters: Counter[tuple[str, str]] = Counter()
        self._secret = settings.secret
        self._final: OrderedDict[str, Verification] = OrderedDict()
        self._lock = threading.Lock()
        self._starts = 0
        self._group: GroupCommit[_Op, Verification] | None = None

    def __repr__(self) -> str:
        return f"Verify({self.outbox.url!r}, {self.settings!r})"

    @classmethod
    def from_config(cls, config: Any, outbox: Outbox, **kwargs: Any) -> Verify:
        """A Verify on ``outbox`` with the ``[verify]`` table of a loaded config."""
        return cls(outbox, VerifySettings.from_config(config), **kwargs)

    # -- start --------------------------------------------------------------------------------

    def start(
        self,
        to: str,
        *,
        channel: str = "sms",
        code_length: int | None = None,
        ttl: str | float | None = None,
        locale: str | None = None,
        template: str | None = None,
        client_ip: str | None = None,
        key: str | None = None,
    ) -> Verification:
        """Send a code to ``to`` (or resend, see the module's resend policy).

        Raises :class:`~smsgate.errors.InvalidRecipient` / :class:`~smsgate.errors.InvalidMessage`
        naming the field, :class:`~smsgate.errors.RateLimited` (with ``retry_after``) over a
        limit, :class:`VerificationBlocked` for a denied country or blocked prefix,
        :class:`~smsgate.errors.OptedOut` when the number opted out and otp texts honor it.
        """
        op = self._start_op(to, channel, code_length, ttl, locale, template, client_ip, key)
        return self._one(op)

    def _start_op(
        self,
        to: str,
        channel: str,
        code_length: int | None,
        ttl: str | float | None,
        locale: str | None,
        template: str | None,
        client_ip: str | None,
        key: str | None,
    ) -> _Op:
        """Validate a start (bad input raises here, before any transaction) and return the
        step that runs inside one."""
        s = self.settings
        number, region = _number(to)
        if channel not in CHANNELS:
            raise UnsupportedFeature(
                f"channel {channel!r} is not supported; use {', '.join(CHANNELS)}",
                field="channel",
            )
        length = s.code_length if code_length is None else code_length
        if (
            isinstance(length, bool)
            or not isinstance(length, int)
            or not (codes.MIN_LENGTH <= length <= codes.MAX_LENGTH)
        ):
            raise InvalidMessage(
                f"code_length: {length!r} must be {codes.MIN_LENGTH} to {codes.MAX_LENGTH}",
                field="code_length",
            )
        lifetime = s.ttl if ttl is None else _ttl(ttl)
        if template is not None:
            check_template(template)
        who = Who(number, self.guard.prefix(number), region, client_ip, key)
        test = self._test_behaviour(number)
        permission = "allow" if test else s.countries.permission(who.country)

        def op(tx: VerifyTx, fx: _Effects) -> Verification | SmsgateError:
            now = self.clock.time()
            fx.started = now
            error: SmsgateError | None = None
            if permission == "deny":
                reason = f"country {who.country or 'unknown'} is not allowed ([verify.countries])"
                row = self._refuse(tx, who, channel, length, lifetime, locale, now, reason)
                error = VerificationBlocked(
                    f"verification to {number} refused: {reason}; allow the country or use "
                    "another number",
                    verification=row.public(),
                )
            elif not test and (block := tx.active_block(who.prefix, now)) is not None:
                reason = f"prefix {who.prefix} is blocked until {_iso(block.blocked_until)} ({block.reason})"
                row = self._refuse(tx, who, channel, length, lifetime, locale, now, reason)
                error = VerificationBlocked(
                    f"verification to {number} refused: {reason}; an operator can lift it "
                    f"with smsgate verify unblock {block.prefix}",
                    verification=row.public(),
                )
            else:
                pending = tx.pending_for(number, channel, lock=True)
                if pending is not None and pending.expires_at <= now:
                    self._end(tx, pending, VerificationStatus.EXPIRED, "expired", now)
                    pending = None
                wait, limit = (0.0, None) if test else self.guard.take(tx, "starts", who, now)
                action = "start" if pending is None else "resend"
                if limit is not None:
                    reason = f"over the {limit} limit"
                    self._decide(tx, now, action, "refused", reason, who, pending)
                    error = RateLimited(
                        f"too many verifications: {reason}; retry in {wait:.0f} s",
                        retry_after=wait,
                        field="to",
                    )
                    row = pending  # type: ignore[assignment]
                elif pending is not None:
                    row, error = self._resend(tx, pending, who, lifetime, template, now)
                else:
                    fx.block = None if test else self.guard.judge(tx, who.prefix, now)
                    if fx.block is not None:
                        reason = f"prefix {who.prefix} blocked for SMS pumping: {fx.block.reason}"
                        row = self._refuse(tx, who, channel, length, lifetime, locale, now, reason)
                        error = VerificationBlocked(
                            f"verification to {number} refused: {reason}; an operator can "
                            f"lift it with smsgate verify unblock {who.prefix}",
                            verification=row.public(),
                        )
                    else:
                        row = self._create(
                            tx,
                            who,
                            channel,
                            length,
                            lifetime,
                            locale,
                            template,
                            test,
                            now,
                            monitored=permission == "monitor",
                        )
            if error is not None:
                return error
            return row.public()

        return op

    def _create(
        self,
        tx: VerifyTx,
        who: Who,
        channel: str,
        length: int,
        lifetime: float,
        locale: str | None,
        template: str | None,
        test: str | None,
        now: float,
        *,
        monitored: bool,
    ) -> Row:
        ident = new_id(ID_PREFIX)
        salt = codes.new_salt()
        code = codes.derive_code(self._secret, ident, salt, length)
        messages: list[str] = []
        if test is None:
            messages.append(self._send(tx, ident, 1, who.to, code, lifetime, locale, template, now))
            self.guard.count_start(tx, who.prefix, now)
        row = Row(
            ident, who.to, channel, _PENDING, salt, codes.code_hash(self._secret, ident, code),
            length, locale, now, now, now + lifetime, 0, self.settings.max_checks, 1,
            self.settings.max_sends, json.dumps(messages), who.prefix, who.country,
            who.client_ip, who.api_key, None, test,
        )  # fmt: skip
        tx.insert(row)
        if test is not None:
            reason = f"test number: every check will {'approve' if test == 'approve' else 'fail'}"
            outcome = "allowed"
        elif monitored:
            reason, outcome = f"country {who.country} is monitored; sent", "monitored"
        else:
            reason, outcome = "sent", "allowed"
        self._decide(tx, now, "start", outcome, reason, who, row)
        return row

    def _resend(
        self,
        tx: VerifyTx,
        row: Row,
        who: Who,
        lifetime: float,
        template: str | None,
        now: float,
    ) -> tuple[Row, SmsgateError | None]:
        if row.sends >= row.max_sends:
            reason = f"this verification has had its {row.max_sends} texts"
            self._decide(tx, now, "resend", "refused", reason, who, row)
            wait = max(1.0, row.expires_at - now)
            return row, RateLimited(
                f"{reason}; check the code already sent, or start again after it expires in "
                f"{wait:.0f} s",
                retry_after=wait,
                field="to",
            )
        salt, code_hash, expires = row.salt, row.code_hash, row.expires_at
        if self.settings.resend == "new":
            salt = codes.new_salt()
            expires = now + lifetime
        assert salt is not None
        code = codes.derive_code(self._secret, row.id, salt, row.code_length)
        if self.settings.resend == "new":
            code_hash = codes.code_hash(self._secret, row.id, code)
        messages = row.messages
        if row.test is None:
            number = row.sends + 1
            messages.append(
                self._send(tx, row.id, number, row.to_number, code, expires - now, row.locale,
                           template, now)
            )  # fmt: skip
        updated = row._replace(
            salt=salt,
            code_hash=code_hash,
            expires_at=expires,
            sends=row.sends + 1,
            message_ids=json.dumps(messages),
            updated_at=now,
        )
        tx.update(updated)
        policy = "the same code" if self.settings.resend == "same" else "a new code"
        self._decide(tx, now, "resend", "allowed", f"resent with {policy}", who, updated)
        return updated, None

    def _send(
        self,
        tx: VerifyTx,
        ident: str,
        number: int,
        to: str,
        code: str,
        lifetime: float,
        locale: str | None,
        template: str | None,
        now: float,
    ) -> str:
        s = self.settings
        texts = [
            render(
                shown,
                ttl=lifetime,
                locale=locale,
                default_locale=s.locale,
                app_name=s.app_name,
                template=template,
                webotp_origin=s.webotp_origin,
                android_app_hash=s.android_app_hash,
            )
            for shown in (code, MASK * len(code))
        ]
        body, redacted = texts
        message = Message(
            to=to,
            body=body,
            purpose=Purpose.OTP,
            # no idempotency key: the text is stored in the verification's own transaction,
            # exactly once, and a fresh id skips the outbox's key lookup
            # a code is useless after it expires: the outbox stops trying then
            validity=max(1, int(lifetime)),
            # the outbox reads the message back as the masked text (API, console, CLI), so a
            # key that may read messages but not verify never sees a live code
            metadata={"verification": ident, REDACTED_BODY: redacted},
        )
        return tx.insert_message(message, now)

    def _refuse(
        self,
        tx: VerifyTx,
        who: Who,
        channel: str,
        length: int,
        lifetime: float,
        locale: str | None,
        now: float,
        reason: str,
    ) -> Row:
        """Store a start the guard refused as a ``blocked`` verification (nothing is sent)."""
        row = Row(
            new_id(ID_PREFIX), who.to, channel, VerificationStatus.BLOCKED.value, None, None,
            length, locale, now, now, now, 0, self.settings.max_checks, 0,
            self.settings.max_sends, "[]", who.prefix, who.country, who.client_ip, who.api_key,
            reason, None,
        )  # fmt: skip
        tx.insert(row)
        self._decide(tx, now, "start", "blocked", reason, who, row)
        return row

    # -- the pumping detector -----------------------------------------------------------------

    def blocks(self, *, active: bool = True, limit: int = 100) -> list[Block]:
        """Blocked prefixes (with ``active`` False: every block, lifted and expired ones too)."""
        return self.store.blocks(self.clock.time(), active=active, limit=limit)

    def unblock(self, prefix: str, *, by: str = "api") -> list[Block]:
        """Lift the active blocks of ``prefix`` (starts with ``+``); returns what was lifted.
        The prefix's window is cleared too, so it is not blocked again on old evidence."""
        if not (prefix.startswith("+") and prefix[1:].isdigit() and 2 <= len(prefix) <= 16):
            raise InvalidMessage(
                f"prefix {prefix!r} must be + and digits, as smsgate verify blocks lists it",
                field="prefix",
            )
        now = self.clock.time()
        with self.store.write() as tx:
            lifted = tx.lift(prefix, now, by)
            if lifted:
                tx.forget_traffic(prefix=prefix)
                reason = f"block lifted by {by}"
                tx.record(Decision(now, "unblock", "allowed", reason, prefix=prefix))
        self.counters["unblock", "allowed"] += bool(lifted)
        return [Block(**{**_block_dict(b), "lifted_at": now, "lifted_by": by}) for b in lifted]

    # -- check --------------------------------------------------------------------------------

    def check(
        self,
        target: str,
        code: str,
        *,
        client_ip: str | None = None,
        key: str | None = None,
    ) -> Verification:
        """Check ``code`` for a verification id (``ver_...``) or a number's pending one.

        ``valid`` is True in exactly one answer per verification. A final verification answers
        with its state (``valid`` False) without touching the store. A number with no pending
        verification answers as a wrong code would (``pending``, ``valid`` False, a fresh id that
        is stored nowhere); an unknown id raises :class:`VerificationNotFound`; over a check
        limit, :class:`~smsgate.errors.RateLimited`.
        """
        op = self._check_op(target, code, client_ip, key)
        return op if isinstance(op, Verification) else self._one(op)

    def _check_op(
        self, target: str, code: str, client_ip: str | None, key: str | None
    ) -> Verification | _Op:
        """A final verification's answer (no transaction needed), or the step that checks."""
        if not isinstance(code, str):
            raise InvalidMessage("code: expected the digits as text", field="code")
        by_id = target.startswith(ID_PREFIX + "_")
        if by_id:
            cached = self._final.get(target)
            if cached is not None:
                return cached
        if len(code) > 64:
            code = code[:64]  # longer is never a code; bounds the work a request can ask for
        number, region = (None, None) if by_id else _number(target)

        def op(tx: VerifyTx, fx: _Effects) -> Verification | SmsgateError:
            now = self.clock.time()
            error: SmsgateError | None = None
            approved = False
            if number is None:
                row = tx.get(target, lock=True)
            else:
                row = tx.pending_for(number, "sms", lock=True)
            if row is None:
                codes.matches(self._secret, ID_PREFIX, code, _ABSENT_HASH)
                if number is not None:
                    # the same statements as a wrong code for a pending verification (the
                    # number's check buckets, a row update, a decision), so neither the answer
                    # time nor the limits tell whether the number has one
                    who = Who(number, self.guard.prefix(number), region, client_ip, key)
                    wait, limit = self.guard.take(tx, "checks", who, now)
                    tx.update_none()
                    if limit is not None:
                        reason = f"over the {limit} limit"
                        self._decide(tx, now, "check", "refused", reason, who, None)
                        return RateLimited(
                            f"too many checks: {reason}; retry in {wait:.0f} s",
                            retry_after=wait,
                            field="code",
                        )
                    self._decide(tx, now, "check", "refused", "no pending verification", who, None)
                    return self._decoy(number, region, now)
                error = VerificationNotFound(
                    f"no verification {target!r}; start a new one", field="id"
                )
            elif row.status != _PENDING:
                pass
            elif row.expires_at <= now:
                row = self._end(tx, row, VerificationStatus.EXPIRED, "expired", now)
            else:
                who = Who(row.to_number, row.prefix, row.country, client_ip, key)
                wait, limit = (0.0, None) if row.test else self.guard.take(tx, "checks", who, now)
                if limit is not None:
                    reason = f"over the {limit} limit"
                    self._decide(tx, now, "check", "refused", reason, who, row)
                    error = RateLimited(
                        f"too many checks: {reason}; retry in {wait:.0f} s",
                        retry_after=wait,
                        field="code",
                    )
                else:
                    row, approved = self._attempt(tx, row, who, code, now)
            if error is not None:
                return error
            assert row is not None
            if row.status != _PENDING:
                fx.final = row.public()
            return row.public(valid=approved)

        return op

    def _decoy(self, number: str, region: str | None, now: float) -> Verification:
        """The answer to a check by number when none is pending: what a first wrong code for a
        fresh verification answers (same status, same keys), under a new id that is stored
        nowhere, so the answer does not tell whether the number has a pending verification."""
        s = self.settings
        last = s.max_checks <= 1  # a first wrong code is the last one allowed
        return Verification(
            id=new_id(ID_PREFIX),
            to=number,
            channel="sms",
            status=VerificationStatus.MAX_ATTEMPTS if last else VerificationStatus.PENDING,
            created_at=now,
            updated_at=now,
            expires_at=now + s.ttl,
            attempts=1,
            max_attempts=s.max_checks,
            sends=1,
            max_sends=s.max_sends,
            country=region,
            reason="1 wrong codes" if last else None,
        )

    def _attempt(self, tx: VerifyTx, row: Row, who: Who, code: str, now: float) -> tuple[Row, bool]:
        attempts = row.attempts + 1
        assert row.code_hash is not None
        right = codes.matches(self._secret, row.id, code, row.code_hash)
        if row.test is not None:
            right = row.test == "approve"
        if right:
            status, reason = VerificationStatus.APPROVED.value, "approved"
            if row.test is None:
                self.guard.count_approval(tx, row.prefix, row.created_at)
            decided = "right code"
        elif attempts >= row.max_attempts:
            status = VerificationStatus.MAX_ATTEMPTS.value
            reason = f"{attempts} wrong codes"
            decided = f"wrong code ({attempts} of {row.max_attempts}); no attempts left"
        else:
            status, reason = _PENDING, None
            decided = f"wrong code ({attempts} of {row.max_attempts})"
        updated = row._replace(status=status, attempts=attempts, reason=reason, updated_at=now)
        tx.update(updated)
        self._decide(tx, now, "check", "allowed", decided, who, updated)
        return updated, right

    # -- cancel and read ----------------------------------------------------------------------

    def cancel(self, verification_id: str) -> Verification:
        """Cancel a pending verification (its code stops working, its unsent texts are not
        sent). Canceling a final one changes nothing and answers with its state."""
        return self._one(self._cancel_op(verification_id))

    def _cancel_op(self, verification_id: str) -> _Op:
        def op(tx: VerifyTx, fx: _Effects) -> Verification | SmsgateError:
            now = self.clock.time()
            row = tx.get(verification_id, lock=True)
            if row is None:
                return VerificationNotFound(
                    f"no verification {verification_id!r}; check the id", field="id"
                )
            if row.status == _PENDING:
                row = self._end(tx, row, VerificationStatus.CANCELED, "canceled by request", now)
                who = Who(row.to_number, row.prefix, row.country, row.client_ip, row.api_key)
                self._decide(tx, now, "cancel", "allowed", "canceled by request", who, row)
                fx.cancel = row.messages
            fx.final = row.public()
            return fx.final

        return op

    # -- running steps: one transaction each, or many in one (grouped) ------------------------

    def _one(self, op: _Op) -> Verification:
        (result,) = self._execute([op])
        if isinstance(result, Exception):
            raise result
        return result

    def _execute(self, ops: list[_Op]) -> list[Verification | Exception]:
        """Run ``ops`` in one write transaction, each in a savepoint when there are several: an
        op that raises is undone alone and its caller gets the error; an error an op *returns*
        (a refusal) is committed with its recorded decision. After the commit, the effects."""
        effects = [_Effects() for _ in ops]
        results: list[Verification | Exception] = []
        alone = len(ops) == 1
        try:
            with self.store.write() as tx:
                for op, fx in zip(ops, effects, strict=True):
                    if alone:
                        results.append(op(tx, fx))
                        continue
                    try:
                        with tx.savepoint():
                            results.append(op(tx, fx))
                    except SmsgateError as exc:
                        effects[len(results)] = _Effects()
                        results.append(exc)
        except Exception:
            if alone:
                raise
            # the shared transaction failed (on PostgreSQL, a deadlock with another server's
            # group is the likely cause): run each step in a transaction of its own
            return [self._alone(op) for op in ops]
        for fx in effects:
            self._after(fx)
        return results

    def _alone(self, op: _Op) -> Verification | Exception:
        try:
            return self._execute([op])[0]
        except Exception as exc:
            return exc

    def _after(self, fx: _Effects) -> None:
        if fx.block is not None and self.on_block is not None:
            try:
                self.on_block(fx.block)
            except Exception:  # a webhook queue being down must not undo the block
                logger.exception("verify: announcing the block of %s failed", fx.block.prefix)
        for message_id in fx.cancel:
            with contextlib.suppress(NotCancelable):  # already handed to a provider
                self.outbox.cancel(message_id, reason="its verification was canceled")
        if fx.final is not None:
            self._remember(fx.final)
        if fx.started is not None:
            self._maybe_prune(fx.started)

    async def _grouped(self, op: _Op) -> Verification:
        """Run ``op`` with whatever other steps arrive meanwhile, in one transaction (one disk
        sync for all of them); on its own thread-hop before :meth:`start_grouping`."""
        if self._group is None:
            return await asyncio.to_thread(self._one, op)
        return await self._group(op)

    def start_grouping(self, group: int = 256) -> None:
        """Group the async twins' steps into shared transactions (call inside the event loop;
        the server does it at start)."""
        from smsgate.outbox.groupcommit import GroupCommit, on_thread

        self._group = GroupCommit(on_thread(self._execute), group=group, name="smsgate-verify")
        self._group.start()

    async def stop_grouping(self) -> None:
        """Stop grouping; steps already queued finish first."""
        if self._group is not None:
            group, self._group = self._group, None
            await group.stop()

    def get(self, verification_id: str) -> Verification:
        """The verification; a pending one past its expiry is marked expired now."""
        cached = self._final.get(verification_id)
        if cached is not None:
            return cached
        with self.store.read() as tx:
            row = tx.get(verification_id)
        if row is None:
            raise VerificationNotFound(
                f"no verification {verification_id!r}; check the id", field="id"
            )
        if row.status == _PENDING and row.expires_at <= self.clock.time():
            with self.store.write() as tx:
                current = tx.get(verification_id, lock=True)
                assert current is not None
                row = current
                if row.status == _PENDING:
                    row = self._end(
                        tx, row, VerificationStatus.EXPIRED, "expired", self.clock.time()
                    )
        answer = row.public()
        if answer.status.final:
            self._remember(answer)
        return answer

    def recent(self, *, limit: int = 50) -> list[Verification]:
        """The newest verifications as stored, newest first (never a code or its hash)."""
        return [row.public() for row in self.store.list_rows(limit=limit)]

    def conversion(
        self, by: str, since: float, *, limit: int = 100
    ) -> list[tuple[str | None, int, int]]:
        """``(country or prefix, started, approved)`` of the verifications started since
        ``since`` (epoch seconds), grouped ``by`` ``"country"`` or ``"prefix"``."""
        return self.store.conversion(by, since, limit)

    def decisions(
        self, *, verification_id: str | None = None, to: str | None = None, limit: int = 100
    ) -> list[Decision]:
        """The guard's recorded decisions, newest first."""
        return self.store.decisions(verification_id=verification_id, to=to, limit=limit)

    # -- async twins --------------------------------------------------------------------------

    async def astart(
        self,
        to: str,
        *,
        channel: str = "sms",
        code_length: int | None = None,
        ttl: str | float | None = None,
        locale: str | None = None,
        template: str | None = None,
        client_ip: str | None = None,
        key: str | None = None,
    ) -> Verification:
        """The async twin of :meth:`start`."""
        op = self._start_op(to, channel, code_length, ttl, locale, template, client_ip, key)
        return await self._grouped(op)

    async def acheck(
        self, target: str, code: str, *, client_ip: str | None = None, key: str | None = None
    ) -> Verification:
        """The async twin of :meth:`check`."""
        op = self._check_op(target, code, client_ip, key)
        return op if isinstance(op, Verification) else await self._grouped(op)

    async def acancel(self, verification_id: str) -> Verification:
        """The async twin of :meth:`cancel`."""
        return await self._grouped(self._cancel_op(verification_id))

    async def aget(self, verification_id: str) -> Verification:
        """The async twin of :meth:`get`."""
        return await asyncio.to_thread(self.get, verification_id)

    async def ablocks(self, *, active: bool = True, limit: int = 100) -> list[Block]:
        """The async twin of :meth:`blocks`."""
        return await asyncio.to_thread(lambda: self.blocks(active=active, limit=limit))

    async def aunblock(self, prefix: str, *, by: str = "api") -> list[Block]:
        """The async twin of :meth:`unblock`."""
        return await asyncio.to_thread(lambda: self.unblock(prefix, by=by))

    # -- helpers ------------------------------------------------------------------------------

    def _end(
        self, tx: VerifyTx, row: Row, status: VerificationStatus, reason: str, now: float
    ) -> Row:
        updated = row._replace(status=status.value, reason=reason, updated_at=now)
        tx.update(updated)
        return updated

    def _decide(
        self,
        tx: VerifyTx,
        now: float,
        action: str,
        outcome: str,
        reason: str,
        who: Who,
        row: Row | None,
    ) -> None:
        tx.record(
            Decision(
                now,
                action,
                outcome,
                reason,
                None if row is None else row.id,
                who.to,
                who.prefix,
                who.country,
                who.client_ip,
                who.api_key,
            ),
        )
        self.counters[action, outcome] += 1

    def _test_behaviour(self, number: str) -> str | None:
        s = self.settings
        if not s.test_mode:
            return None
        if number in s.test_numbers_approve:
            return "approve"
        if number in s.test_numbers_fail:
            return "fail"
        return None

    def _remember(self, answer: Verification) -> None:
        with self._lock:
            self._final[answer.id] = answer
            while len(self._final) > _FINAL_CACHE:
                self._final.popitem(last=False)

    def _maybe_prune(self, now: float) -> None:
        self._starts += 1
        if self._starts % _PRUNE_EVERY:
            return
        with self.store.write() as tx:
            self.guard.prune(tx, now)


def _ttl(value: str | float) -> float:
    try:
        seconds = parse_duration(value, "ttl")
    except ConfigError as exc:
        raise InvalidMessage(exc.message, field="ttl") from None
    if not 30 <= seconds <= _DAY:
        raise InvalidMessage(
            f'ttl: {value!r} must be between 30s and 24h (e.g. "10m")', field="ttl"
        )
    return seconds


@functools.lru_cache(maxsize=4096)
def _number(text: str) -> tuple[str, str | None]:
    """E.164 (any possible number, as the outbox takes it) and region, from one parse:
    libphonenumber's parse is most of the CPU a start costs."""
    import phonenumbers

    e164 = normalize(text, strict=False, field="to")
    parsed = phonenumbers.parse(e164)
    found = phonenumbers.region_code_for_number(
        parsed
    ) or phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    return e164, None if found in (None, "ZZ", "001") else str(found)


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _block_dict(block: Block) -> dict[str, Any]:
    return {name: getattr(block, name) for name in Block.__slots__}


__all__: Sequence[str] = ("Verify",)
