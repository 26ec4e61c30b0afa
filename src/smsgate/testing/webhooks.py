"""Post correctly signed provider webhooks to your app: delivery receipts, inbound texts, STOP.

The requests are built and signed by the provider emulators themselves (the same code ``smsgate
emulate`` runs, sharing the signing functions the providers verify with): an emulator configured
with the provider URL's credentials builds its callback, and instead of sending it over the
network :class:`WebhookSigner` hands the request back. :func:`post_webhook` then posts it through
your framework's test client (Django ``Client``, Flask ``FlaskClient``, Starlette/FastAPI
``TestClient``) or, given a base URL, over real HTTP.

>>> responses = post_receipt(client, "/sms/webhooks/twilio/status",
...                          provider_url=TWILIO_URL, message_id="SM123", to="+15555550100")
>>> post_stop(client, "/sms/webhooks/twilio/inbound", provider_url=TWILIO_URL,
...           sender="+15555550100", to="+15017122661")

Telnyx signs with a private key the app never has: give the emulator's ``signing_key`` (a
base64 32-byte seed) and configure the app's ``telnyx://`` URL with the matching ``public_key``
(:func:`telnyx_keys` makes a pair).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from smsgate.emulators.base import Emulator

#: the base URL each framework's test client puts in the requests it makes
TEST_CLIENT_BASES = {
    "django": "http://testserver",
    "flask": "http://localhost",
    "starlette": "http://testserver",
}


@dataclass(frozen=True)
class SignedRequest:
    """A webhook as the provider would send it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def path(self) -> str:
        """Path and query, for test clients."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream")


def telnyx_keys() -> tuple[str, str]:
    """A fresh Telnyx-style Ed25519 pair: (signing_key for the helpers, public_key for the URL)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed).decode(), base64.b64encode(public).decode()


class WebhookSigner:
    """Builds one provider's signed webhooks with that provider's emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._captured: list[SignedRequest] = []
        # The emulator posts through ``_webhook``; keep its requests instead.
        emulator._webhook = self._capture  # type: ignore[method-assign]

    @classmethod
    def for_url(cls, provider_url: str, *, signing_key: str | None = None) -> WebhookSigner:
        """A signer holding the secrets of ``provider_url`` (the URL in your config)."""
        from smsgate.errors import ConfigError, UnsupportedFeature
        from smsgate.providers.url import ProviderURL

        url = ProviderURL.parse(provider_url)
        credentials = url.username or ""
        if url.password is not None:
            credentials += f":{url.password}"
        emulator: Emulator
        if url.scheme == "twilio":
            from smsgate.emulators.twilio import TwilioEmulator

            emulator = TwilioEmulator(credentials=credentials)
        elif url.scheme == "plivo":
            from smsgate.emulators.plivo import PlivoEmulator

            emulator = PlivoEmulator(credentials=credentials)
        elif url.scheme == "vonage":
            from smsgate.emulators.vonage import VonageEmulator

            secret = url.option("signature_secret")
            if not secret:
                raise ConfigError(
                    "the vonage:// URL has no signature_secret: its webhooks cannot be signed",
                    field="signature_secret",
                )
            emulator = VonageEmulator(
                credentials=credentials,
                signature_secret=secret,
                signature_method=url.option("signature_method") or "md5hash",
            )
        elif url.scheme == "smsroute":
            from smsgate.emulators.smsroute import SmsrouteEmulator

            secret = url.option("webhook_secret")
            if not secret:
                raise ConfigError(
                    "the smsroute:// URL has no webhook_secret: its webhooks cannot be signed",
                    field="webhook_secret",
                )
            emulator = SmsrouteEmulator(credentials=credentials, webhook_secret=secret)
        elif url.scheme == "telnyx":
            from smsgate.emulators.telnyx import TelnyxEmulator

            if not signing_key:
                raise ConfigError(
                    "Telnyx webhooks are signed with a private key: pass signing_key= (see "
                    "smsgate.testing.telnyx_keys) and put its public_key in the telnyx:// URL",
                    field="signing_key",
                )
            emulator = TelnyxEmulator(credentials=credentials, signing_key=signing_key)
        else:
            raise UnsupportedFeature(
                f"{url.scheme}:// sends no signed webhooks smsgate can build", field="provider"
            )
        return cls(emulator)

    def receipts(
        self,
        url: str,
        *,
        message_id: str,
        to: str,
        status: str = "delivered",
        sender: str | None = None,
        body: str = "",
        reference: str | None = None,
    ) -> list[SignedRequest]:
        """The provider's delivery callbacks for its message ``message_id`` ending in ``status``
        (an emulator outcome: delivered, undelivered, failed, ...), in the order it sends them
        (Twilio, Plivo and Telnyx report ``sent`` first)."""
        from smsgate.emulators.base import EmulatedMessage

        message = EmulatedMessage(
            id=message_id,
            to=to,
            sender=sender or str(getattr(self.emulator, "default_sender", "")),
            body=body,
            status="sent",
            created_at=time.time(),
            reference=reference,
            callback_url=url,
            fields={"method": "POST", "part_ids": [message_id], "reference": reference},
        )
        return self._run(self.emulator.deliver_callback(message, status))

    def inbound(
        self, url: str, *, sender: str, to: str, body: str, media: Iterable[str] = ()
    ) -> SignedRequest:
        """The provider's webhook for a text ``sender`` sent to our number ``to``."""
        (request,) = self._run(self.emulator.post_inbound(url, sender, to, body, list(media)))
        return request

    def stop(self, url: str, *, sender: str, to: str, word: str = "STOP") -> SignedRequest:
        """``sender`` replying STOP to our number ``to``."""
        return self.inbound(url, sender=sender, to=to, body=word)

    def _run(self, coro: Coroutine[Any, Any, Any]) -> list[SignedRequest]:
        self._captured = []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)
        else:  # called from async test code: build on a loop of our own
            error: list[BaseException] = []

            def run() -> None:
                try:
                    asyncio.run(coro)
                except BaseException as exc:
                    error.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
            if error:
                raise error[0]
        return list(self._captured)

    async def _capture(self, method: str, url: str, **kwargs: Any) -> int:
        headers = dict(kwargs.get("headers") or {})
        data, payload = kwargs.get("data"), kwargs.get("json")
        if payload is not None:
            body = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(data, dict):
            body = urlencode(data).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(data, bytes | str):
            body = data.encode() if isinstance(data, str) else data
        else:
            body = b""
        self._captured.append(SignedRequest(method, url, headers, body))
        return 200


