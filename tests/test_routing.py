"""Retry backoff, circuit breakers, route selection and the router's decisions, on a fake clock."""

from __future__ import annotations

import json
import random
import statistics
from datetime import datetime

import pytest

from smsgate.clock import FakeClock
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
    UnsupportedFeature,
)
from smsgate.message import Message, Purpose, Status
from smsgate.retry import RetryPolicy
from smsgate.routing import (
    TRIAL_POLL_SECONDS,
    Action,
    AmbiguousPolicy,
    CircuitBreaker,
    CircuitBreakers,
    CircuitState,
    Decision,
    Route,
    Router,
    resolve_ambiguous_policy,
)

US = "+15555550100"
UK = "+447700900123"
FR = "+33612345678"
US_TOLL_FREE = "+18005550100"


def message(to: str = US, purpose: str = "transactional") -> Message:
    return Message(to=to, body="Your code is 481902", purpose=Purpose(purpose))


# ---- RetryPolicy


def test_backoff_ceiling_doubles_from_base_delay_up_to_max_delay() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=10.0, jitter="none")
    assert [policy.ceiling(attempt) for attempt in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert [policy.delay(attempt) for attempt in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.ceiling(100_000) == 10.0
    with pytest.raises(ValueError):
        policy.ceiling(0)


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=30.0)
    rng = random.Random(1)
    for attempt in range(1, 10):
        ceiling = policy.ceiling(attempt)
        for _ in range(200):
            assert 0.0 <= policy.delay(attempt, rng) <= ceiling


def test_full_jitter_is_uniform_over_the_whole_range() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=300.0)
    rng = random.Random(20240601)
    ceiling = policy.ceiling(4)
    draws = [policy.delay(4, rng) for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(ceiling / 2, rel=0.02)
    quarters = [0, 0, 0, 0]
    for draw in draws:
        quarters[min(3, int(draw / ceiling * 4))] += 1
    for count in quarters:
        assert count / len(draws) == pytest.approx(0.25, abs=0.015)
    assert min(draws) < 0.01 * ceiling
    assert max(draws) > 0.99 * ceiling


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.delay(3, random.Random(7)) for _ in range(3)]
    second = [policy.delay(3, random.Random(7)) for _ in range(3)]
    assert first == second
    rng = random.Random(7)
    assert len({policy.delay(3, rng) for _ in range(50)}) == 50


def test_equal_jitter_keeps_the_upper_half() -> None:
    policy = RetryPolicy(base_delay=2.0, jitter="equal")
    rng = random.Random(3)
    draws = [policy.delay(3, rng) for _ in range(1000)]
    assert min(draws) >= 4.0
    assert max(draws) <= 8.0


def test_rate_limited_waits_at_least_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    rng = random.Random(5)
    throttled = RateLimited("429", retry_after=30.0)
    assert all(policy.delay(2, rng, throttled) >= 30.0 for _ in range(100))
    # Without retry_after, a 429 backs off like anything else.
    assert all(policy.delay(1, rng, RateLimited("429")) <= 1.0 for _ in range(100))


def test_allows_retry_counts_attempts_from_one() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.allows_retry(attempt) for attempt in (1, 2, 3)] == [True, True, False]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"base_delay": 0.0}, "base_delay"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"base_delay": 10.0, "max_delay": 5.0}, "max_delay"),
        ({"jitter": "half"}, "jitter"),
    ],
)
def test_retry_policy_refuses_bad_values_naming_the_field(
    kwargs: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ---- CircuitBreaker


def state_of(breaker: CircuitBreaker) -> CircuitState:
    # A call, not the property: mypy would keep a narrowed property type across record()/advance().
    return breaker.state


def test_breaker_opens_after_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=3, cooldown=30.0, clock=clock)
    breaker.record(TransientError("502"))
    breaker.record(AuthError("401"))
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow()
    breaker.record(ProviderUnavailable("down"))
    assert state_of(breaker) is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(30.0)


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker("twilio", failure_threshold=2, clock=FakeClock())
    breaker.record(TransientError("502"))
    breaker.record(None)
    breaker.record(TransientError("502"))
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.consecutive_failures == 1


