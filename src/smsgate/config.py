"""``smsgate.toml``: store, providers, routes and worker settings, secrets from the environment.

The file is found through ``--config``, else ``SMSGATE_CONFIG``, else ``./smsgate.toml``; without
any of them the embedded defaults apply (a SQLite file, no providers). String values may use ``${VAR}`` and
``${VAR:-default}`` (``$${`` is a literal ``${``). Every error names the key path and the fix, for
example ``routes[1].providers[0]: unknown provider "twillio"; defined providers: twilio, smsroute``.

Every table is a pydantic model (``ConfigFile`` and its ``Section`` classes), which is also the
JSON Schema ``smsgate config schema`` prints. Provider URLs are parsed by the provider registry at
load, so an unknown scheme or option fails here rather than in the worker.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import random
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.message import Purpose
from smsgate.ratelimit import BucketBackend, Limit, RateLimiter, parse_rate
from smsgate.redact import redact_settings, redact_url
from smsgate.retry import JITTER_MODES, RetryPolicy
from smsgate.routing import AmbiguousPolicy, CircuitBreakers, QuietHours, Route, Router

if TYPE_CHECKING:
    from smsgate.outbox.retention import Retention

CONFIG_ENV_VAR = "SMSGATE_CONFIG"
#: found in the working directory when neither --config nor SMSGATE_CONFIG names a file
LOCAL_CONFIG = "smsgate.toml"
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
_T = TypeVar("_T")


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
        return redact_url(self.url)


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
    #: how the file was found: "--config", "SMSGATE_CONFIG" or "./smsgate.toml" (None: defaults)
    origin: str | None = None
    #: the validated file, every table typed (``config.file.server.port``); sections other
    #: modules define are read from here
    file: ConfigFile | None = None

    def describe_source(self) -> str:
        """Which file was used and how it was found, for commands to print."""
        if self.source is None:
            return f"embedded defaults (no --config, {CONFIG_ENV_VAR} unset, no ./{LOCAL_CONFIG})"
        return f"{self.source} (from {self.origin})" if self.origin else self.source

    @classmethod
    def default(cls) -> Config:
        """The embedded defaults: a SQLite file in the working directory, no providers."""
        return cls()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
    ) -> Config:
        """Read ``path``, else the file named by ``SMSGATE_CONFIG``, else ``./smsgate.toml``,
        else use the defaults."""
        environ = os.environ if env is None else env
        found = find_config(path, env=environ)
        if found is None:
            return cls.default()
        file, origin = found
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"config file {file} (from {origin}) does not exist; check the path or run "
                "without it to use the defaults"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} (from {origin}) cannot be read: {exc}") from None
        config = cls.from_toml(text, env=environ, source=str(file))
        return dataclasses.replace(config, origin=origin)

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
        return _build(resolved, source)

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
            "origin": self.origin,
            "store": redact_url(self.store),
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
                    "options": redact_settings(provider.options),
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
            "server": redact_settings(self.server),
            "pricing": None
            if self.file is None or not self.file.pricing.per_segment
            else {
                "currency": self.file.pricing.currency,
                "per_segment": {
                    name: dict(table) for name, table in self.file.pricing.per_segment.items()
                },
            },
            "verify": redact_settings(self.verify),
            "warnings": self.warnings(),
        }


def find_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[Path, str] | None:
    """The config file to read and how it was named: ``path`` ("--config"), else
    ``SMSGATE_CONFIG``, else ``./smsgate.toml`` when it exists; None means the defaults."""
    environ = os.environ if env is None else env
    if path is not None:
        return Path(path), "--config"
    named = environ.get(CONFIG_ENV_VAR, "").strip()
    if named:
        return Path(named), CONFIG_ENV_VAR
    local = Path(LOCAL_CONFIG)
    if local.is_file():
        return local, f"./{LOCAL_CONFIG}"
    return None


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """``Config.load``: the ``--config`` file, else ``SMSGATE_CONFIG``, else ``./smsgate.toml``,
    else the defaults."""
    return Config.load(path, env=env)


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
# The schema: one pydantic model per table of smsgate.toml
#
# The models are the one definition of every key: its type, range, default and description.
# They validate the file at load (``Config.from_dict``), and ``smsgate config schema`` prints
# their JSON Schema for editors. Value types below check with our own readers so that every
# error keeps the project's "key: problem; fix" form instead of pydantic's wording.
#
# Adding a section is one model class: subclass ``Section``, declare its keys with ``Field``
# (description, examples), and add it as a field of ``ConfigFile``; the validated table is then
# ``config.file.<name>``.


def _custom(kind: str, message: str, **context: Any) -> PydanticCustomError:
    # Braces in a user's value must not be read as template fields by pydantic.
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"), context)


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list"}
    if isinstance(value, Mapping):
        return "a table"
    return kinds.get(type(value), type(value).__name__)


#: placeholders in messages that the error formatter fills in from where the error is
_EXAMPLE = "@EXAMPLE@"  # "KEY = <first example of the field>"
_PATH = "@PATH@"


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _custom(
            "text", f"expected non-empty text, got {_describe(value)}; write e.g. {_EXAMPLE}"
        )
    return value.strip()


def _any_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _custom("text", f"expected text, got {_describe(value)}; write e.g. {_EXAMPLE}")
    return value.strip()


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _custom(
            "flag", f"expected true or false, got {_describe(value)}; write e.g. {_EXAMPLE}"
        )
    return value


def _whole(minimum: int, maximum: int | None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            number = int(value)  # a number that came from ${VAR}
        if number is None:
            raise _custom("whole", f"{value!r} is not a whole number; write e.g. {_EXAMPLE}")
        if number < minimum or (maximum is not None and number > maximum):
            bounds = (
                f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            )
            raise _custom("range", f"{number} is out of range; use a whole number {bounds}")
        return number

    return check


def _int_schema(minimum: int, maximum: int | None) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return WithJsonSchema(schema)


# whole numbers in a range (text of digits from ${VAR} counts)
AtLeastOne = Annotated[int, BeforeValidator(_whole(1, None)), _int_schema(1, None)]
Concurrency = Annotated[int, BeforeValidator(_whole(1, 10_000)), _int_schema(1, 10_000)]
BatchSize = Annotated[int, BeforeValidator(_whole(1, 100_000)), _int_schema(1, 100_000)]
CodeLength = Annotated[int, BeforeValidator(_whole(4, 10)), _int_schema(4, 10)]
MaxBatch = Annotated[int, BeforeValidator(_whole(1, 10_000)), _int_schema(1, 10_000)]


def _duration_seconds(value: Any) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match[1]) * _DURATION_SECONDS[match[2] or "s"]
    if seconds is None or not math.isfinite(seconds):
        raise _custom(
            "duration",
            f'{value!r} is not a duration; write seconds (30) or text like "500ms", "30s", '
            '"5min", "2h"',
        )
    if seconds <= 0:
        raise _custom("duration", f"{value!r} is not above zero; use a positive duration")
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|sec|m|min|h|d)?\s*$"},
    ],
    "description": 'Seconds, or text such as "500ms", "30s", "5min", "2h".',
}
Duration = Annotated[float, BeforeValidator(_duration_seconds), WithJsonSchema(_DURATION_SCHEMA)]


def _rate(value: Any) -> str | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _custom("rate", f'expected a rate, got {_describe(value)}; write e.g. rate = "1/s"')
    try:
        parse_rate(value, _PATH)
    except ConfigError as exc:
        raise _custom("rate", str(exc).removeprefix(f"{_PATH}: ")) from None
    return value


_RATE_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*/\s*(s|sec|m|min|h|d)\s*$"},
    ],
    "description": 'COUNT/UNIT with UNIT one of s, min, h, d ("1/s", "30/min"); a number is per '
    "second.",
}
RateText = Annotated[str | float, BeforeValidator(_rate), WithJsonSchema(_RATE_SCHEMA)]
Text = Annotated[str, BeforeValidator(_text), WithJsonSchema({"type": "string", "minLength": 1})]
AnyText = Annotated[str, BeforeValidator(_any_text), WithJsonSchema({"type": "string"})]
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": "boolean"})]


def _text_list(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _custom("list", f"expected a list, got {_describe(value)}; write e.g. {_EXAMPLE}")
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise _custom(
                "text", f"expected text, got {_describe(item)}; write e.g. {_EXAMPLE}", child=index
            )
    return [item.strip() for item in items]


def _choice_list(choices: Sequence[str], what: str) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        items = _text_list(value)
        for index, item in enumerate(items):
            if item not in choices:
                raise _custom(
                    "choice",
                    f"unknown {what} {item!r}; use one of {', '.join(choices)}",
                    child=index,
                )
        return items

    return check


def _choice(choices: Sequence[str], what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _custom("choice", f"{value!r} is not {what}; use one of {', '.join(choices)}")
        return value

    return check


def _country_prefixes(value: Any) -> list[str]:
    items = _text_list(value)
    for index, prefix in enumerate(items):
        if not _COUNTRY_PREFIX.match(prefix):
            raise _custom(
                "country",
                f"{prefix!r} is not a country prefix; write + and the calling code, e.g. "
                '"+1" or "+44"',
                child=index,
            )
    return items


def _store_url(value: Any) -> str:
    url = _text(value)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in STORE_SCHEMES:
        raise _custom(
            "store",
            f'{redact_url(url)!r} is not a store URL; use "sqlite:///path/to/smsgate.db" or '
            '"postgresql://user:password@host/dbname"',
        )
    return url


def _http_url(value: Any) -> str:
    url = _text(value)
    if not url.lower().startswith(("http://", "https://")):
        raise _custom("url", f"{url!r} is not an http(s) URL; write e.g. {_EXAMPLE}")
    return url.rstrip("/")


def _provider_url(value: Any) -> str:
    url = _text(value)
    if not _URL_SCHEME.match(url):
        raise _custom(
            "provider_url",
            f"{redact_url(url)!r} is not a provider URL; write scheme://credentials@sender, e.g. "
            '"twilio://SID:${TWILIO_TOKEN}@+15017122661"',
        )
    return url


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise _custom(
            "port",
            f"{value!r} is not a TCP port; use a number between 1 and 65535 (0 picks a free one)",
        )
    return value


class Section(BaseModel):
    """A table of smsgate.toml: unknown keys are refused with the closest known one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the fix to print when a required key is missing, by key
    missing_fixes: ClassVar[dict[str, str]] = {}
    #: keys that left this table, and where they are now
    moved: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _table_shape(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise _custom(
                "table", f"expected a table, got {_describe(data)}; write it as [{_PATH}]"
            )
        allowed = list(cls.model_fields)
        for key in data:
            if key in allowed:
                continue
            if key in cls.moved:
                raise _custom("moved", f"unknown key; it moved: write {cls.moved[key]}", child=key)
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.7)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
            raise _custom("unknown_key", f"unknown key; {hint}", child=key)
        for key, field_info in cls.model_fields.items():
            if field_info.is_required() and key not in data:
                example = _example(field_info)
                fix = cls.missing_fixes.get(key) or f"add {key} = {example}"
                raise _custom("missing", f"missing; {fix}", child=key)
        return data


