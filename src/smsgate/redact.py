"""The package's one redaction: a URL (or settings value) as logs, errors, reprs and ``config
check`` may show it.

One format everywhere: every secret becomes ``***`` in place, so the shape of the URL stays
readable. What is secret comes from the provider descriptors (a user part that is an API key,
options declared ``secret``); beyond that, errs on the side of hiding:

- a password is always hidden; the user part is shown only where it is a login name: a
  provider declaring it public (with a password after it) or a database login; an http(s)
  user part, a lone key (``telnyx://KEY@...``) and any unknown scheme's are hidden whole;
- a query value is hidden when the provider declares the option secret or its name looks like a
  secret; every query value of an http(s) URL is hidden (a webhook's query often is its token);
  a value that is itself a URL is redacted by the same rules;
- a fragment is hidden;
- text that does not parse as a URL is read the same way, its user part and query values
  hidden.

Written here rather than with ``urllib.parse``: a password may hold ``/``, ``?``, ``#`` or ``@``
unencoded, and a sender such as ``+15017122661`` is not a host urlsplit accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

__all__ = ["REDACTED", "redact_settings", "redact_url", "secret_name"]

REDACTED = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: names of settings and query options whose values are secrets wherever they appear
#: ("proxy": a proxy URL may carry user:password@; "hash": SMSPM's API hash)
_SECRET_NAME = re.compile(
    r"pass|secret|token|key|auth|signature|sig\b|credential|hash|proxy", re.IGNORECASE
)
#: schemes whose user part is a login name, not a credential, even without a password
_LOGIN_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
_HTTP_SCHEMES = frozenset({"http", "https"})


def secret_name(name: str) -> bool:
    """Whether a setting or option called ``name`` holds a secret by its name alone."""
    return _SECRET_NAME.search(name) is not None


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***`` (safe to print).

    ``twilio://AC123:TOKEN@+1555?base_url=http://127.0.0.1:8001`` ->
    ``twilio://AC123:***@+1555?base_url=http://127.0.0.1:8001``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or _SCHEME.fullmatch(scheme) is None:
        # Not a URL at all (a typo such as "twilio:/SID:TOKEN@..."): everything that might be a
        # credential is hidden, as in an http(s) URL.
        scheme, rest = "", url
    scheme = scheme.lower()
    public_user, secret_options = _declared(scheme) if scheme else (False, frozenset())
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    location, after = rest[:cut], rest[cut:]
    if "@" in after and "@" not in location and "/" not in location:
        # "user:pa?ss@host": the part before "?" may be half a password
        location, after = REDACTED + "@" + after.rpartition("@")[2], ""
    elif "@" in location:
        creds, _, host = location.rpartition("@")
        user, colon, _ = creds.partition(":")
        login = colon or scheme in _LOGIN_SCHEMES
        shown_user = user if (login and user and public_user) else REDACTED
        location = shown_user + (f":{REDACTED}" if colon and shown_user != REDACTED else "")
        location += "@" + host
    query, hash_mark, _ = after.partition("#")
    if not scheme and "@" not in location and ":" in location:
        location = REDACTED  # "SID:TOKEN" without its scheme
    shown = f"{scheme}://{location}" if scheme else location
    if query.startswith("?"):
        shown += "?" + _redact_query(query[1:], scheme, secret_options)
    if hash_mark:
        shown += f"#{REDACTED}"
    return shown


def redact_settings(value: Any) -> Any:
    """A copy of a settings tree with secret-named values and the secrets in URLs replaced."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if secret_name(str(key)) else redact_settings(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_settings(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _redact_query(query: str, scheme: str, secret_options: frozenset[str]) -> str:
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not equals:
            pairs.append(pair)
            continue
        decoded = unquote(name)
        if (
            scheme in _HTTP_SCHEMES
            or not scheme
            or decoded in secret_options
            or secret_name(decoded)
        ):
            value = REDACTED
        elif "://" in unquote(value):
            value = redact_url(unquote(value))
        pairs.append(f"{name}={value}")
    return "&".join(pairs)


def _declared(scheme: str) -> tuple[bool, frozenset[str]]:
    """(the user part is public, the secret option names) for ``scheme``."""
    if scheme in _LOGIN_SCHEMES:
        return True, frozenset()
    # Imported here: the providers import this module for their own error messages.
    from smsgate.errors import ConfigError
    from smsgate.providers import provider_class

    try:
        cls = provider_class(scheme)
    except ConfigError:
        return False, frozenset()  # unknown: hide the user part too
    options = frozenset(o.name for o in cls.declared_options().values() if o.secret)
    return not cls.secret_username, options
