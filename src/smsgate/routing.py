"""Which provider sends a message, and what to do when it fails.

:class:`Router` picks a :class:`Route` for a message (purpose first, then the longest matching
country prefix, then a default route) and is the policy brain the worker asks after every attempt:
retry the same provider later, fail over to the next one, look the message up, or stop. Its answer
is a :class:`Decision` with a reason the worker stores in the message's history.

A route may keep :class:`QuietHours`: messages of some purposes (marketing by default) are held,
``scheduled``, while it is night where the recipient is, by the time zones libphonenumber gives
for the number (all of them, where a number spans several: the message waits until it is day in
every one). A message may be pinned to one provider (``Message.via``, a reply): it never fails
over.

A :class:`CircuitBreaker` per provider stops sending to a provider that keeps failing and lets one
trial through after a cool-down. Breakers live in one process; each worker judges for itself.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    SmsgateError,
    TransientError,
)
from smsgate.message import Message, Purpose, Status
from smsgate.retry import RetryPolicy

if TYPE_CHECKING:
    from smsgate.pauses import PauseView

# --------------------------------------------------------------------------------------------
# Circuit breakers

#: Errors that say the provider itself is in trouble. Recipient and message errors prove the
#: provider answered, and a 429 proves it is alive (the rate limiter deals with it).
ERRORS_AGAINST_PROVIDER: tuple[type[SmsgateError], ...] = (
    TransientError,
    AmbiguousSend,
    AuthError,
    InsufficientFunds,
    ProviderUnavailable,
)
#: Errors that are the recipient's or the message's fault: no other provider would do better.
RECIPIENT_ERRORS: tuple[type[SmsgateError], ...] = (InvalidRecipient, OptedOut, InvalidMessage)


#: How soon a message waiting on a half-open circuit's trial looks again.
TRIAL_POLL_SECONDS = 1.0
#: how soon a route whose every provider is paused looks again
PAUSE_POLL_SECONDS = 5.0


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures that count against the provider.

    While open, :meth:`allow` refuses. After ``cooldown`` seconds it is half-open and lets one trial
    through: success closes it, failure opens it again for another cool-down. A trial whose
    result never arrives (its worker died) is given up after one more cool-down, so the breaker
    cannot stick.
    """

    def __init__(
        self,
        provider: str,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown <= 0:
            raise ValueError("cooldown must be positive")
        self.provider = provider
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._open = False
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> CircuitState:
        if not self._open:
            return CircuitState.CLOSED
        if self._clock.monotonic() - self._opened_at >= self.cooldown:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until :meth:`allow` could say yes if nothing else happens: the rest of the
        cool-down while open, the time until a half-open trial is given up while one is out."""
        state = self.state
        now = self._clock.monotonic()
        if state is CircuitState.OPEN:
            return self._opened_at + self.cooldown - now
        if state is CircuitState.HALF_OPEN and self._trial_started is not None:
            return max(0.0, self._trial_started + self.cooldown - now)
        return 0.0

    @property
    def trial_in_flight(self) -> bool:
        """Half-open with its one trial out: the answer should come within a request timeout."""
        return self.state is CircuitState.HALF_OPEN and not self._trial_available()

    def would_allow(self) -> bool:
        """Whether :meth:`allow` would let a send through now, without taking the trial."""
        state = self.state
        if state is CircuitState.HALF_OPEN:
            return self._trial_available()
        return state is CircuitState.CLOSED

    def allow(self) -> bool:
        """Ask before sending; in half-open state only the first caller gets the trial."""
        if not self._open:  # closed, the usual answer, without working out the state
            return True
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or not self._trial_available():
            return False
        self._trial_started = self._clock.monotonic()
        return True

    def record_success(self) -> None:
        self._open = False
        self._failures = 0
        self._trial_started = None

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is CircuitState.HALF_OPEN or (
            not self._open and self._failures >= self.failure_threshold
        ):
            self._trip()

    def record(self, error: SmsgateError | None) -> None:
        """Record the outcome of a send: ``None`` for success, else the error it raised."""
        if isinstance(error, ERRORS_AGAINST_PROVIDER):
            self.record_failure()
        elif isinstance(error, RateLimited):
            # Alive but busy: neither proof of health nor of failure. Free the trial slot.
            self._trial_started = None
        else:
            # Success, or a verdict on the recipient or message: the provider is working.
            self.record_success()

    def _trip(self) -> None:
        self._open = True
        self._opened_at = self._clock.monotonic()
        self._trial_started = None

    def _trial_available(self) -> bool:
        started = self._trial_started
        return started is None or self._clock.monotonic() - started >= self.cooldown


class CircuitBreakers:
    """One breaker per provider, created on first use with shared settings."""

    def __init__(
        self, *, failure_threshold: int = 5, cooldown: float = 30.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def __getitem__(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = CircuitBreaker(
                provider,
                failure_threshold=self.failure_threshold,
                cooldown=self.cooldown,
                clock=self._clock,
            )
            self._breakers[provider] = breaker
        return breaker

    def states(self) -> dict[str, CircuitState]:
        """Every known provider's breaker state, for metrics and the dashboard."""
        return {name: breaker.state for name, breaker in self._breakers.items()}


# --------------------------------------------------------------------------------------------
# Routes


class AmbiguousPolicy(enum.StrEnum):
    """What to do when a send may or may not have reached the provider (see docs/architecture.md,
    "Delivery semantics")."""

    AUTO = "auto"
    RETRY_SAME_KEY = "retry_same_key"
    RECONCILE = "reconcile"
    RESEND = "resend"
    UNKNOWN = "unknown"


_NONE_PAUSED: frozenset[str] = frozenset()
_COUNTRY_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")


_QUIET = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
#: purposes held in quiet hours unless a route names others
QUIET_PURPOSES = frozenset({Purpose.MARKETING})


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window of the recipient's local time in which a route holds some messages:
    ``"21:00-08:00"`` (a window may run over midnight). ``start`` and ``end`` are minutes after
    midnight; the window includes ``start`` and excludes ``end``."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        match = _QUIET.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"quiet_hours {text!r} is not a window of local time; write e.g. "
                '"21:00-08:00" (HH:MM-HH:MM, 24-hour)',
                field="quiet_hours",
            )
        h1, m1, h2, m2 = (int(group) for group in match.groups())
        if (h1, m1) == (h2, m2):
            raise ConfigError(
                f"quiet_hours {text!r} starts and ends at the same time", field="quiet_hours"
            )
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    def __str__(self) -> str:
        start, end = divmod(self.start, 60), divmod(self.end, 60)
        return f"{start[0]:02d}:{start[1]:02d}-{end[0]:02d}:{end[1]:02d}"

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def ends_after(self, local: datetime) -> datetime:
        """The end of the window ``local`` (an aware local time inside it) is in."""
        end = local.replace(hour=self.end // 60, minute=self.end % 60, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end


def quiet_zones(e164: str) -> tuple[ZoneInfo, ...]:
    """The time zones libphonenumber gives for a number (several where a number spans them;
    none when it knows none)."""
    return _zones(e164)


@lru_cache(maxsize=4096)
def _zones(e164: str) -> tuple[ZoneInfo, ...]:
    import phonenumbers
    from phonenumbers import timezone

    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ()
    zones = []
    for name in timezone.time_zones_for_number(number):
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue  # "Etc/Unknown", or a zone this system's database lacks
    return tuple(zones)


def quiet_until(
    quiet: QuietHours, zones: Sequence[ZoneInfo], now: float
) -> tuple[float, str] | None:
    """When a message held by ``quiet`` may go (epoch seconds) and why, or None when it may go
    now. The most restrictive zone rules: the message waits until it is outside the window in
    every one of ``zones``."""
    at = now
    reason = ""
    for _ in range(2 * len(zones) + 2):
        inside = []
        for zone in zones:
            local = datetime.fromtimestamp(at, zone)
            if quiet.contains(local.hour * 60 + local.minute):
                inside.append((quiet.ends_after(local), zone, local))
        if not inside:
            return (at, reason) if at > now else None
        end, zone, local = max(inside, key=lambda item: item[0].timestamp())
        if not reason:
            reason = f"quiet hours {quiet} in {zone.key} (local time {local:%H:%M})"
        at = end.timestamp()
    return at, reason  # the zones cover the whole day: release at the latest end found


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Messages of some purposes to some country prefixes go through an ordered provider chain.

    Empty ``purposes`` or ``countries`` match everything; a route with neither is a default route.
    """

    name: str
    providers: tuple[str, ...]
    purposes: frozenset[Purpose] = field(default_factory=frozenset)
    countries: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ambiguous: AmbiguousPolicy = AmbiguousPolicy.AUTO
    #: hold messages of ``quiet_purposes`` while it is this time where the recipient is
    quiet_hours: QuietHours | None = None
    quiet_purposes: frozenset[Purpose] = QUIET_PURPOSES

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.name:
            raise ConfigError("route name must not be empty", field="name")
        providers = tuple(self.providers)
        if not providers:
            raise ConfigError(
                f"route {self.name!r}: providers must name at least one provider", field="providers"
            )
        if len(set(providers)) != len(providers):
            raise ConfigError(
                f"route {self.name!r}: a provider appears twice in the chain", field="providers"
            )
        set_(self, "providers", providers)
        try:
            set_(self, "purposes", frozenset(Purpose(purpose) for purpose in self.purposes))
        except ValueError:
            raise ConfigError(
                f"route {self.name!r}: purposes must be among {', '.join(Purpose)}",
                field="purposes",
            ) from None
        countries = tuple(self.countries)
        for prefix in countries:
            if not isinstance(prefix, str) or not _COUNTRY_PREFIX.match(prefix):
                raise ConfigError(
                    f"route {self.name!r}: country prefix {prefix!r} must be + and digits, "
                    'like "+44"',
                    field="countries",
                )
        set_(self, "countries", countries)
        set_(self, "ambiguous", AmbiguousPolicy(self.ambiguous))
        if isinstance(self.quiet_hours, str):
            set_(self, "quiet_hours", QuietHours.parse(self.quiet_hours))
        try:
            set_(self, "quiet_purposes", frozenset(Purpose(p) for p in self.quiet_purposes))
        except ValueError:
            raise ConfigError(
                f"route {self.name!r}: quiet_purposes must be among {', '.join(Purpose)}",
                field="quiet_purposes",
            ) from None

    @property
    def is_default(self) -> bool:
        return not self.purposes and not self.countries

    def specificity(self, message: Message) -> tuple[int, int] | None:
        """How closely this route fits: (purpose named, matched prefix length), or None."""
        if self.purposes and message.purpose not in self.purposes:
            return None
        if not self.countries:
            return (1 if self.purposes else 0, 0)
        matched = [len(prefix) for prefix in self.countries if message.to.startswith(prefix)]
        if not matched:
            return None
        return (1 if self.purposes else 0, max(matched))

    def describe(self) -> str:
        purposes = ", ".join(sorted(self.purposes)) or "any purpose"
        countries = ", ".join(self.countries) or "any country"
        return f"{self.name}: {purposes}; {countries} -> {' -> '.join(self.providers)}"


def resolve_ambiguous_policy(
    policy: AmbiguousPolicy, *, purpose: Purpose, provider_dedupes: bool, provider_can_lookup: bool
) -> tuple[AmbiguousPolicy, str]:
    """The policy that applies (never ``AUTO``) and why.

    ``auto`` takes the safest capability the provider has. An explicit policy the provider cannot
    honour ends at ``unknown``: we never risk a duplicate the route did not ask for.
    """
    if policy is AmbiguousPolicy.AUTO:
        if provider_dedupes:
            return (
                AmbiguousPolicy.RETRY_SAME_KEY,
                "the provider de-duplicates on our idempotency key",
            )
        if provider_can_lookup:
            return AmbiguousPolicy.RECONCILE, "the provider can look messages up"
        if purpose is Purpose.OTP:
            return AmbiguousPolicy.RESEND, "it is an otp message and a second code beats none"
        return (
            AmbiguousPolicy.UNKNOWN,
            "the provider neither de-duplicates nor looks messages up, and sending again could "
            "deliver it twice",
        )
    if policy is AmbiguousPolicy.RETRY_SAME_KEY and not provider_dedupes:
        return (
            AmbiguousPolicy.UNKNOWN,
            "the route asks to retry with the same key but the provider does not de-duplicate",
        )
    if policy is AmbiguousPolicy.RECONCILE and not provider_can_lookup:
        return (
            AmbiguousPolicy.UNKNOWN,
            "the route asks to reconcile but the provider has no status lookup",
        )
    return policy, "the route says so"


# --------------------------------------------------------------------------------------------
# Decisions


class Action(enum.StrEnum):
    """What the worker does next with a message."""

    #: send through ``provider`` now (the answer of :meth:`Router.plan`)
    SEND = "send"
    #: send through the same ``provider`` again at ``at``
    RETRY = "retry"
    #: send through the next ``provider`` in the chain at ``at``
    FAILOVER = "failover"
    #: look the message up at ``provider`` at ``at``; found means sent, otherwise ask
    #: :meth:`Router.lookup_missed`; a lookup that fails is another ``AmbiguousSend``
    RECONCILE = "reconcile"
    #: no provider can take it now; plan again at ``at`` (not an attempt)
    WAIT = "wait"
    #: not now for the recipient (quiet hours): scheduled again for ``at`` (not an attempt)
    HOLD = "hold"
    #: stop: the message's final status is ``status``
    FAIL = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The router's answer. ``attempt`` is the per-provider attempt number of the next try: pass
    it back as ``attempt`` if that try fails. ``at`` is wall-clock seconds (``Clock.time()``)."""

    action: Action
    reason: str
    route: str
    provider: str | None = None
    at: float | None = None
    attempt: int = 1
    status: Status | None = None
    error: SmsgateError | None = None
    may_duplicate: bool = False
    #: seconds the provider's rate bucket should pause (``RateLimiter.penalize``) after a 429
    penalty: float | None = None

    @property
    def is_final(self) -> bool:
        return self.action is Action.FAIL

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe form for the message's event history."""
        return {
            "action": self.action.value,
            "reason": self.reason,
            "route": self.route,
            "provider": self.provider,
            "at": self.at,
            "attempt": self.attempt,
            "status": None if self.status is None else self.status.value,
            "error": None if self.error is None else self.error.to_dict(),
            "may_duplicate": self.may_duplicate,
            "penalty": self.penalty,
        }


class Router:
    """Routes messages and decides what happens after each failed attempt."""

    def __init__(
        self,
        routes: Sequence[Route],
        breakers: CircuitBreakers | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        pauses: PauseView | None = None,
    ) -> None:
        names = [route.name for route in routes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"route names must be unique; repeated: {', '.join(duplicates)}")
        self.routes: tuple[Route, ...] = tuple(routes)
        self.breakers = CircuitBreakers(clock=clock) if breakers is None else breakers
        self._clock = clock
        self._rng = rng or random.Random()
        #: providers an operator paused (smsgate.pauses): skipped like an open circuit
        self.pauses = pauses

    def _paused(self) -> frozenset[str]:
        return _NONE_PAUSED if self.pauses is None else self.pauses.paused()

    def route_for(self, message: Message) -> Route:
        """The best route: a named purpose first, then the longest country prefix, then the
        first in config order."""
        routes = self.routes
        if len(routes) == 1 and not (routes[0].purposes or routes[0].countries):
            return routes[0]  # a lone default route takes everything: nothing to compare
        best: tuple[tuple[int, int], Route] | None = None
        for route in self.routes:
            fit = route.specificity(message)
            if fit is not None and (best is None or fit > best[0]):
                best = (fit, route)
        if best is None:
            raise ConfigError(
                f"no route for a {message.purpose} message to {message.to}; add a route for it or "
                "a default route (one without purposes and countries)",
                field="routes",
            )
        return best[1]

    def plan(self, message: Message, provider: str | None = None, attempt: int = 1) -> Decision:
        """Call right before sending: which provider takes this try.

        ``provider`` is the one a previous decision named (default: the head of the chain). A
        provider whose circuit is open is skipped for the next one in the chain that admits.
        """
        route = self.route_for(message)
        if route.quiet_hours is not None and message.purpose in route.quiet_purposes:
            quiet = quiet_until(route.quiet_hours, quiet_zones(message.to), self._clock.time())
            if quiet is not None:
                at, why = quiet
                return Decision(
                    action=Action.HOLD,
                    reason=f"held for quiet hours: {why}; route {route.name} holds "
                    f"{', '.join(sorted(route.quiet_purposes))} messages until "
                    f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M} UTC",
                    route=route.name,
                    provider=provider,
                    at=at,
                    attempt=attempt,
                )
        # a pinned message (a reply) has a chain of one: the provider its number belongs to
        chain = [message.via] if message.via else _chain_from(route, provider)
        paused = self._paused()
        skipped: list[str] = []
        held: list[str] = []
        for candidate in chain:
            if candidate in paused:
                held.append(candidate)
                continue
            if self.breakers[candidate].allow():
                reason = f"sending through {candidate} (route {route.name})"
                if message.via:
                    reason = f"sending through {candidate}, which it must leave through"
                if skipped:
                    reason += f"; circuit open for {', '.join(skipped)}"
                if held:
                    reason += f"; paused: {', '.join(held)}"
                same = candidate == (provider or route.providers[0])
                return Decision(
                    action=Action.SEND,
                    reason=reason,
                    route=route.name,
                    provider=candidate,
                    at=self._clock.time(),
                    attempt=attempt if same else 1,
                )
            skipped.append(candidate)
        open_ = [name for name in chain if name not in paused]
        if not open_:
            # Every provider left is paused: look again soon, the operator may resume one.
            soonest = chain[0]
            return Decision(
                action=Action.WAIT,
                reason=(
                    f"every provider left in route {route.name} is paused ({', '.join(chain)}); "
                    f"looking again in {PAUSE_POLL_SECONDS:.0f}s"
                ),
                route=route.name,
                provider=soonest,
                at=self._clock.time() + PAUSE_POLL_SECONDS,
                attempt=attempt if soonest == (provider or route.providers[0]) else 1,
            )
        waits = {name: self._wait_for(name) for name in open_}
        soonest = min(open_, key=waits.__getitem__)
        wait = waits[soonest]
        note = f"; paused: {', '.join(held)}" if held else ""
        return Decision(
            action=Action.WAIT,
            reason=(
                f"circuit open for every provider left in route {route.name} "
                f"({', '.join(open_)}); trying {soonest} again in {wait:.1f}s{note}"
            ),
            route=route.name,
            provider=soonest,
            at=self._clock.time() + wait,
            attempt=attempt if soonest == (provider or route.providers[0]) else 1,
        )

    def _wait_for(self, provider: str) -> float:
        breaker = self.breakers[provider]
        if breaker.trial_in_flight:
            # The trial's result usually arrives within one request timeout; look again soon
            # rather than waiting for the trial to be given up.
            return min(breaker.retry_in(), TRIAL_POLL_SECONDS)
        return breaker.retry_in()

    def record_success(self, provider: str) -> None:
        """Tell the provider's breaker that a send (or a lookup) went through."""
        self.breakers[provider].record_success()

    def decide(
        self,
        message: Message,
        *,
        provider: str,
        attempt: int,
        error: SmsgateError,
        provider_dedupes: bool = False,
        provider_can_lookup: bool = False,
    ) -> Decision:
        """What to do after attempt ``attempt`` (1-based, per provider) through ``provider`` raised
        ``error``. Records the outcome on the provider's circuit breaker.

        ``provider_dedupes``: the provider drops a repeat of our idempotency key.
        ``provider_can_lookup``: the provider can be asked whether it has the message.
        """
        self.breakers[provider].record(error)
        route = self.route_for(message)
        if isinstance(error, AmbiguousSend):
            return self._after_ambiguous(
                message, route, provider, attempt, error, provider_dedupes, provider_can_lookup
            )
        return self._after_error(route, provider, attempt, error, pinned=bool(message.via))

    def lookup_missed(self, message: Message, *, provider: str, attempt: int) -> Decision:
        """A reconcile lookup found no trace of the message: the send did not land, so sending
        again cannot duplicate it. ``attempt`` is the one the RECONCILE decision carried."""
        self.record_success(provider)
        route = self.route_for(message)
        missing = TransientError(
            f"{provider} has no record of the message after an ambiguous send", provider=provider
        )
        return self._after_error(route, provider, attempt, missing, pinned=bool(message.via))

    # ---- the branches

    def _after_error(
        self, route: Route, provider: str, attempt: int, error: SmsgateError, *, pinned: bool
    ) -> Decision:
        """``pinned``: the message may leave only through ``provider`` (no failover)."""
        now = self._clock.time()
        policy = route.retry
        penalty = None
        if isinstance(error, RateLimited):
            penalty = (
                error.retry_after if error.retry_after is not None else policy.ceiling(attempt)
            )
        what = f"attempt {attempt} through {provider} failed: {error.kind}: {error}"

        def retry(delay: float, why: str) -> Decision:
            return Decision(
                action=Action.RETRY,
                reason=f"{what}; {why}retrying {provider} in {delay:.1f}s "
                f"(attempt {attempt + 1} of {policy.max_attempts})",
                route=route.name,
                provider=provider,
                at=now + delay,
                attempt=attempt + 1,
                error=error,
                penalty=penalty,
            )

        def fail(why: str) -> Decision:
            return Decision(
                action=Action.FAIL,
                status=Status.FAILED,
                reason=f"{what}; {why}",
                route=route.name,
                provider=provider,
                attempt=attempt,
                error=error,
                penalty=penalty,
            )

        if isinstance(error, RECIPIENT_ERRORS):
            return fail("the recipient or the message is at fault, so no other try would succeed")
        breaker = self.breakers[provider]
        circuit_open = breaker.state is CircuitState.OPEN
        if error.retryable and policy.allows_retry(attempt) and not circuit_open:
            return retry(policy.delay(attempt, self._rng, error), "")
        if error.failover or circuit_open:
            if circuit_open:
                why = "its circuit is open"
            elif error.retryable:
                why = f"{policy.max_attempts} attempts used"
            else:
                why = "the provider, not the message, is the problem"
            following, skipped = (None, []) if pinned else self._next_provider(route, provider)
            if following is not None:
                note = f" (circuit open for {', '.join(skipped)})" if skipped else ""
                return Decision(
                    action=Action.FAILOVER,
                    reason=f"{what}; {why}, failing over to {following}{note}",
                    route=route.name,
                    provider=following,
                    at=now,
                    attempt=1,
                    error=error,
                    penalty=penalty,
                )
            if error.retryable and policy.allows_retry(attempt):
                # Nowhere to fail over to but attempts remain: wait for this circuit to half-open.
                delay = max(policy.delay(attempt, self._rng, error), breaker.retry_in())
                return retry(delay, f"{why} and no other provider is available; ")
            if pinned:
                return fail(f"{why}, and this message may leave only through {provider}")
            return fail(f"{why} and no provider is left in route {route.name}")
        if error.retryable:
            return fail(f"giving up: route {route.name} allows {policy.max_attempts} attempts")
        return fail(f"{error.kind} errors are not retried")

    def _after_ambiguous(
        self,
        message: Message,
        route: Route,
        provider: str,
        attempt: int,
        error: AmbiguousSend,
        provider_dedupes: bool,
        provider_can_lookup: bool,
    ) -> Decision:
        now = self._clock.time()
        policy, why = resolve_ambiguous_policy(
            route.ambiguous,
            purpose=message.purpose,
            provider_dedupes=provider_dedupes,
            provider_can_lookup=provider_can_lookup,
        )
        what = f"attempt {attempt} through {provider} may have been sent ({error})"

        def unknown(reason: str) -> Decision:
            return Decision(
                action=Action.FAIL,
                status=Status.UNKNOWN,
                reason=f"{what}; {reason}; status unknown until a receipt arrives",
                route=route.name,
                provider=provider,
                attempt=attempt,
                error=error,
            )

        if policy is AmbiguousPolicy.UNKNOWN:
            return unknown(f"not sending again because {why}")
        if not route.retry.allows_retry(attempt):
            return unknown(f"policy {policy} has used all {route.retry.max_attempts} attempts")
        delay = route.retry.delay(attempt, self._rng, error)
        if policy is AmbiguousPolicy.RECONCILE:
            action = Action.RECONCILE
            how = f"looking it up at {provider}"
        elif policy is AmbiguousPolicy.RESEND:
            action = Action.RETRY
            how = "re-sending (it may arrive twice)"
        else:
            action = Action.RETRY
            how = "retrying with the same idempotency key"
        return Decision(
            action=action,
            reason=f"{what}; {how} in {delay:.1f}s because {why}",
            route=route.name,
            provider=provider,
            at=now + delay,
            attempt=attempt + 1,
            error=error,
            may_duplicate=policy is AmbiguousPolicy.RESEND,
        )

    def _next_provider(self, route: Route, provider: str) -> tuple[str | None, list[str]]:
        """The next provider after ``provider`` that is not paused and whose circuit is not open,
        and those skipped."""
        skipped: list[str] = []
        paused = self._paused()
        for candidate in _after(route.providers, provider):
            if candidate not in paused and self.breakers[candidate].state is not CircuitState.OPEN:
                return candidate, skipped
            skipped.append(candidate)
        return None, skipped


def _after(chain: Sequence[str], provider: str) -> Iterable[str]:
    """The providers after ``provider``; all but it when it is not in the chain (config changed)."""
    if provider in chain:
        return chain[chain.index(provider) + 1 :]
    return [name for name in chain if name != provider]


def _chain_from(route: Route, provider: str | None) -> list[str]:
    """The chain from ``provider`` on; the whole chain when it is no longer in the route."""
    if provider is None or provider not in route.providers:
        return list(route.providers)
    return list(route.providers[route.providers.index(provider) :])
