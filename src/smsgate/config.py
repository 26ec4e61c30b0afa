"""``smsgate.toml``: store, providers, routes and worker settings, secrets from the environment.

The file is found through ``--config`` or ``SMSGATE_CONFIG``; without either the embedded
defaults apply (a SQLite file, no providers). String values may use ``${VAR}`` and
``${VAR:-default}`` (``$${`` is a literal ``${``). Every error names the key path and the fix, for
example ``routes[1].providers[0]: unknown provider "twillio"; defined providers: twilio, smsroute``.

Provider URLs are only checked for a ``scheme://`` shape here; the provider registry parses them.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.message import Purpose
from smsgate.ratelimit import BucketBackend, Limit, RateLimiter
from smsgate.retry import JITTER_MODES, RetryPolicy
from smsgate.routing import AmbiguousPolicy, CircuitBreakers, QuietHours, Route, Router

if TYPE_CHECKING:
    from smsgate.outbox.retention import Retention

CONFIG_ENV_VAR = "SMSGATE_CONFIG"
DEFAULT_STORE = "sqlite:///smsgate.db"
STORE_SCHEMES = ("sqlite", "postgresql", "postgres")

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|sec|m|min|h|d)?\s*$")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_COUNTRY_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")
#: Names of settings whose values are secrets, wherever they appear (query strings, options).
_SECRET_NAME = re.compile(r"pass|secret|token|key|auth|signature|credential", re.IGNORECASE)
MASK = "***"


# --------------------------------------------------------------------------------------------
# The resolved configuration


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One ``[providers.NAME]`` table."""

    name: str
    url: str
    limit: Limit | None = None
    senders: Mapping[str, Limit] = field(default_factory=lambda: MappingProxyType({}))
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: seconds a sent message waits for this provider's delivery receipt before the worker
    #: looks it up, and this provider's validity period, after which it ends unknown (None:
    #: the worker's defaults, one hour and 72 hours)
    receipt_timeout: float | None = None
    validity: float | None = None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()

    def masked_url(self) -> str:
        return mask_url(self.url)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 10
    lease_seconds: float = 60.0
    batch_size: int = 100


