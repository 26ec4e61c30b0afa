"""The ``[console]`` table of ``smsgate.toml``. Every key is optional::

    [console]
    enabled = true            # mount the console at /console in smsgate serve
    session_ttl = "12h"       # a sign-in lasts this long
    max_failures = 5          # failed sign-ins in a row before the name is locked
    lockout = "15min"         # how long it stays locked
    secure_cookie = "auto"    # "auto": Secure when served over https (or public_url is https)
    page_size = 50            # rows per page of the message log

A wrong value raises :class:`~smsgate.errors.ConfigError` naming ``console.KEY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smsgate.config import parse_duration, parse_flag
from smsgate.errors import ConfigError

_KEYS = ("enabled", "session_ttl", "max_failures", "lockout", "secure_cookie", "page_size")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    enabled: bool = True
    session_ttl: float = 12 * 3600.0
    max_failures: int = 5
    lockout: float = 15 * 60.0
    #: True, False, or None for "auto"
    secure_cookie: bool | None = None
    page_size: int = 50

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> ConsoleSettings:
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"console.{unknown[0]}: unknown key; the [console] keys are {', '.join(_KEYS)}",
                field=f"console.{unknown[0]}",
            )
        values: dict[str, Any] = {}
        if "enabled" in table:
            values["enabled"] = parse_flag(table["enabled"], "console.enabled")
        for key in ("session_ttl", "lockout"):
            if key in table:
                values[key] = parse_duration(table[key], f"console.{key}")
                if values[key] <= 0:
                    raise ConfigError(f"console.{key}: must be above zero", field=f"console.{key}")
        for key, low, high in (("max_failures", 1, 1000), ("page_size", 10, 500)):
            if key in table:
                value = table[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    raise ConfigError(
                        f"console.{key}: {value!r} is not a whole number from {low} to {high}",
                        field=f"console.{key}",
                    )
                values[key] = value
        if "secure_cookie" in table:
            value = table["secure_cookie"]
            if value != "auto":
                values["secure_cookie"] = parse_flag(value, "console.secure_cookie")
        return cls(**values)
