"""Provider URLs in Apprise's habit: ``scheme://credentials@sender?options``.

``twilio://SID:TOKEN@+15017122661?base_url=http://127.0.0.1:8001``. The user and password parts are
percent-decoded; the sender may be a number (``+`` kept) or an alphanumeric id. Parsing never echoes
a secret back in an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from smsgate.errors import ConfigError
from smsgate.redact import redact_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class ProviderURL:
    scheme: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    options: dict[str, str] = field(default_factory=dict)
    #: the option names a provider asked for (a test checks each provider declares them all)
    read: set[str] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def parse(cls, url: str) -> ProviderURL:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                "provider URL must look like scheme://credentials@sender?options, "
                "e.g. twilio://SID:TOKEN@+15017122661",
                field="provider",
            )
        scheme, rest = url.split("://", 1)
        # A sender such as +15017122661 is not a valid host for urlsplit's port parsing, and a
        # password may contain '@' or '/': split by hand on the last '@' before the query.
        rest, _, query = rest.partition("?")
        creds, at, location = rest.rpartition("@")
        if not at:
            creds, location = "", rest
        username: str | None = None
        password: str | None = None
        if creds:
            user, colon, pw = creds.partition(":")
            username = unquote(user) or None
            password = unquote(pw) if colon else None
        host, _, path = location.partition("/")
        port: int | None = None
        if host.count(":") == 1 and not host.startswith("["):
            host_part, _, port_text = host.partition(":")
            if port_text.isdigit():
                host, port = host_part, int(port_text)
        options = dict(parse_qsl(query, keep_blank_values=True))
        return cls(
            scheme=scheme.lower(),
            username=username,
            password=password,
            host=unquote(host) or None,
            port=port,
            path=unquote(path),
            options=options,
        )

    def require(self, part: str, example: str) -> str:
        value = getattr(self, part)
        if not value:
            raise ConfigError(
                f"{self.scheme}:// URL is missing its {part}; expected {example}", field="provider"
            )
        return str(value)

    def option(self, name: str, default: str | None = None) -> str | None:
        self.read.add(name)
        return self.options.get(name, default)

    def first_option(self, *names: str) -> str | None:
        """The first of ``names`` given (each counts as read, given or not)."""
        values = [self.option(name) for name in names]
        return next((value for value in values if value), None)

    def sender(self) -> str | None:
        """The sender: the part after ``@``, else ``?from=``."""
        given = self.option("from")
        return self.host or given

    def flag(self, name: str, default: bool = False) -> bool:
        self.read.add(name)
        value = self.options.get(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(
            f"{self.scheme}:// option {name}={value!r} must be true or false", field=name
        )

    def number(self, name: str, default: float) -> float:
        self.read.add(name)
        value = self.options.get(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"{self.scheme}:// option {name}={value!r} must be a number", field=name
            ) from None

    def check_options(self, declared: Mapping[str, Any]) -> None:
        """Refuse an option the provider does not declare (naming the closest one) and a
        number or flag that does not read as one. ``declared``: name -> ``UrlOption``.

        Where the URL is read (``Gateway.from_url``, config load and ``config check``, the CLI),
        so a misspelled ``?base_ur=`` fails there instead of sending to the real provider.
        """
        for name in self.options:
            option = declared.get(name)
            if option is None:
                close = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(
                    f"{self.scheme}:// URL has no option {name!r}; {hint}"
                    f"it takes: {', '.join(sorted(declared))}",
                    field=name,
                )
            if option.kind == "number":
                self.number(name, 0.0)
            elif option.kind == "flag":
                self.flag(name)

    def masked(self) -> str:
        """The URL with every secret replaced by ``***`` (safe to print), as
        ``smsgate.redact.redact_url`` shows any URL."""
        creds = ""
        if self.username is not None:
            creds = quote(self.username, safe="")
            if self.password is not None:
                creds += ":" + quote(self.password, safe="")
            creds += "@"
        host = quote(self.host or "", safe="+")
        if self.port is not None:
            host += f":{self.port}"
        path = f"/{quote(self.path)}" if self.path else ""
        query = urlencode(self.options, safe=":/")
        return redact_url(f"{self.scheme}://{creds}{host}{path}" + (f"?{query}" if query else ""))


def split_url(url: str) -> tuple[str, str]:
    """(scheme://host:port, path) of an HTTP base URL; used to join provider paths."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