#: the final states ``[retention]`` may give an age of their own
RETENTION_STATES = (
    "delivered",
    "undelivered",
    "failed",
    "rejected",
    "expired",
    "canceled",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """``[retention]``: ages in seconds (None: kept forever); see smsgate.outbox.retention."""

    messages: float | None = None
    events: float | None = None
    #: ages of single final states, overriding ``messages``
    states: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    batch_size: int = 500
    interval: float = 60.0

    def build(self) -> Retention | None:
        """The worker's :class:`~smsgate.outbox.retention.Retention` (None: nothing to prune)."""
        if self.messages is None and self.events is None and not self.states:
            return None
        from smsgate.outbox.retention import Retention
        from smsgate.outbox.store import State

        return Retention(
            messages=self.messages,
            states=MappingProxyType({State(k): v for k, v in self.states.items()}),
            events=self.events,
            batch_size=self.batch_size,
            interval=self.interval,
        )


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    failure_threshold: int = 5
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class OtpConfig:
    code_length: int = 6
    ttl: float = 300.0
    #: refuse otp messages to recipients who opted out (STOP), like every other purpose; false
    #: lets one-time codes through
    honor_opt_outs: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """The whole resolved configuration. ``source`` is the file it came from (None: defaults)."""

    store: str = DEFAULT_STORE
    public_url: str | None = None
    providers: Mapping[str, ProviderConfig] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[Route, ...] = ()
    #: True when the file has providers but no routes, and one default route over all of them
    #: (in file order) was made up
    routes_implicit: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    circuit_breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    otp: OtpConfig = field(default_factory=OtpConfig)
    #: settings of the HTTP server, defined by the server itself
    server: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the ``[console]`` table, read by smsgate.console.settings
    console: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the ``[verify]`` table, defined by :mod:`smsgate.verify.settings`
    verify: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str | None = None

    @classmethod
    def default(cls) -> Config:
        """The embedded defaults: a SQLite file in the working directory, no providers."""
        return cls()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
    ) -> Config:
        """Read ``path``, else the file named by ``SMSGATE_CONFIG``, else use the defaults."""
        environ = os.environ if env is None else env
        origin = "--config"
        if path is None:
            named = environ.get(CONFIG_ENV_VAR, "").strip()
            if not named:
                return cls.default()
            path, origin = named, CONFIG_ENV_VAR
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"config file {file} (from {origin}) does not exist; check the path or run "
                "without it to use the defaults"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} (from {origin}) cannot be read: {exc}") from None
        return cls.from_toml(text, env=environ, source=str(file))

    @classmethod
    def from_toml(
        cls, text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
    ) -> Config:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source or 'config'} is not valid TOML: {exc}") from None
        return cls.from_dict(data, env=env, source=source)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        source: str | None = None,
    ) -> Config:
        """Validate a parsed config (as ``tomllib`` returns it), interpolating ``${VAR}`` first."""
        resolved = interpolate_tree(data, "", os.environ if env is None else env)
        return _build(_table(resolved, ""), source)

    # ---- what the worker and server build from it

    def breakers(self, clock: Clock = SYSTEM_CLOCK) -> CircuitBreakers:
        return CircuitBreakers(
            failure_threshold=self.circuit_breaker.failure_threshold,
            cooldown=self.circuit_breaker.cooldown,
            clock=clock,
        )

    def router(
        self,
        clock: Clock = SYSTEM_CLOCK,
        breakers: CircuitBreakers | None = None,
        rng: random.Random | None = None,
    ) -> Router:
        """The routes with breakers built from ``[circuit_breaker]`` (or the ones given)."""
        chosen = self.breakers(clock) if breakers is None else breakers
        return Router(self.routes, chosen, clock, rng)

    def rate_limiter(
        self, backend: BucketBackend | None = None, clock: Clock = SYSTEM_CLOCK, namespace: str = ""
    ) -> RateLimiter:
        """Buckets for every provider and sender with a ``rate``.

        Pass the store's shared ``backend`` so that all workers of one store draw from it.
        """
        provider_limits = {
            name: p.limit for name, p in self.providers.items() if p.limit is not None
        }
        sender_limits = {
            (name, sender): limit
            for name, p in self.providers.items()
            for sender, limit in p.senders.items()
        }
        return RateLimiter(
            provider_limits, sender_limits, backend=backend, clock=clock, namespace=namespace
        )

    # ---- summaries

    def warnings(self) -> list[str]:
        """Things that are valid but probably not meant."""
        notes = []
        if not self.providers:
            notes.append(
                "no providers are defined; add a [providers.NAME] table with a url to send"
            )
        if self.routes and not any(route.is_default for route in self.routes):
            notes.append(
                "no default route (one without purposes and countries): messages no route matches "
                "will fail with 'no route'"
            )
        used = {name for route in self.routes for name in route.providers}
        for name in self.providers:
            if name not in used:
                notes.append(f"provider {name} is not used by any route")
        return notes

    def masked(self) -> dict[str, Any]:
        """A JSON-safe summary with every secret replaced by ``***``."""
        return {
            "source": self.source,
            "store": mask_url(self.store),
            "public_url": self.public_url,
            "providers": {
                name: {
                    "url": provider.masked_url(),
                    "scheme": provider.scheme,
                    "rate": None if provider.limit is None else str(provider.limit.rate),
                    "burst": None if provider.limit is None else provider.limit.burst,
                    "senders": {
                        sender: {"rate": str(limit.rate), "burst": limit.burst}
                        for sender, limit in provider.senders.items()
                    },
                    "options": mask_settings(provider.options),
                }
                for name, provider in self.providers.items()
            },
            "routes": [
                {
                    "name": route.name,
                    "purposes": sorted(route.purposes),
                    "countries": list(route.countries),
                    "providers": list(route.providers),
                    "max_attempts": route.retry.max_attempts,
                    "base_delay": route.retry.base_delay,
                    "max_delay": route.retry.max_delay,
                    "jitter": route.retry.jitter,
                    "ambiguous": route.ambiguous.value,
                    "quiet_hours": None if route.quiet_hours is None else str(route.quiet_hours),
                    "quiet_purposes": sorted(route.quiet_purposes),
                    "implicit": self.routes_implicit,
                }
                for route in self.routes
            ],
            "worker": {
                "concurrency": self.worker.concurrency,
                "lease_seconds": self.worker.lease_seconds,
                "batch_size": self.worker.batch_size,
            },
            "retention": {
                "messages": self.retention.messages,
                "events": self.retention.events,
                **self.retention.states,
                "batch_size": self.retention.batch_size,
                "interval": self.retention.interval,
            },
            "circuit_breaker": {
                "failure_threshold": self.circuit_breaker.failure_threshold,
                "cooldown": self.circuit_breaker.cooldown,
            },
            "otp": {
                "code_length": self.otp.code_length,
                "ttl": self.otp.ttl,
                "honor_opt_outs": self.otp.honor_opt_outs,
            },
            "server": mask_settings(self.server),
            "verify": mask_settings(self.verify),
            "warnings": self.warnings(),
        }


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """``Config.load``: the ``--config`` file, else ``SMSGATE_CONFIG``, else the defaults."""
    return Config.load(path, env=env)