def _example(field_info: FieldInfo) -> str:
    examples = field_info.examples or []
    if not examples:
        return "..."
    value = examples[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return str(value)


class SenderSection(Section):
    """``[providers.NAME.senders]``: a limit for one sender number or id."""

    rate: RateText = Field(description="Sends per unit of time.", examples=["1/s"])
    burst: AtLeastOne | None = Field(
        None,
        description="How many may go at once (default: a tenth of a second's worth).",
        examples=[1],
    )

    missing_fixes: ClassVar[dict[str, str]] = {"rate": 'add rate = "1/s"'}

    @model_validator(mode="before")
    @classmethod
    def _bare_rate(cls, data: Any) -> Any:
        # "+15017122661" = "1/s" is short for { rate = "1/s" }
        if isinstance(data, Mapping):
            return data
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            raise _custom(
                "rate",
                f'expected a rate, got {_describe(data)}; write "+15017122661" = "1/s" or '
                '{ rate = "1/s", burst = 1 }',
            )
        return {"rate": _rate(data)}


class ProviderSection(Section):
    """``[providers.NAME]``: one provider account and sender."""

    url: Annotated[str, BeforeValidator(_provider_url)] = Field(
        description="scheme://credentials@sender?options; secrets from ${ENV}.",
        examples=["twilio://SID:${TWILIO_TOKEN}@+15017122661"],
    )
    rate: RateText | None = Field(None, description="Sends per unit of time.", examples=["1/s"])
    burst: AtLeastOne | None = Field(
        None, description="How many may go at once (needs a rate).", examples=[3]
    )
    senders: dict[str, SenderSection] = Field(
        default_factory=dict, description="Limits per sender number or id."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options passed to the provider."
    )
    receipt_timeout: Duration | None = Field(
        None,
        description="How long a sent message waits for its final receipt before the worker "
        "looks it up (default 1h).",
        examples=["1h"],
    )
    validity: Duration | None = Field(
        None,
        description="This provider's validity period: a message still without a final status "
        "after it ends unknown (default 72h).",
        examples=["72h"],
    )

    missing_fixes: ClassVar[dict[str, str]] = {
        "url": 'add url = "scheme://credentials@sender", e.g. '
        '"twilio://SID:${TWILIO_TOKEN}@+15017122661"'
    }

    @model_validator(mode="before")
    @classmethod
    def _options_table(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in ("senders", "options"):
                if key in data and not isinstance(data[key], Mapping):
                    raise _custom(
                        "table",
                        f"expected a table, got {_describe(data[key])}; write it as "
                        f"[{_PATH}.{key}]",
                        child=key,
                    )
            if "burst" in data and "rate" not in data:
                raise _custom(
                    "burst",
                    'a burst needs a rate; add rate = "1/s" (or remove burst)',
                    child="burst",
                )
        return data


_JITTER = Annotated[
    str,
    BeforeValidator(_choice(JITTER_MODES, "a jitter mode")),
    WithJsonSchema({"enum": list(JITTER_MODES)}),
]


class RetrySection(Section):
    """``[retry]``: the retry policy every route starts from."""

    max_attempts: AtLeastOne = Field(
        RetryPolicy().max_attempts, description="Attempts per provider.", examples=[6]
    )
    base_delay: Duration = Field(
        RetryPolicy().base_delay, description="Backoff after the first failure.", examples=["1s"]
    )
    max_delay: Duration = Field(
        RetryPolicy().max_delay, description="The longest backoff.", examples=["5min"]
    )
    jitter: _JITTER = Field(
        RetryPolicy().jitter, description="How backoff is randomised.", examples=["full"]
    )


_PURPOSES = tuple(purpose.value for purpose in Purpose)
_POLICIES = tuple(policy.value for policy in AmbiguousPolicy)


class RouteSection(Section):
    """``[[routes]]``: which providers, in order, send which messages."""

    name: Text = Field(description="The route's name.", examples=["otp"])
    purposes: Annotated[
        list[str],
        BeforeValidator(_choice_list(_PURPOSES, "purpose")),
        WithJsonSchema({"type": "array", "items": {"enum": list(_PURPOSES)}}),
    ] = Field(
        default_factory=list, description="Only these purposes (default: any).", examples=[["otp"]]
    )
    countries: Annotated[
        list[str],
        BeforeValidator(_country_prefixes),
        WithJsonSchema(
            {"type": "array", "items": {"type": "string", "pattern": r"^\+[1-9][0-9]{0,14}$"}}
        ),
    ] = Field(
        default_factory=list,
        description="Only these calling codes (default: any).",
        examples=[["+1", "+44"]],
    )
    providers: Annotated[
        list[str],
        BeforeValidator(_text_list),
        WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1}),
    ] = Field(description="Providers to try in order.", examples=[["twilio", "smsroute"]])
    ambiguous: Annotated[
        str,
        BeforeValidator(_choice(_POLICIES, "a policy")),
        WithJsonSchema({"enum": list(_POLICIES)}),
    ] = Field(
        AmbiguousPolicy.AUTO.value,
        description="What to do when a send may have arrived.",
        examples=["auto"],
    )
    quiet_hours: Text | None = Field(
        None,
        description="Hold messages of quiet_purposes while it is this time where the recipient "
        "is (HH:MM-HH:MM).",
        examples=["21:00-08:00"],
    )
    quiet_purposes: Annotated[
        list[str],
        BeforeValidator(_choice_list(_PURPOSES, "purpose")),
        WithJsonSchema({"type": "array", "items": {"enum": list(_PURPOSES)}}),
    ] = Field(
        default_factory=lambda: ["marketing"],
        description="The purposes quiet hours hold.",
        examples=[["marketing"]],
    )
    # the retry keys, inherited from [retry] when absent
    max_attempts: AtLeastOne | None = Field(
        None, description="Attempts per provider.", examples=[3]
    )
    base_delay: Duration | None = Field(
        None, description="Backoff after the first failure.", examples=["1s"]
    )
    max_delay: Duration | None = Field(None, description="The longest backoff.", examples=["5min"])
    jitter: _JITTER | None = Field(
        None, description="How backoff is randomised.", examples=["full"]
    )

    missing_fixes: ClassVar[dict[str, str]] = {
        "name": 'give the route a name, e.g. name = "otp"',
        "providers": 'list providers to try in order, e.g. providers = ["twilio", "smsroute"]',
    }