# -- posting ----------------------------------------------------------------------------------


def client_base(client: Any) -> str | None:
    """The base URL ``client``'s requests carry (None: ``client`` is a real base URL)."""
    if isinstance(client, str):
        return client.rstrip("/")
    module = type(client).__module__
    if module.startswith("django."):
        return TEST_CLIENT_BASES["django"]
    if module.startswith(("flask.", "werkzeug.")):
        return TEST_CLIENT_BASES["flask"]
    base_url = getattr(client, "base_url", None)
    if base_url is not None:  # httpx-based clients (Starlette/FastAPI TestClient)
        return str(base_url).rstrip("/")
    raise TypeError(
        f"cannot post with a {type(client).__name__}: pass a Django Client, a Flask test client, "
        "a Starlette/FastAPI TestClient, or a base URL such as http://127.0.0.1:8000"
    )


def post_webhook(client: Any, request: SignedRequest) -> Any:
    """Post ``request`` through ``client``; returns the client's response (for a base URL
    string, ``(status, body bytes)``)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
    module = type(client).__module__
    if isinstance(client, str):
        return _post_http(request)
    if module.startswith("django."):
        return client.generic(
            request.method,
            request.path,
            data=request.body,
            content_type=request.content_type,
            headers=headers,
        )
    if module.startswith(("flask.", "werkzeug.")):
        return client.open(
            request.path,
            method=request.method,
            data=request.body,
            headers=headers,
            content_type=request.content_type,
        )
    return client.request(
        request.method,
        request.path,
        content=request.body,
        headers={**headers, "Content-Type": request.content_type},
    )


def _post_http(request: SignedRequest) -> tuple[int, bytes]:
    http = urllib.request.Request(  # noqa: S310 - a test's own server
        request.url,
        data=request.body if request.method != "GET" else None,
        headers=request.headers,
        method=request.method,
    )
    try:
        with urllib.request.urlopen(http, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _signer(provider_url: str, signing_key: str | None) -> WebhookSigner:
    return WebhookSigner.for_url(provider_url, signing_key=signing_key)


def _target(client: Any, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    base = client_base(client)
    return f"{base}{path}"


def post_receipt(
    client: Any,
    path: str,
    *,
    provider_url: str,
    message_id: str,
    to: str,
    status: str = "delivered",
    sender: str | None = None,
    signing_key: str | None = None,
) -> list[Any]:
    """Post the provider's signed delivery receipt(s) for its message ``message_id`` to
    ``path`` (or a full URL: what the app believes it is reached at, e.g. its ``public_url``)."""
    signer = _signer(provider_url, signing_key)
    requests = signer.receipts(
        _target(client, path), message_id=message_id, to=to, status=status, sender=sender
    )
    return [post_webhook(client, r) for r in requests]


def post_inbound(
    client: Any,
    path: str,
    *,
    provider_url: str,
    sender: str,
    to: str,
    body: str,
    media: Iterable[str] = (),
    signing_key: str | None = None,
) -> Any:
    """Post the provider's signed webhook for a text ``sender`` sent to our number ``to``."""
    request = _signer(provider_url, signing_key).inbound(
        _target(client, path), sender=sender, to=to, body=body, media=media
    )
    return post_webhook(client, request)


def post_stop(
    client: Any,
    path: str,
    *,
    provider_url: str,
    sender: str,
    to: str,
    word: str = "STOP",
    signing_key: str | None = None,
) -> Any:
    """Post ``sender``'s signed STOP reply to our number ``to``."""
    return post_inbound(
        client,
        path,
        provider_url=provider_url,
        sender=sender,
        to=to,
        body=word,
        signing_key=signing_key,
    )
