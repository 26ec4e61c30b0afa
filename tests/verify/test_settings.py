"""The [verify] table: safe defaults, every mistake named with its key and fix."""

from __future__ import annotations

from typing import Any

import pytest

from smsgate.config import Config
from smsgate.errors import ConfigError
from smsgate.verify import VerifySettings
from smsgate.verify.settings import parse_limit

SECRET = "s" * 40


def test_defaults() -> None:
    s = VerifySettings.from_mapping({"secret": SECRET})
    assert (s.code_length, s.ttl, s.max_checks, s.max_sends, s.resend) == (6, 600, 5, 5, "same")
    assert set(s.limits) == {"number_starts", "number_checks", "ip_starts", "ip_checks"}
    assert s.limits["number_starts"].count == 5 and s.limits["number_starts"].period == 600
    assert s.countries.permission("US") == "allow"
    assert s.pumping.enabled and s.pumping.block == 300 and s.pumping.max_block == 12 * 3600
    assert SECRET not in repr(s)


def test_from_config_with_env_interpolation() -> None:
    config = Config.from_toml(
        '[verify]\nsecret = "${VERIFY_SECRET}"\ncode_length = 8\n'
        '[verify.countries]\ndefault = "deny"\nallow = ["us", "GB"]\n',
        env={"VERIFY_SECRET": SECRET},
    )
    s = VerifySettings.from_config(config)
    assert s.secret == SECRET.encode() and s.code_length == 8
    assert s.countries.permission("US") == "allow" and s.countries.permission("FR") == "deny"
    assert config.masked()["verify"]["secret"] == "***"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({}, "verify.secret"),
        ({"secret": "short"}, "verify.secret"),
        ({"secret": SECRET, "colour": 1}, "verify.colour"),
        ({"secret": SECRET, "code_length": 12}, "verify.code_length"),
        ({"secret": SECRET, "ttl": "1s"}, "verify.ttl"),
        ({"secret": SECRET, "resend": "maybe"}, "verify.resend"),
        ({"secret": SECRET, "webotp_origin": "https://example.com"}, "verify.webotp_origin"),
        ({"secret": SECRET, "android_app_hash": "short"}, "verify.android_app_hash"),
        ({"secret": SECRET, "trusted_proxies": ["nope"]}, "verify.trusted_proxies"),
        ({"secret": SECRET, "limits": {"number_starts": "lots"}}, "verify.limits.number_starts"),
        ({"secret": SECRET, "limits": {"phone_starts": "1/s"}}, "verify.limits.phone_starts"),
        ({"secret": SECRET, "countries": {"default": "monitor"}}, "verify.countries.default"),
        ({"secret": SECRET, "countries": {"allow": ["USA"]}}, "verify.countries.allow"),
        (
            {"secret": SECRET, "countries": {"allow": ["US"], "deny": ["US"]}},
            "verify.countries.deny",
        ),
        ({"secret": SECRET, "pumping": {"min_conversion": 2}}, "verify.pumping.min_conversion"),
        ({"secret": SECRET, "pumping": {"window": "10s"}}, "verify.pumping.window"),
        (
            {"secret": SECRET, "pumping": {"block": "1h", "max_block": "5m"}},
            "verify.pumping.max_block",
        ),
    ],
)
def test_mistakes_name_the_key(table: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        VerifySettings.from_mapping(table)
    assert exc.value.field == field


def test_limits() -> None:
    five = parse_limit("5/10m", "x")
    assert five is not None and (five.count, five.period) == (5, 600)
    per_min = parse_limit("30/min", "x")
    assert per_min is not None and per_min.rate == 0.5
    assert parse_limit("off", "x") is None and parse_limit(False, "x") is None
    s = VerifySettings.from_mapping({"secret": SECRET, "limits": {"ip_starts": "off"}})
    assert "ip_starts" not in s.limits