class WorkerSection(Section):
    """``[worker]``: how ``smsgate worker`` (and the server's worker) claims and sends."""

    concurrency: Concurrency = Field(10, description="Sends in flight at once.", examples=[50])
    lease_seconds: Duration = Field(60.0, description="How long a claim lasts.", examples=["60s"])
    batch_size: BatchSize = Field(100, description="Rows claimed per query.", examples=[100])


def _age_field(what: str) -> Any:
    return Field(None, description=what, examples=["90d"])


class RetentionSection(Section):
    """``[retention]``: how long messages in a final state are kept (absent: forever)."""

    messages: Duration | None = _age_field("Age after which any final message is deleted.")
    events: Duration | None = _age_field("Age after which a kept message's history is trimmed.")
    delivered: Duration | None = _age_field("Age for delivered messages (overrides messages).")
    undelivered: Duration | None = _age_field("Age for undelivered messages.")
    failed: Duration | None = _age_field("Age for failed messages.")
    rejected: Duration | None = _age_field("Age for rejected messages.")
    expired: Duration | None = _age_field("Age for expired messages.")
    canceled: Duration | None = _age_field("Age for canceled messages.")
    unknown: Duration | None = _age_field("Age for messages whose outcome is unknown.")
    batch_size: Annotated[int, BeforeValidator(_whole(1, 10_000)), _int_schema(1, 10_000)] = Field(
        500, description="Messages deleted per transaction.", examples=[500]
    )
    interval: Duration = Field(
        60.0, description="How often the worker looks for messages to prune.", examples=["60s"]
    )

    def config(self) -> RetentionConfig:
        states = {
            state: age for state in RETENTION_STATES if (age := getattr(self, state)) is not None
        }
        return RetentionConfig(
            messages=self.messages,
            events=self.events,
            states=MappingProxyType(states),
            batch_size=self.batch_size,
            interval=self.interval,
        )


