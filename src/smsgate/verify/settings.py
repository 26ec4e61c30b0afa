"""The ``[verify]`` table of ``smsgate.toml``: codes, messages and the fraud guard.

Only ``secret`` is required; every limit has a safe default::

    [verify]
    secret = "${SMSGATE_VERIFY_SECRET}"   # 32+ characters; codes and hashes are HMACs under it
    code_length = 6                       # 4 to 10 digits
    ttl = "10m"                           # how long a code is valid
    max_checks = 5                        # wrong codes before the verification ends
    max_sends = 5                         # texts per verification (the first and its resends)
    resend = "same"                       # "same": resend the same code; "new": a new code voids it
    app_name = "Example"                  # named in the text
    locale = "en"                         # default language of the text
    webotp_origin = "example.com"         # adds "@example.com #123456" (browsers autofill)
    android_app_hash = "FA+9qCX9VSu"      # appended for Android's SMS Retriever
    test_mode = false                     # magic numbers (see below) answer without sending
    client_ip_header = "X-Forwarded-For"  # read only from a trusted proxy:
    trusted_proxies = ["127.0.0.1/32"]

    [verify.limits]                       # token buckets: "COUNT/PERIOD", or "off"
    number_starts = "5/10m"
    number_checks = "10/10m"
    ip_starts = "50/10m"
    ip_checks = "100/10m"
    api_key_starts = "off"
    prefix_starts = "off"
    country_starts = "off"

    [verify.countries]                    # ISO regions; a region in no list gets `default`
    default = "allow"                     # or "deny": only the listed regions are allowed
    allow = []
    deny = []
    monitor = []                          # allowed, and every decision says it was watched

    [verify.pumping]                      # SMS-pumping detector, per E.164 prefix
    enabled = true
    prefix_digits = 6                     # digits after "+" that make a prefix
    window = "1h"
    grace = "2m"                          # a start younger than this is not yet a failure
    min_volume = 20                       # mature starts before conversion is judged
    min_conversion = 0.2                  # block below this approved/started ratio
    block = "5m"                          # first block; each repeat within a day doubles it
    max_block = "12h"

A wrong value raises :class:`~smsgate.errors.ConfigError` naming ``verify.KEY`` and the fix.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smsgate.config import parse_duration, parse_flag
from smsgate.errors import ConfigError
from smsgate.verify.codes import MAX_LENGTH, MIN_LENGTH, check_secret

#: what a bucket can be keyed on, and what it counts
BUCKET_KEYS = ("number", "ip", "api_key", "prefix", "country")
BUCKET_ACTIONS = ("starts", "checks")
PERMISSIONS = ("allow", "deny", "monitor")
RESEND_POLICIES = ("same", "new")

#: test-mode numbers (from the fictional +1 500 555 range Twilio's test credentials also use)
TEST_APPROVE = ("+15005550006",)
TEST_FAIL = ("+15005550001",)

_DEFAULT_LIMITS: dict[str, str] = {
    "number_starts": "5/10m",
    "number_checks": "10/10m",
    "ip_starts": "50/10m",
    "ip_checks": "100/10m",
    "api_key_starts": "off",
    "api_key_checks": "off",
    "prefix_starts": "off",
    "prefix_checks": "off",
    "country_starts": "off",
    "country_checks": "off",
}
_KEYS = (
    "secret",
    "code_length",
    "ttl",
    "max_checks",
    "max_sends",
    "resend",
    "app_name",
    "locale",
    "webotp_origin",
    "android_app_hash",
    "test_mode",
    "test_numbers_approve",
    "test_numbers_fail",
    "client_ip_header",
    "trusted_proxies",
    "limits",
    "countries",
    "pumping",
)
_PUMPING_KEYS = (
    "enabled",
    "prefix_digits",
    "window",
    "grace",
    "min_volume",
    "min_conversion",
    "block",
    "max_block",
)
_COUNTRY_KEYS = ("default", *PERMISSIONS)
_LIMIT = re.compile(r"^\s*([0-9]+)\s*/\s*(.+)$")
_APP_HASH = re.compile(r"^[A-Za-z0-9+/]{11}$")
_ORIGIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
_REGION = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class BucketLimit:
    """``count`` per ``period`` seconds: a bucket of ``count`` tokens refilling at that rate."""

    count: int
    period: float
    text: str

    @property
    def rate(self) -> float:
        return self.count / self.period


def parse_limit(value: Any, path: str) -> BucketLimit | None:
    """``"5/10m"`` (5 per 10 minutes), ``"30/min"``, ``"100/h"``; ``"off"`` or false: none."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "")):
        return None
    match = _LIMIT.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) < 1:
        raise ConfigError(
            f'{path}: {value!r} is not a limit; write COUNT/PERIOD such as "5/10m" or "30/min", '
            'or "off"',
            field=path,
        )
    period_text = match[2].strip()
    if period_text[:1].isalpha():
        period_text = "1" + period_text
    period = parse_duration(period_text, path)
    if period <= 0:
        raise ConfigError(f"{path}: the period must be longer than zero", field=path)
    return BucketLimit(int(match[1]), period, value.strip())