# --------------------------------------------------------------------------------------------
# Secrets


def mask_url(url: str) -> str:
    """``twilio://AC1234567890:TOKEN@+1555`` -> ``twilio://AC12…:***@+1555``.

    A password is always replaced; a lone credential (``telnyx://KEY@...``) is replaced whole;
    a long user part is shortened. Query values whose names look secret are replaced too.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        # Not a URL at all (a typo such as "twilio:/SID:TOKEN@..."): keep only what is plainly
        # not a credential.
        at = url.rfind("@")
        if at >= 0:
            return MASK + url[at:]
        return MASK if ":" in url else url
    head, rest = url[: scheme_end + 3], url[scheme_end + 3 :]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    location, tail = rest[:cut], rest[cut:]
    at = location.rfind("@")
    if at >= 0:
        user, has_password, _ = location[:at].partition(":")
        credentials = f"{_shorten(user)}:{MASK}" if has_password else MASK
        location = credentials + location[at:]
    return head + location + _mask_query(tail)


def mask_settings(value: Any) -> Any:
    """A copy of a settings tree with the values of secret-looking names replaced."""
    if isinstance(value, Mapping):
        return {
            str(key): MASK if _SECRET_NAME.search(str(key)) else mask_settings(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_settings(item) for item in value]
    if isinstance(value, str) and _URL_SCHEME.match(value):
        return mask_url(value)
    return value


def _shorten(user: str) -> str:
    # Account ids are not secret but are not for screenshots either: keep enough to recognise.
    return user if len(user) <= 8 else user[:4] + "…"


def _mask_query(tail: str) -> str:
    if not tail.startswith("?"):
        return tail
    query, hash_mark, fragment = tail[1:].partition("#")
    parts = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        parts.append(f"{name}={MASK}" if equals and _SECRET_NAME.search(name) else pair)
    return "?" + "&".join(parts) + hash_mark + fragment


# --------------------------------------------------------------------------------------------
# ${VAR} interpolation

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")


def interpolate(text: str, key: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in ``text`` (the value of ``key``).

    As in the shell, the default applies when the variable is unset or empty.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body, closed = match.group(1), match.group(2)
        if not closed:
            _fail(key, f"unclosed ${{ in {text!r}", "close it with } or write $${ for a literal ${")
        name, has_default, default = body.partition(":-")
        if not _ENV_NAME.match(name):
            _fail(
                key,
                f"${{{body}}} is not a variable reference",
                "write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _",
            )
        value = env.get(name)
        if has_default and not value:
            return default
        if value is None:
            _fail(
                key,
                f"environment variable {name} is not set",
                f"export {name}, or write ${{{name}:-default}} to give a fallback",
            )
        return value

    return _PLACEHOLDER.sub(substitute, text)


def interpolate_tree(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Interpolate every string in a parsed TOML tree; keys are left alone."""
    if isinstance(value, str):
        return interpolate(value, path or "config", env)
    if isinstance(value, Mapping):
        return {key: interpolate_tree(item, _child(path, key), env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(item, f"{path}[{index}]", env) for index, item in enumerate(value)]
    return value


# --------------------------------------------------------------------------------------------
# Validation: small readers that know the key path they read


def _fail(path: str, problem: str, fix: str | None = None) -> NoReturn:
    message = f"{path}: {problem}" + (f"; {fix}" if fix else "")
    raise ConfigError(message, field=path)


def _child(path: str, key: str) -> str:
    name = key if _IDENTIFIER.match(key) else f'"{key}"'
    return f"{path}.{name}" if path else name


def _table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        where = f"[{path}]" if path else "the file"
        _fail(path or "config", f"expected a table, got {_describe(value)}", f"write it as {where}")
    return value


def _known_keys(table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
            _fail(_child(path, key), "unknown key", hint)


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list"}
    if isinstance(value, Mapping):
        return "a table"
    return kinds.get(type(value), type(value).__name__)


def _string(value: Any, path: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(path, f"expected non-empty text, got {_describe(value)}", f"write e.g. {example}")
    return value.strip()


def _integer(value: Any, path: str, minimum: int, maximum: int | None = None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)  # a number that came from ${VAR}
    if number is None:
        _fail(
            path,
            f"{value!r} is not a whole number",
            f"write e.g. {path.rsplit('.', 1)[-1]} = {minimum}",
        )
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        _fail(path, f"{number} is out of range", f"use a whole number {bounds}")
    return number


def parse_duration(value: Any, path: str) -> float:
    """A positive duration in seconds from a number or text such as "500ms", "30s", "5min", "2h";
    a :class:`ConfigError` naming ``path`` otherwise. For settings other modules read."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match[1]) * _DURATION_SECONDS[match[2] or "s"]
    if seconds is None or not math.isfinite(seconds):
        _fail(
            path,
            f"{value!r} is not a duration",
            'write seconds (30) or text like "500ms", "30s", "5min", "2h"',
        )
    if seconds <= 0:
        _fail(path, f"{value!r} is not above zero", "use a positive duration")
    return seconds


def parse_flag(value: Any, path: str) -> bool:
    """``value`` if it is true or false; a :class:`ConfigError` naming ``path`` otherwise. For
    settings other modules read."""
    if not isinstance(value, bool):
        name = path.rsplit(".", 1)[-1]
        _fail(path, f"expected true or false, got {_describe(value)}", f"write e.g. {name} = true")
    return value


def receipts_requested(server: Mapping[str, Any]) -> bool:
    """``request_receipts`` of the ``[server]`` table (default true): whether providers ask for
    delivery receipts at ``{public_url}/webhooks/NAME/status``. Read here rather than by the
    server's settings alone because ``smsgate worker`` sends too, without the server package."""
    return parse_flag(server.get("request_receipts", True), "server.request_receipts")


def _string_list(value: Any, path: str, example: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        _fail(path, f"expected a list, got {_describe(value)}", f"write e.g. {example}")
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            _fail(
                f"{path}[{index}]", f"expected text, got {_describe(item)}", f"write e.g. {example}"
            )
    return [item.strip() for item in items]


def _limit(rate: Any, burst: Any, path: str) -> Limit:
    if isinstance(rate, bool) or not isinstance(rate, str | int | float):
        _fail(
            _child(path, "rate"),
            f"expected a rate, got {_describe(rate)}",
            'write e.g. rate = "1/s"',
        )
    if burst is not None:
        burst = _integer(burst, _child(path, "burst"), 1)
    return Limit.parse(rate, burst, key=_child(path, "rate"))


# --------------------------------------------------------------------------------------------
# Sections

_TOP_KEYS = (
    "store",
    "public_url",
    "providers",
    "routes",
    "retry",
    "worker",
    "retention",
    "circuit_breaker",
    "server",
    "otp",
    "console",
    "verify",
)
_PROVIDER_KEYS = ("url", "rate", "burst", "senders", "options", "receipt_timeout", "validity")
_SENDER_KEYS = ("rate", "burst")
_RETRY_KEYS = ("max_attempts", "base_delay", "max_delay", "jitter")
_ROUTE_KEYS = (
    "name",
    "purposes",
    "countries",
    "providers",
    "ambiguous",
    "quiet_hours",
    "quiet_purposes",
    *_RETRY_KEYS,
)
_WORKER_KEYS = ("concurrency", "lease_seconds", "batch_size")
_RETENTION_KEYS = ("messages", "events", "batch_size", "interval", *RETENTION_STATES)
_BREAKER_KEYS = ("failure_threshold", "cooldown")
_OTP_KEYS = ("code_length", "ttl", "honor_opt_outs")


def _build(data: Mapping[str, Any], source: str | None) -> Config:
    _known_keys(data, _TOP_KEYS, "")
    providers = _providers(data.get("providers", {}))
    retry_section = _table(data.get("retry", {}), "retry")
    _known_keys(retry_section, _RETRY_KEYS, "retry")
    retry = _retry_policy(retry_section, "retry", RetryPolicy())
    routes, implicit = _routes(data.get("routes"), providers, retry)
    return Config(
        store=_store(data.get("store", DEFAULT_STORE)),
        public_url=_public_url(data.get("public_url")),
        providers=MappingProxyType(providers),
        routes=routes,
        routes_implicit=implicit,
        retry=retry,
        worker=_worker(_table(data.get("worker", {}), "worker")),
        retention=_retention(_table(data.get("retention", {}), "retention")),
        circuit_breaker=_breaker(_table(data.get("circuit_breaker", {}), "circuit_breaker")),
        otp=_otp(_table(data.get("otp", {}), "otp")),
        server=MappingProxyType(dict(_table(data.get("server", {}), "server"))),
        console=MappingProxyType(dict(_table(data.get("console", {}), "console"))),
        verify=MappingProxyType(dict(_table(data.get("verify", {}), "verify"))),
        source=source,
    )


def _store(value: Any) -> str:
    url = _string(value, "store", f'store = "{DEFAULT_STORE}"')
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in STORE_SCHEMES:
        _fail(
            "store",
            f"{mask_url(url)!r} is not a store URL",
            'use "sqlite:///path/to/smsgate.db" or "postgresql://user:password@host/dbname"',
        )
    return url


def _public_url(value: Any) -> str | None:
    if value is None:
        return None
    url = _string(value, "public_url", 'public_url = "https://sms.example.com"')
    if not url.lower().startswith(("http://", "https://")):
        _fail(
            "public_url",
            f"{url!r} is not an http(s) URL",
            'write e.g. public_url = "https://sms.example.com"',
        )
    return url.rstrip("/")


def _providers(value: Any) -> dict[str, ProviderConfig]:
    table = _table(value, "providers")
    providers = {}
    for name, section in table.items():
        path = _child("providers", name)
        if not _IDENTIFIER.match(name):
            _fail(
                path,
                "provider names are letters, digits, - and _",
                "rename the table, e.g. [providers.twilio]",
            )
        providers[name] = _provider(name, _table(section, path), path)
    return providers


def _provider(name: str, section: Mapping[str, Any], path: str) -> ProviderConfig:
    _known_keys(section, _PROVIDER_KEYS, path)
    if "url" not in section:
        _fail(
            _child(path, "url"),
            "missing",
            'add url = "scheme://credentials@sender", e.g. "twilio://SID:${TWILIO_TOKEN}@+15017122661"',
        )
    url = _string(section["url"], _child(path, "url"), '"twilio://SID:TOKEN@+15017122661"')
    if not _URL_SCHEME.match(url):
        _fail(
            _child(path, "url"),
            f"{mask_url(url)!r} is not a provider URL",
            'write scheme://credentials@sender, e.g. "twilio://SID:${TWILIO_TOKEN}@+15017122661"',
        )
    from smsgate.providers import check_url

    try:
        check_url(url)
    except ConfigError as exc:
        _fail(_child(path, "url"), exc.message, "fix or remove that option in the URL")
    limit = None
    if "rate" in section:
        limit = _limit(section["rate"], section.get("burst"), path)
    elif "burst" in section:
        _fail(_child(path, "burst"), "a burst needs a rate", 'add rate = "1/s" (or remove burst)')
    senders = {}
    senders_path = _child(path, "senders")
    for sender, spec in _table(section.get("senders", {}), senders_path).items():
        sender_path = _child(senders_path, sender)
        if isinstance(spec, Mapping):
            _known_keys(spec, _SENDER_KEYS, sender_path)
            if "rate" not in spec:
                _fail(_child(sender_path, "rate"), "missing", 'add rate = "1/s"')
            senders[sender] = _limit(spec["rate"], spec.get("burst"), sender_path)
        else:
            senders[sender] = Limit.parse(_sender_rate(spec, sender_path), key=sender_path)
    options = _table(section.get("options", {}), _child(path, "options"))
    waits = {
        key: parse_duration(section[key], _child(path, key))
        for key in ("receipt_timeout", "validity")
        if key in section
    }
    return ProviderConfig(
        name=name,
        url=url,
        limit=limit,
        senders=MappingProxyType(senders),
        options=MappingProxyType(dict(options)),
        **waits,
    )


def _sender_rate(spec: Any, path: str) -> str | int | float:
    if isinstance(spec, bool) or not isinstance(spec, str | int | float):
        _fail(
            path,
            f"expected a rate, got {_describe(spec)}",
            'write "+15017122661" = "1/s" or { rate = "1/s", burst = 1 }',
        )
    return spec


def _retry_policy(section: Mapping[str, Any], path: str, defaults: RetryPolicy) -> RetryPolicy:
    """The retry keys of ``section`` (the [retry] table or a route), over ``defaults``."""
    max_attempts = defaults.max_attempts
    if "max_attempts" in section:
        max_attempts = _integer(section["max_attempts"], _child(path, "max_attempts"), 1)
    base_delay = defaults.base_delay
    if "base_delay" in section:
        base_delay = parse_duration(section["base_delay"], _child(path, "base_delay"))
    max_delay = defaults.max_delay
    if "max_delay" in section:
        max_delay = parse_duration(section["max_delay"], _child(path, "max_delay"))
    jitter = section.get("jitter", defaults.jitter)
    if jitter not in JITTER_MODES:
        _fail(
            _child(path, "jitter"),
            f"{jitter!r} is not a jitter mode",
            f"use one of {', '.join(JITTER_MODES)}",
        )
    if max_delay < base_delay:
        _fail(
            _child(path, "max_delay"),
            f"{max_delay:g}s is shorter than base_delay ({base_delay:g}s)",
            "raise max_delay or lower base_delay",
        )
    return RetryPolicy(max_attempts, base_delay, max_delay, jitter)


def _routes(
    value: Any, providers: Mapping[str, ProviderConfig], retry: RetryPolicy
) -> tuple[tuple[Route, ...], bool]:
    if value is None:
        if not providers:
            return (), False
        return (Route(name="default", providers=tuple(providers), retry=retry),), True
    if not isinstance(value, list):
        _fail(
            "routes",
            f"expected a list of tables, got {_describe(value)}",
            "write each route as [[routes]]",
        )
    routes: list[Route] = []
    first_use: dict[str, str] = {}
    shapes: dict[tuple[frozenset[str], frozenset[str]], str] = {}
    for index, item in enumerate(value):
        path = f"routes[{index}]"
        route = _route(_table(item, path), path, providers, retry)
        if route.name in first_use:
            _fail(
                _child(path, "name"),
                f"{route.name!r} is already the name of {first_use[route.name]}",
                "give each route its own name",
            )
        first_use[route.name] = path
        shape = (frozenset(route.purposes), frozenset(route.countries))
        if shape in shapes:
            _fail(
                path,
                f"matches the same purposes and countries as {shapes[shape]}, "
                "so it would never be chosen",
                "merge the two routes or change purposes/countries",
            )
        shapes[shape] = path
        routes.append(route)
    return tuple(routes), False


def _route(
    section: Mapping[str, Any],
    path: str,
    providers: Mapping[str, ProviderConfig],
    retry: RetryPolicy,
) -> Route:
    _known_keys(section, _ROUTE_KEYS, path)
    if "name" not in section:
        _fail(_child(path, "name"), "missing", 'give the route a name, e.g. name = "otp"')
    name = _string(section["name"], _child(path, "name"), 'name = "otp"')

    purposes = _string_list(section.get("purposes", []), _child(path, "purposes"), '["otp"]')
    allowed = [purpose.value for purpose in Purpose]
    for index, purpose in enumerate(purposes):
        if purpose not in allowed:
            _fail(
                f"{path}.purposes[{index}]",
                f"unknown purpose {purpose!r}",
                f"use one of {', '.join(allowed)}",
            )

    countries = _string_list(
        section.get("countries", []), _child(path, "countries"), '["+1", "+44"]'
    )
    for index, prefix in enumerate(countries):
        if not _COUNTRY_PREFIX.match(prefix):
            _fail(
                f"{path}.countries[{index}]",
                f"{prefix!r} is not a country prefix",
                'write + and the calling code, e.g. "+1" or "+44"',
            )

    if "providers" not in section:
        _fail(
            _child(path, "providers"),
            "missing",
            f"list providers to try in order, e.g. providers = [{_quoted(providers)}]",
        )
    chain = _string_list(section["providers"], _child(path, "providers"), '["twilio", "smsroute"]')
    if not chain:
        _fail(
            _child(path, "providers"), "empty", f"name at least one provider: {_quoted(providers)}"
        )
    for index, provider in enumerate(chain):
        item = f"{path}.providers[{index}]"
        if provider not in providers:
            defined = ", ".join(providers) or "none"
            close = difflib.get_close_matches(provider, list(providers), n=1)
            _fail(
                item,
                f'unknown provider "{provider}"; defined providers: {defined}',
                f'did you mean "{close[0]}"?'
                if close
                else f"add a [providers.{provider}] table or fix the name",
            )
        if chain.index(provider) != index:
            _fail(item, f"{provider} is already in the chain", "list each provider once")

    ambiguous = section.get("ambiguous", AmbiguousPolicy.AUTO.value)
    policies = [policy.value for policy in AmbiguousPolicy]
    if ambiguous not in policies:
        _fail(
            _child(path, "ambiguous"),
            f"{ambiguous!r} is not a policy",
            f"use one of {', '.join(policies)}",
        )

    quiet = None
    if "quiet_hours" in section:
        text = _string(section["quiet_hours"], _child(path, "quiet_hours"), '"21:00-08:00"')
        try:
            quiet = QuietHours.parse(text)
        except ConfigError as exc:
            _fail(_child(path, "quiet_hours"), exc.message.split("; ")[0], 'write "21:00-08:00"')
    quiet_purposes = _string_list(
        section.get("quiet_purposes", ["marketing"]),
        _child(path, "quiet_purposes"),
        '["marketing"]',
    )
    for index, purpose in enumerate(quiet_purposes):
        if purpose not in allowed:
            _fail(
                f"{path}.quiet_purposes[{index}]",
                f"unknown purpose {purpose!r}",
                f"use one of {', '.join(allowed)}",
            )

    return Route(
        name=name,
        providers=tuple(chain),
        purposes=frozenset(Purpose(purpose) for purpose in purposes),
        countries=tuple(countries),
        retry=_retry_policy(section, path, retry),
        ambiguous=AmbiguousPolicy(ambiguous),
        quiet_hours=quiet,
        quiet_purposes=frozenset(Purpose(purpose) for purpose in quiet_purposes),
    )


def _quoted(providers: Mapping[str, ProviderConfig]) -> str:
    return ", ".join(f'"{name}"' for name in providers) or '"twilio"'


def _worker(section: Mapping[str, Any]) -> WorkerConfig:
    _known_keys(section, _WORKER_KEYS, "worker")
    defaults = WorkerConfig()
    return WorkerConfig(
        concurrency=_integer(
            section.get("concurrency", defaults.concurrency), "worker.concurrency", 1, 10_000
        ),
        lease_seconds=parse_duration(
            section.get("lease_seconds", defaults.lease_seconds), "worker.lease_seconds"
        ),
        batch_size=_integer(
            section.get("batch_size", defaults.batch_size), "worker.batch_size", 1, 100_000
        ),
    )


def _retention(section: Mapping[str, Any]) -> RetentionConfig:
    _known_keys(section, _RETENTION_KEYS, "retention")
    defaults = RetentionConfig()

    def age(key: str) -> float | None:
        value = section.get(key)
        return None if value is None else parse_duration(value, f"retention.{key}")

    states = {key: seconds for key in RETENTION_STATES if (seconds := age(key)) is not None}
    return RetentionConfig(
        messages=age("messages"),
        events=age("events"),
        states=MappingProxyType(states),
        batch_size=_integer(
            section.get("batch_size", defaults.batch_size), "retention.batch_size", 1, 10_000
        ),
        interval=parse_duration(section.get("interval", defaults.interval), "retention.interval"),
    )


def _breaker(section: Mapping[str, Any]) -> CircuitBreakerConfig:
    _known_keys(section, _BREAKER_KEYS, "circuit_breaker")
    defaults = CircuitBreakerConfig()
    return CircuitBreakerConfig(
        failure_threshold=_integer(
            section.get("failure_threshold", defaults.failure_threshold),
            "circuit_breaker.failure_threshold",
            1,
        ),
        cooldown=parse_duration(
            section.get("cooldown", defaults.cooldown), "circuit_breaker.cooldown"
        ),
    )


def _otp(section: Mapping[str, Any]) -> OtpConfig:
    _known_keys(section, _OTP_KEYS, "otp")
    defaults = OtpConfig()
    return OtpConfig(
        code_length=_integer(
            section.get("code_length", defaults.code_length), "otp.code_length", 4, 10
        ),
        ttl=parse_duration(section.get("ttl", defaults.ttl), "otp.ttl"),
        honor_opt_outs=parse_flag(
            section.get("honor_opt_outs", defaults.honor_opt_outs), "otp.honor_opt_outs"
        ),
    )