class CircuitBreakerSection(Section):
    """``[circuit_breaker]``: when a failing provider is skipped."""

    failure_threshold: AtLeastOne = Field(
        5, description="Failures in a row that open it.", examples=[5]
    )
    cooldown: Duration = Field(30.0, description="How long it stays open.", examples=["30s"])


class OtpSection(Section):
    """``[otp]``: one-time codes."""

    code_length: CodeLength = Field(6, description="Digits per code.", examples=[6])
    ttl: Duration = Field(300.0, description="How long a code is valid.", examples=["5min"])
    honor_opt_outs: Flag = Field(
        True,
        description="Refuse otp messages to recipients who opted out (STOP), like every purpose.",
        examples=[True],
    )


class ServerSection(Section):
    """``[server]``: the HTTP service (``smsgate serve``)."""

    host: Text = Field("127.0.0.1", description="Address to listen on.", examples=["127.0.0.1"])
    port: Annotated[
        int,
        BeforeValidator(_port),
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 65535}),
    ] = Field(8080, description="Port to listen on (0 picks a free one).", examples=[8080])
    worker: Flag = Field(True, description="Run a worker in the server process.", examples=[True])
    help_text: AnyText = Field(
        "Reply STOP to unsubscribe, START to subscribe again.",
        description="The answer to HELP; empty sends none.",
        examples=["Example Co: reply STOP to opt out."],
    )
    stop_reply: AnyText = Field(
        "",
        description="Confirmation after STOP (empty: none).",
        examples=["You will get no more messages from us. Reply START to resume."],
    )
    start_reply: AnyText = Field(
        "",
        description="Confirmation after START (empty: none).",
        examples=["Welcome back: reply STOP to opt out."],
    )
    webhook_retry_horizon: Duration = Field(
        24 * 3600.0,
        description="Retry your webhooks this long, then dead-letter.",
        examples=["24h"],
    )
    webhook_timeout: Duration = Field(10.0, description="Per webhook request.", examples=["10s"])
    max_batch: MaxBatch = Field(10_000, description="Messages per batch request.", examples=[1000])
    fast_submit: Flag = Field(
        True, description="Serve POST /v1/messages outside FastAPI.", examples=[True]
    )
    request_receipts: Flag = Field(
        True,
        description="Ask providers for receipts at {public_url}/webhooks/NAME/status.",
        examples=[True],
    )

    moved: ClassVar[dict[str, str]] = {
        "suppress_otp": "honor_opt_outs under [otp] (it applies to every submit path)"
    }