@pytest.mark.parametrize(
    "verdict",
    [
        InvalidRecipient("bad number"),
        OptedOut("STOP"),
        InvalidMessage("too long"),
        UnsupportedFeature("no MMS"),
    ],
)
def test_recipient_and_message_errors_prove_the_provider_works(verdict: SmsgateError) -> None:
    breaker = CircuitBreaker("twilio", failure_threshold=2, clock=FakeClock())
    breaker.record(TransientError("502"))
    breaker.record(verdict)
    breaker.record(TransientError("502"))
    assert state_of(breaker) is CircuitState.CLOSED


def test_rate_limited_neither_counts_nor_resets() -> None:
    breaker = CircuitBreaker("twilio", failure_threshold=2, clock=FakeClock())
    breaker.record(TransientError("502"))
    breaker.record(RateLimited("429", retry_after=1))
    assert breaker.consecutive_failures == 1
    breaker.record(InsufficientFunds("no credit"))
    assert state_of(breaker) is CircuitState.OPEN


def test_breaker_half_opens_after_cooldown_and_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, cooldown=30.0, clock=clock)
    breaker.record(TransientError("502"))
    clock.advance(29.9)
    assert state_of(breaker) is CircuitState.OPEN
    clock.advance(0.1)
    assert state_of(breaker) is CircuitState.HALF_OPEN
    assert breaker.would_allow()
    assert breaker.allow()
    assert not breaker.allow(), "only one trial while half-open"
    assert not breaker.would_allow()
    breaker.record(None)
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_trial_reopens_for_a_fresh_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=3, cooldown=10.0, clock=clock)
    for _ in range(3):
        breaker.record(TransientError("502"))
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record(AmbiguousSend("read timeout"))
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.retry_in() == pytest.approx(10.0)
    clock.advance(5.0)
    assert not breaker.allow()


