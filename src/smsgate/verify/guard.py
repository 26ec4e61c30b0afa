"""The fraud guard's rules: which buckets a start or check takes from, and when a prefix is
blocked for SMS pumping. Decisions only; they read and write the verify tables inside the
caller's transaction (:class:`~smsgate.outbox.tables.verify.VerifyTx`), so a start's guard checks, its
verification and its text commit together.

The token-bucket arithmetic is :func:`smsgate.ratelimit.take_all`, the one the providers' rate
limits use; the pumping detector is our own because no library judges conversion per destination
prefix: it is a sliding window of per-slot counters and one ratio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from smsgate.ids import new_id
from smsgate.outbox.tables.verify import VerifyTx
from smsgate.ratelimit import BucketSpec
from smsgate.verify.models import Block
from smsgate.verify.settings import BUCKET_KEYS, VerifySettings

logger = logging.getLogger("smsgate.verify")

#: blocks of a prefix within this many seconds escalate the next one
ESCALATION_WINDOW = 86400.0


@dataclass(frozen=True, slots=True)
class Who:
    """Who a start or a check is about and from: the keys of the guard's buckets."""

    to: str
    prefix: str
    country: str | None
    client_ip: str | None
    api_key: str | None

    def value(self, key: str) -> str | None:
        return {
            "number": self.to,
            "ip": self.client_ip,
            "api_key": self.api_key,
            "prefix": self.prefix,
            "country": self.country,
        }[key]


class Guard:
    def __init__(self, settings: VerifySettings) -> None:
        self.settings = settings

    def prefix(self, number: str) -> str:
        """The E.164 prefix the detector judges ``number`` by (``+`` and ``prefix_digits``)."""
        return number[: 1 + self.settings.pumping.prefix_digits]

    def slot(self, at: float) -> int:
        return int(at // self.settings.pumping.slot)

    # -- token buckets ------------------------------------------------------------------------

    def specs(self, action: str, who: Who) -> list[tuple[str, BucketSpec]]:
        """``(limit name, bucket)`` for every configured limit of ``action`` ("starts" or
        "checks") that applies to ``who`` (no IP, no bucket keyed on it)."""
        found = []
        for key in BUCKET_KEYS:
            name = f"{key}_{action}"
            limit = self.settings.limits.get(name)
            value = who.value(key)
            if limit is not None and value is not None:
                spec = BucketSpec(f"{action}:{key}:{value}", limit.rate, limit.count)
                found.append((f"{name} ({limit.text})", spec))
        return found

    def take(self, tx: VerifyTx, action: str, who: Who, now: float) -> tuple[float, str | None]:
        """One token from every bucket or none: ``(0, None)`` when granted, else the seconds to
        wait and the name of the limit that refused (the first bucket without a token)."""
        specs = self.specs(action, who)
        wait = tx.take([spec for _, spec in specs], now)
        if wait <= 0:
            return 0.0, None
        for name, spec in specs:
            state = tx.bucket(spec.key)
            if state is None:
                continue
            tokens = min(spec.burst, state.tokens + max(0.0, now - state.updated_at) * spec.rate)
            if tokens < 1:
                return wait, name
        return wait, ", ".join(name for name, _ in specs)

    # -- the pumping detector -----------------------------------------------------------------

    def count_start(self, tx: VerifyTx, prefix: str, now: float) -> None:
        tx.count(prefix, self.slot(now), started=1)

    def count_approval(self, tx: VerifyTx, prefix: str, started_at: float) -> None:
        """An approval counts in the slot its verification started in."""
        tx.count(prefix, self.slot(started_at), approved=1)

    def judge(self, tx: VerifyTx, prefix: str, now: float) -> Block | None:
        """Block ``prefix`` when its mature starts in the window are many and rarely approved.

        A start counts once it is older than ``grace`` (a real user needs time to type the
        code); an approval counts in the slot its verification started, so the ratio compares
        like with like. Each block of the prefix within a day doubles the next one's length, up
        to ``max_block``. A block clears the prefix's window: the next needs new evidence.
        """
        p = self.settings.pumping
        if not p.enabled:
            return None
        low = int((now - p.window) // p.slot)
        high = int((now - p.grace) // p.slot)
        started, approved = tx.traffic(prefix, low, high)
        if started < p.min_volume or approved >= p.min_conversion * started:
            return None
        level = tx.blocks_since(prefix, now - ESCALATION_WINDOW) + 1
        seconds = min(p.block * 2 ** (level - 1), p.max_block)
        block = Block(
            id=new_id("vbk"),
            prefix=prefix,
            level=level,
            reason=(
                f"{approved} of {started} verifications approved in the last "
                f"{p.window / 60:g} min (below {p.min_conversion:.0%}); block {level} in a day, "
                f"{seconds / 60:g} min"
            ),
            started=started,
            approved=approved,
            created_at=now,
            blocked_until=now + seconds,
        )
        tx.add_block(block)
        tx.forget_traffic(prefix=prefix)
        logger.warning("verify: blocked prefix %s: %s", block.prefix, block.reason)
        return block

    def prune(self, tx: VerifyTx, now: float) -> None:
        """Drop every prefix's slots older than the window."""
        p = self.settings.pumping
        tx.forget_traffic(before=int((now - p.window) // p.slot) - 1)