def _secure_cookie(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if value == "auto":
        return "auto"
    raise _custom(
        "choice", f'{value!r} is not "auto", true or false; write e.g. secure_cookie = "auto"'
    )


class ConsoleSection(Section):
    """``[console]``: the web console ``smsgate serve`` mounts at ``/console``."""

    enabled: Flag = Field(True, description="Mount the console at /console.", examples=[True])
    session_ttl: Duration = Field(
        12 * 3600.0, description="How long a sign-in lasts.", examples=["12h"]
    )
    max_failures: Annotated[int, BeforeValidator(_whole(1, 1000)), _int_schema(1, 1000)] = Field(
        5, description="Failed sign-ins in a row before the name is locked.", examples=[5]
    )
    lockout: Duration = Field(
        15 * 60.0, description="How long a locked name stays locked.", examples=["15min"]
    )
    secure_cookie: Annotated[
        bool | str,
        BeforeValidator(_secure_cookie),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, {"const": "auto"}]}),
    ] = Field(
        "auto",
        description='Secure session cookies; "auto": when served over https.',
        examples=["auto"],
    )
    page_size: Annotated[int, BeforeValidator(_whole(10, 500)), _int_schema(10, 500)] = Field(
        50, description="Rows per page of the message log.", examples=[50]
    )


