"""Signature algorithms shared by provider clients and their emulators (one source of truth).

An emulator signs with the same function a client verifies with, and the tests cross-check these
against independent implementations (the official SDKs, or the documented algorithm re-written).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Base64(HMAC-SHA1(token, url + for each name in order, its distinct values in order)).

    Repeated identical name/value pairs count once, as in Twilio's own request validator.
    """
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, with its default port added, and with any port removed.

    Proxies and load balancers rewrite ports, and Twilio signs the URL it was given: accept each.
    """
    parts = urlsplit(url)
    variants = [url]
    if parts.port is not None:
        variants.append(urlunsplit(parts._replace(netloc=parts.hostname or "")))
    else:
        default = 443 if parts.scheme == "https" else 80
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.hostname}:{default}")))
    return variants


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


#: the query parameter that carries a URL token, for providers that sign no webhook
TOKEN_PARAM = "smsgate_token"


def url_token_matches(url: str, token: str) -> bool:
    """Whether ``url``'s ``smsgate_token`` query parameter is ``token`` (constant time).

    For providers that sign no webhook (Infobip, Clickatell): a secret in the URL only proves the
    caller knew the URL, not what the body says, which the docs say where such a provider is.
    """
    from urllib.parse import parse_qsl

    given = [v for k, v in parse_qsl(url.partition("?")[2]) if k == TOKEN_PARAM]
    return len(given) == 1 and constant_time_equal(given[0], token)


def check_url_token(
    url: str, token: str | None, *, provider: str, display_name: str, scheme: str, noun: str
) -> None:
    """Authenticate a webhook of a provider that signs none by its URL token, or raise
    :class:`WebhookVerificationError` (also when no ``webhook_token=`` is configured).

    ``noun`` is what the provider calls its webhooks ("webhook", "callback").
    """
    from smsgate.errors import WebhookVerificationError

    if not token:
        raise WebhookVerificationError(
            f"{display_name} signs no {noun}, so smsgate checks a secret token in the URL, and "
            f"none is configured: set webhook_token= in the {scheme}:// URL",
            provider=provider,
            field="webhook_token",
        )
    if not url_token_matches(url, token):
        raise WebhookVerificationError(
            f"{display_name} {noun} without the right {TOKEN_PARAM} in its URL", provider=provider
        )