@dataclass(frozen=True, slots=True)
class PumpingSettings:
    enabled: bool = True
    prefix_digits: int = 6
    window: float = 3600.0
    grace: float = 120.0
    min_volume: int = 20
    min_conversion: float = 0.2
    block: float = 300.0
    max_block: float = 12 * 3600.0

    @property
    def slot(self) -> float:
        """Seconds per traffic slot: a sixtieth of the window, at least a second."""
        return max(1.0, self.window / 60)


@dataclass(frozen=True, slots=True)
class CountryRules:
    default: str = "allow"
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    monitor: frozenset[str] = frozenset()

    def permission(self, region: str | None) -> str:
        """``allow``, ``deny`` or ``monitor`` for a region (None: a number of no single region)."""
        if region in self.deny:
            return "deny"
        if region in self.monitor:
            return "monitor"
        if region in self.allow:
            return "allow"
        return self.default


@dataclass(frozen=True, slots=True)
class VerifySettings:
    secret: bytes = field(repr=False, default=b"")
    code_length: int = 6
    ttl: float = 600.0
    max_checks: int = 5
    max_sends: int = 5
    resend: str = "same"
    app_name: str | None = None
    locale: str = "en"
    webotp_origin: str | None = None
    android_app_hash: str | None = None
    test_mode: bool = False
    test_numbers_approve: tuple[str, ...] = TEST_APPROVE
    test_numbers_fail: tuple[str, ...] = TEST_FAIL
    client_ip_header: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: "<key>_<action>" (e.g. "number_starts") -> limit; absent: no bucket
    limits: Mapping[str, BucketLimit] = field(default_factory=dict)
    countries: CountryRules = field(default_factory=CountryRules)
    pumping: PumpingSettings = field(default_factory=PumpingSettings)

    def __repr__(self) -> str:  # the secret never appears
        return (
            f"VerifySettings(code_length={self.code_length}, ttl={self.ttl:g}, "
            f"resend={self.resend!r}, test_mode={self.test_mode})"
        )

    @classmethod
    def from_config(cls, config: Any) -> VerifySettings:
        """The ``[verify]`` table of a :class:`~smsgate.config.Config`."""
        table = getattr(config, "verify", None) or {}
        return cls.from_mapping(table)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> VerifySettings:
        _known(table, _KEYS, "verify")
        if "secret" not in table or not str(table["secret"]).strip():
            raise ConfigError(
                'verify.secret: missing; set secret = "${SMSGATE_VERIFY_SECRET}" under [verify] '
                "and put 32+ random characters in that variable",
                field="verify.secret",
            )
        try:
            secret = check_secret(str(table["secret"]))
        except ValueError as exc:
            raise ConfigError(str(exc), field="verify.secret") from None
        d = cls()
        resend = table.get("resend", d.resend)
        if resend not in RESEND_POLICIES:
            raise ConfigError(
                f'verify.resend: {resend!r} must be "same" (resend the same code) or "new" '
                "(a new code that voids the old one)",
                field="verify.resend",
            )
        origin = table.get("webotp_origin")
        if origin is not None and (not isinstance(origin, str) or not _ORIGIN.match(origin)):
            raise ConfigError(
                f"verify.webotp_origin: {origin!r} must be a host name such as example.com "
                "(no scheme, no path)",
                field="verify.webotp_origin",
            )
        app_hash = table.get("android_app_hash")
        if app_hash is not None and (
            not isinstance(app_hash, str) or not _APP_HASH.match(app_hash)
        ):
            raise ConfigError(
                f"verify.android_app_hash: {app_hash!r} must be the 11-character hash of your "
                "app's package and signing key (see Android's SMS Retriever documentation)",
                field="verify.android_app_hash",
            )
        header = table.get("client_ip_header")
        if header is not None and (not isinstance(header, str) or not header.strip()):
            raise ConfigError(
                "verify.client_ip_header: expected a header name such as X-Forwarded-For",
                field="verify.client_ip_header",
            )
        return cls(
            secret=secret,
            code_length=_whole(table, "code_length", d.code_length, MIN_LENGTH, MAX_LENGTH),
            ttl=_duration(table, "ttl", d.ttl, 30.0, 86400.0),
            max_checks=_whole(table, "max_checks", d.max_checks, 1, 20),
            max_sends=_whole(table, "max_sends", d.max_sends, 1, 20),
            resend=str(resend),
            app_name=_text_or_none(table, "app_name"),
            locale=str(table.get("locale", d.locale)),
            webotp_origin=origin,
            android_app_hash=app_hash,
            test_mode=parse_flag(table.get("test_mode", False), "verify.test_mode"),
            test_numbers_approve=_numbers(table, "test_numbers_approve", TEST_APPROVE),
            test_numbers_fail=_numbers(table, "test_numbers_fail", TEST_FAIL),
            client_ip_header=header.strip() if header else None,
            trusted_proxies=_networks(table.get("trusted_proxies", [])),
            limits=_limits(table.get("limits", {})),
            countries=_countries(table.get("countries", {})),
            pumping=_pumping(table.get("pumping", {})),
        )