def _price(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _custom(
            "price", f"{value!r} is not a price; write the price of one segment, e.g. 0.0079"
        )
    if value < 0:
        raise _custom("price", f"{value!r} is below zero; a price is 0 or more")
    return float(value)


def _price_table(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise _custom(
            "table",
            f'expected a table of prices, got {_describe(value)}; write e.g. "+1" = 0.0079',
        )
    prices: dict[str, float] = {}
    for prefix, price in value.items():
        if prefix != "*" and not _COUNTRY_PREFIX.match(prefix):
            raise _custom(
                "country",
                f'{prefix!r} is not a country prefix; write + and the calling code ("+1", '
                '"+44", "+1204" for one area) or "*" for every other destination',
                child=prefix,
            )
        try:
            prices[prefix] = _price(price)
        except PydanticCustomError as exc:
            raise _custom("price", exc.message(), child=prefix) from None
    return prices


PriceTable = Annotated[
    dict[str, float],
    BeforeValidator(_price_table),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": r"^(\*|\+[1-9][0-9]{0,14})$"},
            "additionalProperties": {"type": "number", "minimum": 0},
        }
    ),
]


class PricingSection(Section):
    """``[pricing]``: what a segment costs, for estimates (``smsgate bulk --dry-run``)."""

    currency: Text = Field("USD", description="The currency of every price.", examples=["USD"])
    per_segment: dict[str, PriceTable] = Field(
        default_factory=dict,
        description="Per provider: the price of one segment by calling-code prefix (the longest "
        'matching prefix wins; "*" for every other destination).',
        examples=[{"twilio": {"+1": 0.0079, "+44": 0.0463, "*": 0.05}}],
    )

    def price(self, provider: str, to: str) -> float | None:
        """The price of one segment to ``to`` through ``provider``, or None when unknown."""
        table = self.per_segment.get(provider)
        if not table:
            return None
        best = max(
            (prefix for prefix in table if prefix != "*" and to.startswith(prefix)),
            key=len,
            default="*",
        )
        return table.get(best)