def test_a_lost_trial_is_given_up_after_another_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, cooldown=10.0, clock=clock)
    breaker.record(TransientError("502"))
    clock.advance(10.0)
    assert not breaker.trial_in_flight
    assert breaker.retry_in() == 0.0
    assert breaker.allow()
    assert breaker.trial_in_flight
    clock.advance(9.0)
    assert breaker.retry_in() == pytest.approx(1.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow(), "the worker holding the trial died; another may try"


def test_a_rate_limited_trial_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("twilio", failure_threshold=1, cooldown=10.0, clock=clock)
    breaker.record(TransientError("502"))
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record(RateLimited("429"))
    assert state_of(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow()


def test_breakers_registry_reports_states_for_metrics() -> None:
    breakers = CircuitBreakers(failure_threshold=1, cooldown=5.0, clock=FakeClock())
    breakers["twilio"].record(AuthError("401"))
    breakers["smsroute"].record(None)
    assert breakers["twilio"] is breakers["twilio"]
    assert breakers.states() == {"twilio": CircuitState.OPEN, "smsroute": CircuitState.CLOSED}
    assert breakers.states()["twilio"] == "open"


# ---- Route and route selection


def test_route_validates_its_fields() -> None:
    with pytest.raises(ConfigError, match="at least one provider"):
        Route(name="r", providers=())
    with pytest.raises(ConfigError, match="twice"):
        Route(name="r", providers=("a", "a"))
    with pytest.raises(ConfigError, match="country prefix '44'"):
        Route(name="r", providers=("a",), countries=("44",))
    with pytest.raises(ConfigError, match="purposes"):
        Route(name="r", providers=("a",), purposes=frozenset({"spam"}))  # type: ignore[arg-type]
    route = Route(name="r", providers=["a", "b"], purposes={"otp"}, ambiguous="resend")  # type: ignore[arg-type]
    assert route.providers == ("a", "b")
    assert route.purposes == {Purpose.OTP}
    assert route.ambiguous is AmbiguousPolicy.RESEND


def test_router_refuses_duplicate_route_names() -> None:
    with pytest.raises(ConfigError, match="repeated: x"):
        Router([Route(name="x", providers=("a",)), Route(name="x", providers=("b",))])


@pytest.fixture
def selection_router() -> Router:
    return Router(
        [
            Route(name="default", providers=("bulk",)),
            Route(name="nanp", providers=("twilio",), countries=("+1",)),
            Route(name="us-toll-free", providers=("telnyx",), countries=("+1800", "+1888")),
            Route(name="uk", providers=("vonage",), countries=("+44",)),
            Route(name="otp", providers=("twilio", "smsroute"), purposes=frozenset({Purpose.OTP})),
            Route(
                name="otp-uk",
                providers=("smsroute",),
                purposes=frozenset({Purpose.OTP}),
                countries=("+44",),
            ),
        ],
        clock=FakeClock(),
    )


@pytest.mark.parametrize(
    ("to", "purpose", "expected"),
    [
        (US, "transactional", "nanp"),
        (US_TOLL_FREE, "transactional", "us-toll-free"),
        (UK, "marketing", "uk"),
        (FR, "marketing", "default"),
        (US, "otp", "otp"),
        (US_TOLL_FREE, "otp", "otp"),
        (UK, "otp", "otp-uk"),
        (FR, "otp", "otp"),
    ],
)
def test_route_selection_by_purpose_then_longest_prefix_then_default(
    selection_router: Router, to: str, purpose: str, expected: str
) -> None:
    assert selection_router.route_for(message(to, purpose)).name == expected


def test_equally_specific_routes_go_in_config_order() -> None:
    router = Router(
        [
            Route(name="first", providers=("a",), countries=("+44", "+33")),
            Route(name="second", providers=("b",), countries=("+44",)),
        ]
    )
    assert router.route_for(message(UK)).name == "first"


def test_a_route_is_as_specific_as_its_longest_matching_prefix() -> None:
    router = Router(
        [
            Route(name="wide", providers=("a",), countries=("+1", "+1800")),
            Route(name="narrow", providers=("b",), countries=("+180",)),
        ]
    )
    assert router.route_for(message(US_TOLL_FREE)).name == "wide"
    assert router.route_for(message(US)).name == "wide"


def test_no_matching_route_is_a_config_error_naming_the_message() -> None:
    router = Router([Route(name="uk", providers=("vonage",), countries=("+44",))])
    with pytest.raises(ConfigError, match=r"no route for a marketing message to \+33612345678"):
        router.route_for(message(FR, "marketing"))


# ---- decisions after errors


def chain_router(
    *providers: str,
    max_attempts: int = 3,
    ambiguous: AmbiguousPolicy = AmbiguousPolicy.AUTO,
    failure_threshold: int = 100,
    cooldown: float = 30.0,
) -> tuple[Router, FakeClock]:
    clock = FakeClock()
    route = Route(
        name="main",
        providers=providers,
        retry=RetryPolicy(max_attempts=max_attempts, base_delay=1.0, max_delay=60.0),
        ambiguous=ambiguous,
    )
    breakers = CircuitBreakers(failure_threshold=failure_threshold, cooldown=cooldown, clock=clock)
    return Router([route], breakers, clock, random.Random(11)), clock


def test_auth_error_fails_over_to_the_next_provider_at_once() -> None:
    router, clock = chain_router("twilio", "smsroute")
    error = AuthError("bad credentials", provider="twilio", code=20003)
    decision = router.decide(message(), provider="twilio", attempt=1, error=error)
    assert decision.action is Action.FAILOVER
    assert decision.provider == "smsroute"
    assert decision.attempt == 1
    assert decision.at == clock.time()
    assert decision.error is error
    assert "failing over to smsroute" in decision.reason
    assert "20003" in decision.reason


@pytest.mark.parametrize(
    "error",
    [
        InvalidRecipient("not a mobile number"),
        OptedOut("recipient sent STOP"),
        InvalidMessage("body too long"),
    ],
)
def test_recipient_errors_fail_at_once_without_failover(error: SmsgateError) -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = router.decide(message(), provider="twilio", attempt=1, error=error)
    assert decision.action is Action.FAIL
    assert decision.is_final
    assert decision.status is Status.FAILED
    assert decision.provider == "twilio"
    assert decision.error is error
    assert "recipient or the message" in decision.reason


@pytest.mark.parametrize(
    "error",
    [
        InsufficientFunds("balance 0"),
        ProviderUnavailable("suspended"),
        UnsupportedFeature("no MMS"),
    ],
)
def test_provider_side_errors_fail_over(error: SmsgateError) -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = router.decide(message(), provider="twilio", attempt=1, error=error)
    assert decision.action is Action.FAILOVER
    assert decision.provider == "smsroute"


def test_transient_errors_retry_with_backoff_then_fail_over_then_fail_keeping_the_last_error() -> (
    None
):
    router, clock = chain_router("twilio", "smsroute", max_attempts=3)
    msg = message()
    tried: list[str] = []
    provider, attempt = "twilio", 1
    decision: Decision | None = None
    for number in range(1, 20):
        tried.append(provider)
        error = TransientError(f"503 number {number}", provider=provider)
        now = clock.time()
        decision = router.decide(msg, provider=provider, attempt=attempt, error=error)
        if decision.action is Action.RETRY:
            assert decision.at is not None
            assert now <= decision.at <= now + RetryPolicy(base_delay=1.0).ceiling(attempt)
        if decision.is_final:
            break
        assert decision.provider is not None
        provider, attempt = decision.provider, decision.attempt
        clock.advance((decision.at or now) - now)
    assert tried == ["twilio"] * 3 + ["smsroute"] * 3
    assert decision is not None
    assert decision.action is Action.FAIL
    assert decision.status is Status.FAILED
    assert decision.error is not None and str(decision.error) == "503 number 6 (smsroute)"
    assert "no provider is left" in decision.reason


def test_rate_limited_retries_after_retry_after_and_asks_for_a_penalty() -> None:
    router, clock = chain_router("twilio", "smsroute", max_attempts=3)
    error = RateLimited("429", retry_after=42.0)
    decision = router.decide(message(), provider="twilio", attempt=1, error=error)
    assert decision.action is Action.RETRY
    assert decision.provider == "twilio"
    assert decision.at is not None and decision.at >= clock.time() + 42.0
    assert decision.penalty == 42.0


def test_rate_limited_past_the_cap_fails_without_failover() -> None:
    router, _ = chain_router("twilio", "smsroute", max_attempts=3)
    error = RateLimited("429", retry_after=5.0)
    decision = router.decide(message(), provider="twilio", attempt=3, error=error)
    assert decision.action is Action.FAIL
    assert decision.status is Status.FAILED
    assert decision.error is error
    assert decision.penalty == 5.0
    assert "allows 3 attempts" in decision.reason


def test_rate_limited_without_retry_after_still_slows_the_bucket() -> None:
    router, _ = chain_router("twilio", max_attempts=3)
    decision = router.decide(message(), provider="twilio", attempt=2, error=RateLimited("429"))
    assert decision.action is Action.RETRY
    assert decision.penalty == RetryPolicy(base_delay=1.0).ceiling(2)


def test_a_circuit_that_opens_sends_the_message_to_the_next_provider() -> None:
    router, _ = chain_router("twilio", "smsroute", max_attempts=5, failure_threshold=2)
    msg = message()
    first = router.decide(msg, provider="twilio", attempt=1, error=TransientError("502"))
    assert first.action is Action.RETRY
    second = router.decide(msg, provider="twilio", attempt=2, error=TransientError("502"))
    assert router.breakers["twilio"].state is CircuitState.OPEN
    assert second.action is Action.FAILOVER
    assert second.provider == "smsroute"
    assert "circuit is open" in second.reason


def test_any_error_fails_over_when_the_circuit_is_open() -> None:
    router, _ = chain_router("twilio", "smsroute", failure_threshold=1)
    router.breakers["twilio"].record(TransientError("other messages failed"))
    decision = router.decide(message(), provider="twilio", attempt=1, error=RateLimited("429"))
    assert decision.action is Action.FAILOVER
    assert decision.provider == "smsroute"
    assert "circuit is open" in decision.reason


def test_failover_skips_providers_whose_circuit_is_open() -> None:
    router, _ = chain_router("twilio", "smsroute", "vonage", failure_threshold=1)
    router.breakers["smsroute"].record(TransientError("down"))
    decision = router.decide(message(), provider="twilio", attempt=1, error=AuthError("401"))
    assert decision.action is Action.FAILOVER
    assert decision.provider == "vonage"
    assert "circuit open for smsroute" in decision.reason


def test_failover_with_every_other_circuit_open_fails() -> None:
    router, _ = chain_router("twilio", "smsroute", failure_threshold=1)
    router.breakers["smsroute"].record(TransientError("down"))
    decision = router.decide(message(), provider="twilio", attempt=1, error=AuthError("401"))
    assert decision.action is Action.FAIL
    assert decision.status is Status.FAILED


def test_last_provider_with_an_open_circuit_retries_after_the_cooldown() -> None:
    router, clock = chain_router("twilio", max_attempts=5, failure_threshold=1, cooldown=45.0)
    decision = router.decide(message(), provider="twilio", attempt=1, error=TransientError("502"))
    assert decision.action is Action.RETRY
    assert decision.at is not None and decision.at >= clock.time() + 45.0


def test_a_failover_target_outside_the_chain_restarts_from_the_head() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = router.decide(message(), provider="retired", attempt=1, error=AuthError("401"))
    assert decision.provider == "twilio"


def test_non_retryable_unknown_errors_fail() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = router.decide(message(), provider="twilio", attempt=1, error=SmsgateError("odd"))
    assert decision.action is Action.FAIL
    assert "not retried" in decision.reason


def test_decision_to_dict_is_json_safe() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = router.decide(
        message(), provider="twilio", attempt=1, error=RateLimited("429", retry_after=3)
    )
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["action"] == "retry"
    assert data["error"]["error"] == "rate_limited"
    assert data["penalty"] == 3


# ---- planning a send


def test_plan_sends_through_the_head_of_the_chain() -> None:
    router, clock = chain_router("twilio", "smsroute")
    decision = router.plan(message())
    assert (decision.action, decision.provider, decision.attempt) == (Action.SEND, "twilio", 1)
    assert decision.at == clock.time()
    retry = router.plan(message(), provider="smsroute", attempt=2)
    assert (retry.provider, retry.attempt) == ("smsroute", 2)


def test_plan_skips_an_open_circuit() -> None:
    router, _ = chain_router("twilio", "smsroute", failure_threshold=1)
    router.breakers["twilio"].record(TransientError("502"))
    decision = router.plan(message(), provider="twilio", attempt=3)
    assert (decision.action, decision.provider, decision.attempt) == (Action.SEND, "smsroute", 1)
    assert "circuit open for twilio" in decision.reason


def test_plan_waits_when_every_circuit_is_open() -> None:
    router, clock = chain_router("twilio", "smsroute", failure_threshold=1, cooldown=30.0)
    router.breakers["twilio"].record(TransientError("502"))
    clock.advance(10.0)
    router.breakers["smsroute"].record(TransientError("502"))
    decision = router.plan(message())
    assert decision.action is Action.WAIT
    assert decision.provider == "twilio"
    assert decision.at == pytest.approx(clock.time() + 20.0)
    clock.advance(20.0)
    trial = router.plan(message())
    assert (trial.action, trial.provider) == (Action.SEND, "twilio")
    # The half-open trial is out: the next message looks again soon, not at once.
    waiting = router.plan(message())
    assert (waiting.action, waiting.provider) == (Action.WAIT, "twilio")
    assert waiting.at == pytest.approx(clock.time() + TRIAL_POLL_SECONDS)
    assert "trying twilio again in 1.0s" in waiting.reason


def test_success_closes_a_half_open_circuit() -> None:
    router, clock = chain_router("twilio", failure_threshold=1, cooldown=5.0)
    router.breakers["twilio"].record(TransientError("502"))
    clock.advance(5.0)
    assert router.plan(message()).action is Action.SEND
    router.record_success("twilio")
    assert router.breakers.states() == {"twilio": CircuitState.CLOSED}


# ---- ambiguous sends


@pytest.mark.parametrize(
    ("policy", "purpose", "dedupes", "lookup", "expected"),
    [
        ("auto", "transactional", True, True, "retry_same_key"),
        ("auto", "transactional", False, True, "reconcile"),
        ("auto", "otp", False, False, "resend"),
        ("auto", "otp", True, False, "retry_same_key"),
        ("auto", "marketing", False, False, "unknown"),
        ("retry_same_key", "otp", False, True, "unknown"),
        ("retry_same_key", "marketing", True, False, "retry_same_key"),
        ("reconcile", "otp", True, False, "unknown"),
        ("reconcile", "marketing", False, True, "reconcile"),
        ("resend", "transactional", False, False, "resend"),
        ("unknown", "otp", True, True, "unknown"),
    ],
)
def test_resolve_ambiguous_policy(
    policy: str, purpose: str, dedupes: bool, lookup: bool, expected: str
) -> None:
    resolved, why = resolve_ambiguous_policy(
        AmbiguousPolicy(policy),
        purpose=Purpose(purpose),
        provider_dedupes=dedupes,
        provider_can_lookup=lookup,
    )
    assert resolved is AmbiguousPolicy(expected)
    assert why


def ambiguous(
    router: Router, purpose: str = "transactional", attempt: int = 1, **caps: bool
) -> Decision:
    error = AmbiguousSend("read timeout after 10s", provider="twilio")
    return router.decide(
        message(purpose=purpose), provider="twilio", attempt=attempt, error=error, **caps
    )


def test_ambiguous_with_a_deduplicating_provider_retries_with_the_same_key() -> None:
    router, clock = chain_router("twilio", "smsroute")
    decision = ambiguous(router, provider_dedupes=True, provider_can_lookup=True)
    assert decision.action is Action.RETRY
    assert decision.provider == "twilio"
    assert decision.attempt == 2
    assert not decision.may_duplicate
    assert decision.at is not None and decision.at >= clock.time()
    assert "same idempotency key" in decision.reason


def test_ambiguous_with_a_status_lookup_reconciles() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = ambiguous(router, provider_can_lookup=True)
    assert decision.action is Action.RECONCILE
    assert decision.provider == "twilio"
    assert decision.attempt == 2
    assert "looking it up at twilio" in decision.reason


def test_ambiguous_otp_resends_and_says_it_may_duplicate() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = ambiguous(router, purpose="otp")
    assert decision.action is Action.RETRY
    assert decision.provider == "twilio"
    assert decision.may_duplicate
    assert "second code beats none" in decision.reason


def test_ambiguous_otherwise_stops_at_unknown_with_the_reason() -> None:
    router, _ = chain_router("twilio", "smsroute")
    decision = ambiguous(router, purpose="marketing")
    assert decision.action is Action.FAIL
    assert decision.status is Status.UNKNOWN
    assert isinstance(decision.error, AmbiguousSend)
    assert "could deliver it twice" in decision.reason
    assert "status unknown" in decision.reason


def test_explicit_policy_without_the_capability_stops_at_unknown() -> None:
    router, _ = chain_router("twilio", ambiguous=AmbiguousPolicy.RETRY_SAME_KEY)
    decision = ambiguous(router, purpose="otp", provider_can_lookup=True)
    assert decision.status is Status.UNKNOWN
    assert "does not de-duplicate" in decision.reason
    router, _ = chain_router("twilio", ambiguous=AmbiguousPolicy.RECONCILE)
    decision = ambiguous(router, provider_dedupes=True)
    assert decision.status is Status.UNKNOWN
    assert "no status lookup" in decision.reason


def test_explicit_resend_and_unknown_policies() -> None:
    router, _ = chain_router("twilio", ambiguous=AmbiguousPolicy.RESEND)
    resend = ambiguous(router, purpose="marketing")
    assert (resend.action, resend.may_duplicate) == (Action.RETRY, True)
    router, _ = chain_router("twilio", ambiguous=AmbiguousPolicy.UNKNOWN)
    unknown = ambiguous(router, purpose="otp", provider_dedupes=True, provider_can_lookup=True)
    assert (unknown.action, unknown.status) == (Action.FAIL, Status.UNKNOWN)


def test_ambiguous_past_the_cap_is_unknown_not_failed() -> None:
    router, _ = chain_router("twilio", "smsroute", max_attempts=3)
    decision = ambiguous(router, attempt=3, provider_dedupes=True)
    assert decision.action is Action.FAIL
    assert decision.status is Status.UNKNOWN
    assert "used all 3 attempts" in decision.reason


def test_ambiguous_sends_count_against_the_provider() -> None:
    router, _ = chain_router("twilio", failure_threshold=2)
    ambiguous(router, provider_dedupes=True)
    ambiguous(router, attempt=2, provider_dedupes=True)
    assert router.breakers["twilio"].state is CircuitState.OPEN


def test_a_lookup_miss_sends_again_without_duplicate_risk() -> None:
    router, _ = chain_router("twilio", "smsroute", max_attempts=3)
    msg = message()
    decision = router.lookup_missed(msg, provider="twilio", attempt=2)
    assert decision.action is Action.RETRY
    assert decision.provider == "twilio"
    assert decision.attempt == 3
    assert not decision.may_duplicate
    assert "no record of the message" in decision.reason
    exhausted = router.lookup_missed(msg, provider="twilio", attempt=3)
    assert (exhausted.action, exhausted.provider) == (Action.FAILOVER, "smsroute")


# ---- pinned messages (replies)


def test_a_pinned_message_leaves_only_through_its_provider() -> None:
    clock = FakeClock()
    router = Router([Route(name="default", providers=("twilio", "smsroute"))], clock=clock)
    reply = Message(to=US, body="Unsubscribed.", via="telnyx")
    plan = router.plan(reply)
    assert (plan.action, plan.provider, plan.route) == (Action.SEND, "telnyx", "default")
    assert "must leave through" in plan.reason
    # a provider-side problem fails over for other messages, never for a pinned one
    down = ProviderUnavailable("down", provider="telnyx")
    assert router.decide(message(), provider="twilio", attempt=1, error=down).action is (
        Action.FAILOVER
    )
    decision = router.decide(reply, provider="telnyx", attempt=1, error=down)
    assert decision.action is Action.FAIL and "only through telnyx" in decision.reason
    with pytest.raises(InvalidMessage):
        Message(to=US, body="x", via="not a name")


# ---- quiet hours


NEW_YORK = "+12125550100"


def at_local(zone: str, text: str) -> float:
    """Epoch seconds of an ISO local time in ``zone``."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def quiet_router(clock: FakeClock, **route: object) -> Router:
    return Router(
        [Route(name="default", providers=("twilio",), quiet_hours="21:00-08:00", **route)],  # type: ignore[arg-type]
        clock=clock,
    )


def test_marketing_is_held_outside_the_recipients_hours_and_nothing_else_is() -> None:
    clock = FakeClock(at_local("America/New_York", "2030-03-05T22:30:00"))
    router = quiet_router(clock)
    plan = router.plan(message(NEW_YORK, "marketing"))
    assert plan.action is Action.HOLD
    assert plan.at == at_local("America/New_York", "2030-03-06T08:00:00")
    assert "America/New_York (local time 22:30)" in plan.reason and "21:00-08:00" in plan.reason
    for purpose in ("otp", "transactional"):
        assert router.plan(message(NEW_YORK, purpose)).action is Action.SEND
    # a number libphonenumber places nowhere (a fictional range) is not held
    assert router.plan(message(US, "marketing")).action is Action.SEND
    clock.advance(at_local("America/New_York", "2030-03-06T08:00:00") - clock.time())
    assert router.plan(message(NEW_YORK, "marketing")).action is Action.SEND


def test_a_route_may_hold_other_purposes() -> None:
    clock = FakeClock(at_local("America/New_York", "2030-03-05T07:59:00"))
    router = quiet_router(clock, quiet_purposes={"otp"})
    assert router.plan(message(NEW_YORK, "otp")).action is Action.HOLD
    assert router.plan(message(NEW_YORK, "marketing")).action is Action.SEND


@pytest.mark.parametrize("number", ["+18005550100", "+79161234567", "+61412345678"])
def test_a_number_in_several_zones_waits_for_the_most_restrictive(number: str) -> None:
    from smsgate.routing import QuietHours, quiet_zones

    zones = quiet_zones(number)
    assert len(zones) > 1
    quiet = QuietHours.parse("21:00-08:00")

    def quiet_somewhere(ts: float) -> bool:
        return any(
            quiet.contains((local := datetime.fromtimestamp(ts, zone)).hour * 60 + local.minute)
            for zone in zones
        )

    start = at_local("UTC", "2030-03-05T00:00:00")
    for hour in range(0, 24, 3):
        clock = FakeClock(start + hour * 3600)
        plan = quiet_router(clock).plan(message(number, "marketing"))
        if plan.action is Action.SEND:
            assert not quiet_somewhere(clock.time())
            continue
        assert plan.action is Action.HOLD and plan.at is not None
        assert quiet_somewhere(clock.time()) and not quiet_somewhere(plan.at)
        assert quiet_somewhere(plan.at - 60)  # released at the first minute it may go


def test_quiet_hours_are_checked_when_the_route_is_built() -> None:
    with pytest.raises(ConfigError, match="not a window"):
        Route(name="m", providers=("twilio",), quiet_hours="9pm-8am")  # type: ignore[arg-type]