def _known(table: Any, allowed: Sequence[str], path: str) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: expected a table, got {table!r}", field=path)
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}: unknown key; [{path}] takes {', '.join(allowed)}",
                field=f"{path}.{key}",
            )


def _whole(table: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"verify.{key}: {value!r} must be a whole number from {low} to {high}",
            field=f"verify.{key}",
        )
    return value


def _duration(table: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    path = f"verify.{key}" if "." not in key else key
    seconds = parse_duration(table.get(key.rsplit(".", 1)[-1], default), path)
    if not low <= seconds <= high:
        raise ConfigError(f"{path}: must be between {low:g} s and {high:g} s", field=path)
    return seconds


def _text_or_none(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 30:
        raise ConfigError(
            f"verify.{key}: expected 1 to 30 characters, got {value!r}", field=f"verify.{key}"
        )
    return value.strip()


def _numbers(table: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    from smsgate.phone import normalize

    value = table.get(key, list(default))
    if not isinstance(value, list):
        raise ConfigError(f"verify.{key}: expected a list of E.164 numbers", field=f"verify.{key}")
    return tuple(normalize(str(n), strict=False, field=f"verify.{key}") for n in value)


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            'verify.trusted_proxies: expected a list such as ["10.0.0.0/8"]',
            field="verify.trusted_proxies",
        )
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConfigError(
                f"verify.trusted_proxies: {item!r} is not an address or network (10.0.0.0/8)",
                field="verify.trusted_proxies",
            ) from None
    return tuple(networks)


def _limits(value: Any) -> dict[str, BucketLimit]:
    allowed = [f"{key}_{action}" for key in BUCKET_KEYS for action in BUCKET_ACTIONS]
    _known(value, allowed, "verify.limits")
    merged = {**_DEFAULT_LIMITS, **value}
    limits = {}
    for name in allowed:
        limit = parse_limit(merged[name], f"verify.limits.{name}")
        if limit is not None:
            limits[name] = limit
    return limits


def _countries(value: Any) -> CountryRules:
    _known(value, _COUNTRY_KEYS, "verify.countries")
    default = value.get("default", "allow")
    if default not in ("allow", "deny"):
        raise ConfigError(
            f'verify.countries.default: {default!r} must be "allow" or "deny" (deny by default: '
            "only the regions listed under allow or monitor)",
            field="verify.countries.default",
        )
    lists: dict[str, frozenset[str]] = {}
    seen: dict[str, str] = {}
    for name in PERMISSIONS:
        items = value.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(
                f'verify.countries.{name}: expected a list of regions such as ["US", "GB"]',
                field=f"verify.countries.{name}",
            )
        regions = set()
        for item in items:
            region = str(item).strip().upper()
            if not _REGION.match(region):
                raise ConfigError(
                    f"verify.countries.{name}: {item!r} is not a two-letter ISO region (US, GB)",
                    field=f"verify.countries.{name}",
                )
            if region in seen:
                raise ConfigError(
                    f"verify.countries.{name}: {region} is also under {seen[region]}; "
                    "list each region once",
                    field=f"verify.countries.{name}",
                )
            seen[region] = name
            regions.add(region)
        lists[name] = frozenset(regions)
    return CountryRules(str(default), lists["allow"], lists["deny"], lists["monitor"])


def _pumping(value: Any) -> PumpingSettings:
    _known(value, _PUMPING_KEYS, "verify.pumping")
    d = PumpingSettings()
    conversion = value.get("min_conversion", d.min_conversion)
    if (
        isinstance(conversion, bool)
        or not isinstance(conversion, int | float)
        or not math.isfinite(conversion)
        or not 0 <= conversion <= 1
    ):
        raise ConfigError(
            f"verify.pumping.min_conversion: {conversion!r} must be a ratio from 0 to 1 "
            "(0.2: block below one approval in five starts)",
            field="verify.pumping.min_conversion",
        )
    window = _duration(value, "verify.pumping.window", d.window, 60.0, 7 * 86400.0)
    grace = _duration(value, "verify.pumping.grace", d.grace, 0.0, window)
    block = _duration(value, "verify.pumping.block", d.block, 1.0, 30 * 86400.0)
    max_block = _duration(value, "verify.pumping.max_block", d.max_block, block, 30 * 86400.0)
    digits = value.get("prefix_digits", d.prefix_digits)
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 12:
        raise ConfigError(
            f"verify.pumping.prefix_digits: {digits!r} must be a whole number from 1 to 12",
            field="verify.pumping.prefix_digits",
        )
    volume = value.get("min_volume", d.min_volume)
    if isinstance(volume, bool) or not isinstance(volume, int) or volume < 1:
        raise ConfigError(
            f"verify.pumping.min_volume: {volume!r} must be a whole number of at least 1",
            field="verify.pumping.min_volume",
        )
    return PumpingSettings(
        enabled=parse_flag(value.get("enabled", True), "verify.pumping.enabled"),
        prefix_digits=digits,
        window=window,
        grace=grace,
        min_volume=volume,
        min_conversion=float(conversion),
        block=block,
        max_block=max_block,
    )