def _provider_names(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise _custom("table", f"expected a table, got {_describe(value)}; write it as [providers]")
    for name in value:
        if not _IDENTIFIER.match(name):
            raise _custom(
                "name",
                "provider names are letters, digits, - and _; rename the table, e.g. "
                "[providers.twilio]",
                child=name,
            )
    return value


def _route_list(value: Any) -> Any:
    if value is not None and not isinstance(value, list):
        raise _custom(
            "list",
            f"expected a list of tables, got {_describe(value)}; write each route as [[routes]]",
        )
    return value


def _verify_table(value: Any) -> Any:
    """``[verify]`` is defined by :mod:`smsgate.verify.settings`; checked here so that load and
    ``config check`` refuse what ``smsgate serve`` would."""
    if not isinstance(value, Mapping):
        raise _custom("table", f"expected a table, got {_describe(value)}; write it as [verify]")
    if value:
        from smsgate.verify.settings import VerifySettings

        try:
            VerifySettings.from_mapping(value)
        except ConfigError as exc:
            raise _custom("verify", str(exc)) from None
    return dict(value)


class ConfigFile(Section):
    """smsgate.toml: every table and key. Secrets come from ``${ENV}``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="smsgate.toml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    store: Annotated[str, BeforeValidator(_store_url)] = Field(
        DEFAULT_STORE,
        description="sqlite:///path or postgresql://user:password@host/db.",
        examples=[DEFAULT_STORE],
    )
    public_url: Annotated[str, BeforeValidator(_http_url)] | None = Field(
        None,
        description="The URL the world reaches the server at (callbacks, signatures).",
        examples=["https://sms.example.com"],
    )
    providers: Annotated[dict[str, ProviderSection], BeforeValidator(_provider_names)] = Field(
        default_factory=dict, description="One table per provider account."
    )
    routes: Annotated[list[RouteSection] | None, BeforeValidator(_route_list)] = Field(
        None, description="Routes in order (default: one over every provider)."
    )
    retry: RetrySection = RetrySection.model_validate({})
    worker: WorkerSection = WorkerSection.model_validate({})
    retention: RetentionSection = RetentionSection.model_validate({})
    circuit_breaker: CircuitBreakerSection = CircuitBreakerSection.model_validate({})
    server: ServerSection = ServerSection.model_validate({})
    otp: OtpSection = OtpSection.model_validate({})
    pricing: PricingSection = PricingSection.model_validate({})
    console: ConsoleSection = ConsoleSection.model_validate({})
    verify: Annotated[dict[str, Any], BeforeValidator(_verify_table)] = Field(
        default_factory=dict,
        description="One-time codes (smsgate.Verify): secret, code length, ttl, fraud guard; "
        "see docs/verify.md.",
        examples=[{"secret": "${SMSGATE_VERIFY_SECRET}"}],
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of smsgate.toml (``smsgate config schema``), for editors' completion."""
    schema = ConfigFile.model_json_schema()
    return {"$schema": schema.pop("$schema"), **schema}


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _child(path, str(part))
    return path


def _field_at(loc: Sequence[int | str]) -> FieldInfo | None:
    """The field a location names, walking the models (for its examples). A name that is not a
    field of the current model is a table key (a provider or sender name) and is stepped over."""
    model: Any = ConfigFile
    found: FieldInfo | None = None
    keyed = False  # the last field was a table of NAME -> section
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field_info = model.model_fields.get(part)
        if field_info is None:
            if not keyed:
                return None
            keyed = False
            continue
        found = field_info
        model = _inner_model(field_info.annotation)
        keyed = _is_table_of_sections(field_info.annotation)
    return found


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
        stack.extend(get_args(item))
    return None


def _is_table_of_sections(annotation: Any) -> bool:
    stack = [annotation]
    while stack:
        item = stack.pop()
        if get_origin(item) is dict:
            return True
        stack.extend(get_args(item))
    return False


_S = TypeVar("_S", bound=BaseModel)


def validate_section(model: type[_S], table: Mapping[str, Any], path: str) -> _S:
    """``table`` validated as ``model`` (a :class:`Section` of ConfigFile at ``path``), for
    modules that read one table on its own; errors name ``path.KEY`` like the whole file's."""
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        raise _config_error(exc, (path,)) from None


def _config_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    loc = [*prefix, *error["loc"]]
    context = error.get("ctx") or {}
    if "child" in context:
        loc.append(context["child"])
    path = _path(loc) or "config"
    message = str(error["msg"])
    if _EXAMPLE in message:
        found = _field_at(loc)
        key = next((part for part in reversed(loc) if isinstance(part, str)), "value")
        message = message.replace(_EXAMPLE, f"{key} = {_example(found) if found else '...'}")
    message = message.replace(_PATH, path)
    if error["type"] not in _OUR_ERRORS:
        # pydantic's own wording, for what our readers do not cover
        message = f"{message.rstrip('.')}; see smsgate config schema"
    return ConfigError(f"{path}: {message}", field=path)


_OUR_ERRORS = {
    "text",
    "flag",
    "whole",
    "range",
    "duration",
    "rate",
    "list",
    "choice",
    "country",
    "store",
    "url",
    "provider_url",
    "port",
    "table",
    "moved",
    "unknown_key",
    "missing",
    "name",
    "burst",
    "price",
}


def _fail(path: str, problem: str, fix: str | None = None) -> NoReturn:
    message = f"{path}: {problem}" + (f"; {fix}" if fix else "")
    raise ConfigError(message, field=path)


def _child(path: str, key: str) -> str:
    name = key if _IDENTIFIER.match(key) else f'"{key}"'
    return f"{path}.{name}" if path else name


def _checked(reader: Callable[[Any], _T], value: Any, path: str) -> _T:
    try:
        return reader(value)
    except PydanticCustomError as exc:
        message = exc.message().replace(_EXAMPLE, f"{path.rsplit('.', 1)[-1]} = ...")
        raise ConfigError(f"{path}: {message}", field=path) from None


def parse_duration(value: Any, path: str) -> float:
    """A positive duration in seconds from a number or text such as "500ms", "30s", "5min", "2h";
    a :class:`ConfigError` naming ``path`` otherwise. For settings other modules read."""
    return _checked(_duration_seconds, value, path)


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


# --------------------------------------------------------------------------------------------
# From the validated file to the objects the worker and server use


def _build(data: Mapping[str, Any], source: str | None) -> Config:
    try:
        file = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None
    providers = {
        name: _provider(name, section, _child("providers", name))
        for name, section in file.providers.items()
    }
    retry = _retry_policy(file.retry, "retry", RetryPolicy())
    routes, implicit = _routes(file.routes, providers, retry)
    for name in file.pricing.per_segment:
        if name not in providers:
            close = difflib.get_close_matches(name, list(providers), n=1)
            _fail(
                _child(_child("pricing", "per_segment"), name),
                f'prices for "{name}", which is not a provider; defined providers: '
                f"{', '.join(providers) or 'none'}",
                f'did you mean "{close[0]}"?' if close else "fix the name or add the provider",
            )
    return Config(
        store=file.store,
        public_url=file.public_url,
        providers=MappingProxyType(providers),
        routes=routes,
        routes_implicit=implicit,
        retry=retry,
        retention=file.retention.config(),
        worker=WorkerConfig(
            concurrency=file.worker.concurrency,
            lease_seconds=file.worker.lease_seconds,
            batch_size=file.worker.batch_size,
        ),
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=file.circuit_breaker.failure_threshold,
            cooldown=file.circuit_breaker.cooldown,
        ),
        otp=OtpConfig(
            code_length=file.otp.code_length,
            ttl=file.otp.ttl,
            honor_opt_outs=file.otp.honor_opt_outs,
        ),
        # the table as written (validated above): the server's settings read it
        server=MappingProxyType(dict(data.get("server", {}))),
        console=MappingProxyType(dict(data.get("console", {}))),
        verify=MappingProxyType(dict(data.get("verify", {}))),
        source=source,
        file=file,
    )


