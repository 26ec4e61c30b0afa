"""The SMS-pumping detector, simulated on a fake clock: real users converting across many
countries while a bot starts 1,000 verifications on one prefix that never converts."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from smsgate.clock import FakeClock
from smsgate.errors import InvalidMessage
from smsgate.verify import VerificationBlocked, VerificationStatus, Verify
from tests.verify.conftest import MakeVerify, last_code

REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "BR", "IN", "JP", "AU", "CA", "MX")
BOT_PREFIX = "+234803"


def _numbers(rng: random.Random) -> dict[str, list[str]]:
    """Valid mobile numbers per region (the example number with its last digits varied)."""
    out: dict[str, list[str]] = {}
    for region in REGIONS:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        base = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        found: set[str] = set()
        while len(found) < 200:
            candidate = base[:-4] + f"{rng.randrange(10_000):04d}"
            if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
                found.add(candidate)
        out[region] = sorted(found)
    return out


def test_a_pumping_bot_is_blocked_and_real_users_are_not(
    sqlite_verify: MakeVerify, clock: FakeClock
) -> None:
    verify = sqlite_verify(limits={"ip_starts": "off"})  # the bot rotates addresses anyway
    rng = random.Random(7)
    numbers = _numbers(rng)
    due: list[tuple[float, str]] = []  # (when the user types the code, verification id)
    legit_started = legit_refused = legit_approved = 0
    bot_attempts = bot_texts = 0
    first_block_after: int | None = None
    start = clock.time()
    # 1 real user per second, 80% of whom type their code 20-90 s later; a bot start every 2 s
    for second in range(2400):
        region = REGIONS[second % len(REGIONS)]
        try:
            started = verify.start(
                rng.choice(numbers[region]), client_ip=f"198.51.100.{second % 250}"
            )
            legit_started += 1
            if rng.random() < 0.8:
                due.append((clock.time() + rng.uniform(20, 90), started.id))
        except VerificationBlocked:
            legit_refused += 1
        if second % 2 == 0 and bot_attempts < 1000:
            bot_attempts += 1
            number = f"{BOT_PREFIX}{rng.randrange(10**7):07d}"
            try:
                verify.start(number, client_ip=f"203.0.113.{bot_attempts % 250}")
                bot_texts += 1
            except VerificationBlocked:
                if first_block_after is None:
                    first_block_after = bot_texts
        due.sort()
        while due and due[0][0] <= clock.time():
            _, ident = due.pop(0)
            if verify.check(ident, last_code(verify, ident)).valid:
                legit_approved += 1
        clock.advance(1)
    assert bot_attempts == 1000
    assert first_block_after is not None
    # grace (120 s) at one start per 2 s, plus min_volume (20), plus one slot of lag (60 s)
    assert first_block_after <= 60 + 20 + 30
    # the escalating blocks (5, 10, 20, 40 min ...) let only a fraction of the 1,000 through
    assert bot_texts < 300
    assert legit_refused == 0 and legit_started == 2400
    assert legit_approved > 0.75 * 2400
    blocks = verify.blocks(active=False)
    assert {b.prefix for b in blocks} == {BOT_PREFIX}
    levels = sorted(b.level for b in blocks)
    assert levels == list(range(1, len(levels) + 1)) and len(levels) >= 2
    durations = [b.blocked_until - b.created_at for b in sorted(blocks, key=lambda b: b.level)]
    assert durations[:3] == [300, 600, 1200][: len(durations[:3])]
    print(
        f"\npumping: first block after {first_block_after} bot texts; {bot_texts} of "
        f"{bot_attempts} bot starts sent over {(clock.time() - start) / 60:.0f} min; "
        f"{len(blocks)} blocks; {legit_started} real starts, none refused"
    )
    blocked = [d for d in verify.decisions(limit=5000) if d.outcome == "blocked"]
    assert blocked and all(d.prefix == BOT_PREFIX for d in blocked)
    assert "blocked for SMS pumping" in blocked[-1].reason


def test_unblock_lifts_and_needs_new_evidence(make_verify: MakeVerify, clock: FakeClock) -> None:
    verify = make_verify(pumping={"min_volume": 5, "grace": "1m", "window": "10m"})
    rng = random.Random(1)

    def bot() -> None:
        verify.start(f"{BOT_PREFIX}{rng.randrange(10**7):07d}")

    with pytest.raises(VerificationBlocked):
        for _ in range(100):
            bot()
            clock.advance(20)
    (block,) = verify.blocks()
    assert block.prefix == BOT_PREFIX and block.active(clock.time())
    with pytest.raises(VerificationBlocked, match="verify unblock"):
        bot()
    lifted = verify.unblock(BOT_PREFIX, by="test")
    assert [b.lifted_by for b in lifted] == ["test"]
    assert verify.blocks() == []
    bot()  # sends again: the old evidence was cleared with the block
    assert verify.unblock(BOT_PREFIX) == []
    with pytest.raises(InvalidMessage):
        verify.unblock("44")
    assert verify.decisions()[1].action in ("start", "unblock")


def test_detector_can_be_turned_off(make_verify: MakeVerify, clock: FakeClock) -> None:
    verify = make_verify(pumping={"enabled": False}, limits={"ip_starts": "off"})
    rng = random.Random(2)
    for _ in range(200):
        v = verify.start(f"{BOT_PREFIX}{rng.randrange(10**7):07d}")
        assert v.status is VerificationStatus.PENDING
        clock.advance(5)
    assert verify.blocks(active=False) == []


def test_conversion_counts_approvals_in_the_start_slot(verify: Verify, clock: FakeClock) -> None:
    # 30 starts on one prefix, every one approved a minute later: never blocked
    rng = random.Random(3)
    for _ in range(30):
        started = verify.start(f"{BOT_PREFIX}{rng.randrange(10**7):07d}")
        clock.advance(60)
        assert verify.check(started.id, last_code(verify, started.id)).valid
    assert verify.blocks(active=False) == []
