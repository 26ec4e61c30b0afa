"""The error taxonomy: each class answers retry and failover as the architecture page's table
(docs/architecture.md, "Errors") says."""

from __future__ import annotations

import json

import pytest

import smsgate
from smsgate import errors
from smsgate.errors import (
    ERROR_KINDS,
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
    WebhookVerificationError,
)

# docs/architecture.md, "Errors": (class, retried?, fails over?)
TABLE: list[tuple[type[SmsgateError], bool, bool]] = [
    (InvalidRecipient, False, False),
    (OptedOut, False, False),
    (InvalidMessage, False, False),
    (RateLimited, True, False),
    (TransientError, True, True),  # retried with backoff, then the next provider after N tries
    (AmbiguousSend, False, False),  # "by policy": the route decides, never a blind retry
    (AuthError, False, True),
    (InsufficientFunds, False, True),
    (ProviderUnavailable, False, True),
    (UnsupportedFeature, False, True),
]


@pytest.mark.parametrize(
    ("cls", "retryable", "failover"), TABLE, ids=[cls.__name__ for cls, _, _ in TABLE]
)
def test_retry_and_failover_follow_the_design_table(
    cls: type[SmsgateError], retryable: bool, failover: bool
) -> None:
    error = cls("boom", provider="twilio", code=123)
    assert (error.retryable, error.failover) == (retryable, failover)
    assert isinstance(error, SmsgateError) and isinstance(error, Exception)


def test_recipient_and_message_problems_never_move_to_another_provider() -> None:
    for cls in (InvalidRecipient, OptedOut, InvalidMessage):
        assert not cls.retryable and not cls.failover


def test_config_and_webhook_errors_are_neither_retried_nor_failed_over() -> None:
    for cls in (ConfigError, WebhookVerificationError):
        assert not cls.retryable and not cls.failover


def test_the_provider_code_and_raw_response_are_kept() -> None:
    raw = {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}
    error = OptedOut("recipient opted out", provider="twilio", code=21610, raw=raw)
    assert error.code == "21610"  # always text: providers mix "1", 1 and "E123"
    assert error.raw is raw
    assert error.provider == "twilio"
    assert error.message == "recipient opted out"


def test_no_code_stays_none() -> None:
    error = TransientError("could not connect")
    assert error.code is None and error.raw is None and error.provider is None
    assert str(error) == "could not connect"


def test_str_names_provider_and_code() -> None:
    assert str(OptedOut("opted out", provider="twilio", code=21610)) == "opted out (twilio 21610)"
    assert str(AuthError("refused", provider="vonage")) == "refused (vonage)"


def test_repr_names_the_class_but_not_the_raw_payload() -> None:
    error = AuthError("refused", provider="twilio", code="20003", raw={"token": "s3cret"})
    text = repr(error)
    assert text.startswith("AuthError(") and "20003" in text
    assert "s3cret" not in text


def test_to_dict_is_json_safe_and_leaves_raw_out() -> None:
    error = InvalidRecipient(
        "bad number", provider="twilio", code=21211, raw={"token": "s3cret"}, field="to"
    )
    data = error.to_dict()
    assert data == {
        "error": "invalid_recipient",
        "message": "bad number",
        "provider": "twilio",
        "code": "21211",
        "field": "to",
        "retryable": False,
    }
    assert json.loads(json.dumps(data)) == data
    assert "s3cret" not in json.dumps(data)


def test_rate_limited_carries_retry_after() -> None:
    error = RateLimited("slow down", provider="smsroute", code=429, retry_after=7.5)
    assert error.retry_after == 7.5
    data = error.to_dict()
    assert data["retry_after"] == 7.5 and data["retryable"] is True
    assert data["error"] == "rate_limited"
    assert RateLimited("slow down").retry_after is None


def test_every_kind_is_distinct_and_maps_back_to_its_class() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, SmsgateError)
    ]
    kinds = [cls.kind for cls in classes]
    assert len(set(kinds)) == len(kinds)
    assert set(ERROR_KINDS.values()) == set(classes)
    for kind, cls in ERROR_KINDS.items():
        assert cls.kind == kind
        assert cls("x").to_dict()["error"] == kind


def test_errors_are_exported_from_the_package() -> None:
    for cls, _, _ in TABLE:
        assert getattr(smsgate, cls.__name__) is cls
    assert smsgate.SmsgateError is SmsgateError


def test_catching_the_base_catches_all() -> None:
    for cls, _, _ in TABLE:
        with pytest.raises(SmsgateError):
            raise cls("x")


def test_mutable_provider_is_filled_in_later() -> None:
    # The provider base fills ``provider`` in after a module maps an error without one.
    error = InvalidMessage("too long", code="21617")
    error.provider = "twilio"
    assert str(error) == "too long (twilio 21617)"
    assert error.to_dict()["provider"] == "twilio"


def test_the_public_names_are_the_lazy_exports() -> None:
    # __all__ is written out for type checkers; it must name exactly what __getattr__ serves.
    assert set(smsgate.__all__) == {"__version__", *smsgate._EXPORTS}
    for name in smsgate._EXPORTS:
        if name != "Outbox":  # the outbox package is optional in a partial build
            assert getattr(smsgate, name) is not None