def _provider(name: str, section: ProviderSection, path: str) -> ProviderConfig:
    _check_provider_url(section.url, _child(path, "url"))
    limit = None
    if section.rate is not None:
        limit = Limit.parse(section.rate, section.burst, key=_child(path, "rate"))
    senders = {
        sender: Limit.parse(spec.rate, spec.burst, key=_child(_child(path, "senders"), sender))
        for sender, spec in section.senders.items()
    }
    waits = {
        key: value
        for key, value in (
            ("receipt_timeout", section.receipt_timeout),
            ("validity", section.validity),
        )
        if value is not None
    }
    return ProviderConfig(
        name=name,
        url=section.url,
        limit=limit,
        senders=MappingProxyType(senders),
        options=MappingProxyType(dict(section.options)),
        **waits,
    )


def _check_provider_url(url: str, path: str) -> None:
    """The provider registry parses the URL: scheme, credentials and options, as a send would."""
    from smsgate.providers import PROVIDERS, create_provider

    scheme = url.split("://", 1)[0].lower()
    known = {alias for info in PROVIDERS.values() for alias in (info.scheme, *info.aliases)}
    if scheme not in known:
        close = difflib.get_close_matches(scheme, sorted(known), n=1)
        fix = (
            f'did you mean "{close[0]}://"?'
            if close
            else f"use one of {', '.join(sorted(PROVIDERS))}"
        )
        _fail(path, f"unknown provider scheme {scheme!r}", fix)
    try:
        create_provider(url)  # holds no connection until its first send
    except ConfigError as exc:
        _fail(path, exc.message)


def _retry_policy(
    section: RetrySection | RouteSection, path: str, defaults: RetryPolicy
) -> RetryPolicy:
    """The retry keys of ``section`` (the [retry] table or a route), over ``defaults``."""
    max_attempts = defaults.max_attempts if section.max_attempts is None else section.max_attempts
    base_delay = defaults.base_delay if section.base_delay is None else section.base_delay
    max_delay = defaults.max_delay if section.max_delay is None else section.max_delay
    jitter = defaults.jitter if section.jitter is None else section.jitter
    if max_delay < base_delay:
        _fail(
            _child(path, "max_delay"),
            f"{max_delay:g}s is shorter than base_delay ({base_delay:g}s)",
            "raise max_delay or lower base_delay",
        )
    return RetryPolicy(max_attempts, base_delay, max_delay, jitter)  # type: ignore[arg-type]


def _routes(
    sections: list[RouteSection] | None,
    providers: Mapping[str, ProviderConfig],
    retry: RetryPolicy,
) -> tuple[tuple[Route, ...], bool]:
    if sections is None:
        if not providers:
            return (), False
        return (Route(name="default", providers=tuple(providers), retry=retry),), True
    routes: list[Route] = []
    first_use: dict[str, str] = {}
    shapes: dict[tuple[frozenset[str], frozenset[str]], str] = {}
    for index, section in enumerate(sections):
        path = f"routes[{index}]"
        route = _route(section, path, providers, retry)
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
    section: RouteSection, path: str, providers: Mapping[str, ProviderConfig], retry: RetryPolicy
) -> Route:
    chain = section.providers
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
    quiet = None
    if section.quiet_hours is not None:
        try:
            quiet = QuietHours.parse(section.quiet_hours)
        except ConfigError as exc:
            _fail(_child(path, "quiet_hours"), exc.message.split("; ")[0], 'write "21:00-08:00"')
    return Route(
        name=section.name,
        providers=tuple(chain),
        purposes=frozenset(Purpose(purpose) for purpose in section.purposes),
        countries=tuple(section.countries),
        retry=_retry_policy(section, path, retry),
        ambiguous=AmbiguousPolicy(section.ambiguous),
        quiet_hours=quiet,
        quiet_purposes=frozenset(Purpose(purpose) for purpose in section.quiet_purposes),
    )


def _quoted(providers: Mapping[str, ProviderConfig]) -> str:
    return ", ".join(f'"{name}"' for name in providers) or '"twilio"'
