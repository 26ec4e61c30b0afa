"""Provider URLs in Apprise's habit: ``scheme://credentials@sender?options``.

``twilio://SID:TOKEN@+15017122661?base_url=http://127.0.0.1:8001``. The user and password parts are
percent-decoded; the sender may be a number (``+`` kept) or an alphanumeric id. Parsing never echoes
a secret back in an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from smsgate.errors import ConfigError

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
        return self.options.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
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
        value = self.options.get(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"{self.scheme}:// option {name}={value!r} must be a number", field=name
            ) from None

    def masked(self) -> str:
        """The URL with every secret replaced by ``***`` (safe to print)."""
        creds = ""
        if self.username:
            user = "***" if self.scheme in _USER_IS_SECRET else quote(self.username, safe="")
            creds = user + (":***" if self.password is not None else "") + "@"
        host = self.host or ""
        if self.port is not None:
            host += f":{self.port}"
        path = f"/{self.path}" if self.path else ""
        opts = "&".join(
            f"{k}={'***' if _is_secret_option(k) else v}" for k, v in self.options.items()
        )
        return f"{self.scheme}://{creds}{host}{path}" + (f"?{opts}" if opts else "")


# Schemes whose user part is itself a secret (an API key, or SMSPM's hash).
_USER_IS_SECRET = {"telnyx", "smsroute", "smspm"}


def _is_secret_option(name: str) -> bool:
    lowered = name.lower()
    # "proxy": a proxy URL may carry user:password@
    return any(
        word in lowered for word in ("secret", "token", "key", "password", "pass", "hash", "proxy")
    )


def split_url(url: str) -> tuple[str, str]:
    """(scheme://host:port, path) of an HTTP base URL; used to join provider paths."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
