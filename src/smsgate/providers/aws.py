"""AWS End User Messaging SMS (``pinpoint-sms-voice-v2``): ``SendTextMessage``, SNS events.

``aws://ACCESS_KEY_ID:SECRET_ACCESS_KEY@+14155550100?region=us-east-1&configuration_set=NAME``

Needs the ``[aws]`` extra (``pip install 'smsgate[aws]'``): requests are signed with SigV4 by
botocore's own signer, the well-kept implementation, never a hand-written one.

Options: ``region`` (default ``us-east-1``; the endpoint is ``sms-voice.{region}.amazonaws.com``),
``base_url`` (an emulator), ``configuration_set`` (``ConfigurationSetName``: where AWS sends
events, e.g. to an SNS topic), ``max_price`` (``MaxPrice`` per part, e.g. ``0.05``),
``ttl`` (``TimeToLive`` seconds, 5..259200; a message's ``validity`` wins), ``dry_run``
(``DryRun``: AWS checks and answers but sends nothing), ``message_type`` (``TRANSACTIONAL`` by
default, or ``PROMOTIONAL``), ``sns_cert_host`` (a regular expression the signing certificate
URL's host must match; default AWS's own ``sns.REGION.amazonaws.com``), ``sns_ca_file`` (PEM of
the CAs a signing certificate must chain to; default: the system's trusted CAs).

The wire contract, as botocore's service model for ``pinpoint-sms-voice-v2`` declares it (AWS
JSON 1.0): ``POST /`` with ``X-Amz-Target: PinpointSMSVoiceV2.SendTextMessage``, a JSON body
``{"DestinationPhoneNumber", "OriginationIdentity", "MessageBody", "MessageType",
"ConfigurationSetName", "MaxPrice", "TimeToLive", "Context", "DryRun"}``, answered
``{"MessageId"}``. Refusals are ``{"__type", "Message", "Reason", "Fields"}``:
``ValidationException`` (``INVALID_PARAMETER``, ``PRICE_OVER_THRESHOLD``...),
``ConflictException`` (``DESTINATION_PHONE_NUMBER_OPTED_OUT``), ``AccessDeniedException``,
``ThrottlingException``, ``ServiceQuotaExceededException``, ``ResourceNotFoundException``
(an unknown origination identity or configuration set), ``UnrecognizedClientException`` and
``InvalidSignatureException`` (credentials), ``InternalServerException``. AWS has no API to
look a text message up: there is no status fetch.

Delivery events (``TEXT_DELIVERED``, ``TEXT_BLOCKED``...) reach smsgate through an SNS topic the
configuration set publishes to, over an HTTPS subscription. ``Context`` carries our message id
as ``smsgate_id`` and comes back in every event.

Webhook authentication, plainly: SNS signs every message with an X.509 certificate. smsgate
checks that ``SigningCertURL`` is ``https`` on a host matching ``sns_cert_host`` (plain ``http``
only for a loopback host, i.e. an emulator), fetches the certificate once (cached), checks that
it chains to a trusted CA and is valid now, and verifies ``Signature`` over SNS's canonical
string (``SignatureVersion`` 1: SHA1withRSA, 2: SHA256withRSA). Anything else is refused.
A ``SubscriptionConfirmation`` is verified the same way and yields no event; confirm the
subscription by opening its ``SubscribeURL`` (it is in the message's ``raw``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

from smsgate.errors import (
    AuthError,
    ConfigError,
    InsufficientFunds,
    InvalidMessage,
    InvalidRecipient,
    OptedOut,
    ProviderUnavailable,
    RateLimited,
    SmsgateError,
    WebhookVerificationError,
)
from smsgate.message import DeliveryEvent, InboundMessage, Message, SendResult, Status
from smsgate.providers.base import (
    Capabilities,
    HttpProvider,
    UrlOption,
    WebhookRequest,
    retry_after,
)
from smsgate.providers.transport import HttpRequest, HttpResponse
from smsgate.providers.url import ProviderURL

URL_FORM = "aws://ACCESS_KEY_ID:SECRET@+14155550100?region=us-east-1&configuration_set=NAME"
TARGET = "PinpointSMSVoiceV2.SendTextMessage"
SIGNING_NAME = "sms-voice"
DEFAULT_CERT_HOST = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"

#: event types -> ours
EVENTS: dict[str, Status] = {
    "TEXT_PENDING": Status.QUEUED,
    "TEXT_QUEUED": Status.QUEUED,
    "TEXT_SENT": Status.SENT,
    "TEXT_SUCCESSFUL": Status.SENT,
    "TEXT_DELIVERED": Status.DELIVERED,
    "TEXT_BLOCKED": Status.UNDELIVERED,
    "TEXT_CARRIER_BLOCKED": Status.UNDELIVERED,
    "TEXT_CARRIER_UNREACHABLE": Status.UNDELIVERED,
    "TEXT_UNREACHABLE": Status.UNDELIVERED,
    "TEXT_INVALID": Status.FAILED,
    "TEXT_INVALID_MESSAGE": Status.FAILED,
    "TEXT_SPAM": Status.UNDELIVERED,
    "TEXT_TTL_EXPIRED": Status.EXPIRED,
    "TEXT_UNKNOWN": Status.UNKNOWN,
}
#: the fields SNS signs, in order, per message type
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical string: each signed field present, as ``name\\nvalue\\n``, in order."""
    fields = _SIGNED_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise WebhookVerificationError(f"unknown SNS message Type {message.get('Type')!r}")
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()


class AwsProvider(HttpProvider):
    scheme = "aws"
    display_name = "AWS End User Messaging SMS"
    default_base_url = "https://sms-voice.us-east-1.amazonaws.com"
    capabilities = Capabilities(
        delivery_webhooks=True,
        webhook_verification="SNS X.509 signature (certificate host, chain and validity checked)",
        inbound=True,
        idempotency="Context.smsgate_id (echoed in events; not deduplicated by AWS)",
        url_form=URL_FORM,
    )
    url_options = (
        UrlOption("region", "text", "the AWS region (us-east-1)"),
        UrlOption("configuration_set", "text", "ConfigurationSetName (where events go)"),
        UrlOption("max_price", "text", "MaxPrice per message part, e.g. 0.05"),
        UrlOption("ttl", "number", "TimeToLive in seconds (5..259200)"),
        UrlOption("dry_run", "flag", "DryRun: AWS checks the request and sends nothing (false)"),
        UrlOption("message_type", "text", "TRANSACTIONAL (default) or PROMOTIONAL"),
        UrlOption("sns_cert_host", "text", "regex the SNS SigningCertURL host must match"),
        UrlOption("sns_ca_file", "text", "PEM of CAs an SNS signing certificate must chain to"),
    )
    secret_username = False
    emulator = "smsgate.emulators.aws:AwsEmulator"

    def __init__(
        self,
        *,
        access_key_id: str,
        secret_access_key: str,
        region: str = "us-east-1",
        configuration_set: str | None = None,
        max_price: str | None = None,
        ttl: int | None = None,
        dry_run: bool = False,
        message_type: str = "TRANSACTIONAL",
        sns_cert_host: str = DEFAULT_CERT_HOST,
        sns_ca_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.status_callback:
            raise ConfigError(
                "aws:// takes no callback: AWS sends delivery events to the SNS topic of the "
                "configuration set (set configuration_set=, and subscribe your endpoint to it)",
                field="callback",
            )
        try:
            from botocore.credentials import Credentials
        except ImportError:
            raise ConfigError(
                "aws:// needs botocore for SigV4 signing: pip install 'smsgate[aws]'",
                field="provider",
            ) from None
        if max_price is not None and not re.fullmatch(r"[0-9]{0,2}\.[0-9]{1,5}", max_price):
            raise ConfigError(
                f"aws:// option max_price={max_price!r} must be a price like 0.05 (AWS MaxPrice)",
                field="max_price",
            )
        if ttl is not None and not 5 <= ttl <= 259200:
            raise ConfigError("aws:// option ttl must be 5..259200 seconds", field="ttl")
        if message_type not in ("TRANSACTIONAL", "PROMOTIONAL"):
            raise ConfigError(
                "aws:// option message_type must be TRANSACTIONAL or PROMOTIONAL",
                field="message_type",
            )
        try:
            self._cert_host = re.compile(sns_cert_host)
        except re.error as exc:
            raise ConfigError(
                f"aws:// option sns_cert_host is not a regular expression ({exc})",
                field="sns_cert_host",
            ) from None
        self._credentials = Credentials(access_key_id, secret_access_key)
        self.access_key_id = access_key_id
        self.region = region
        self.configuration_set = configuration_set
        self.max_price = max_price
        self.ttl = ttl
        self.dry_run = dry_run
        self.message_type = message_type
        self._ca_file = sns_ca_file
        self._certs: dict[str, Any] = {}
        self._certs_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        region = url.option("region") or "us-east-1"
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise ConfigError(
                f"aws:// option region={region!r} is not an AWS region", field="region"
            )
        options = cls.common_options(url)
        if options.get("base_url") is None:
            options["base_url"] = f"https://sms-voice.{region}.amazonaws.com"
        ttl = url.number("ttl", 0.0)
        return cls(
            name=name,
            access_key_id=url.require("username", URL_FORM),
            secret_access_key=url.require("password", URL_FORM),
            sender=url.sender(),
            region=region,
            configuration_set=url.option("configuration_set"),
            max_price=url.option("max_price"),
            ttl=int(ttl) if ttl else None,
            dry_run=url.flag("dry_run", False),
            message_type=(url.option("message_type") or "TRANSACTIONAL").upper(),
            sns_cert_host=url.option("sns_cert_host") or DEFAULT_CERT_HOST,
            sns_ca_file=url.option("sns_ca_file"),
            **options,
        )

    def supported_options(self) -> frozenset[str]:
        return frozenset({"Keyword", "DestinationCountryParameters", "ProtectConfigurationId"})

    # -- send -----------------------------------------------------------------------------

    def build_send_request(self, message: Message) -> HttpRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        payload: dict[str, Any] = {
            "DestinationPhoneNumber": message.to,
            "OriginationIdentity": self.sender_for(message),
            "MessageBody": message.body,
            "MessageType": self.message_type,
            "Context": {"smsgate_id": message.id},
        }
        if self.configuration_set:
            payload["ConfigurationSetName"] = self.configuration_set
        if self.max_price:
            payload["MaxPrice"] = self.max_price
        ttl = message.validity or self.ttl
        if ttl:
            payload["TimeToLive"] = max(5, min(259200, int(ttl)))
        if self.dry_run:
            payload["DryRun"] = True
        payload.update(self.options_for(message))
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": TARGET,
            "Accept": "application/json",
        }
        # botocore signs exactly what goes out: the URL, these headers and this body.
        signed = AWSRequest(method="POST", url=f"{self.base_url}/", data=body, headers=headers)
        SigV4Auth(self._credentials, SIGNING_NAME, self.region).add_auth(signed)
        return HttpRequest("POST", "/", data=body, headers=dict(signed.headers.items()))

    def parse_send_response(self, message: Message, response: HttpResponse) -> SendResult:
        body = response.json()
        return self.result(
            message,
            # A dry run is checked and answered but never sent.
            status=Status.CANCELED if self.dry_run else Status.QUEUED,
            provider_message_id=body.get("MessageId"),
            raw=body,
        )

    def map_error_response(self, response: HttpResponse, message: Message) -> SmsgateError:
        body = response.json()
        body = body if isinstance(body, dict) else {}
        kind = str(body.get("__type") or response.headers.get("x-amzn-ErrorType") or "")
        kind = kind.rpartition("#")[2].partition(":")[0]
        reason = str(body.get("Reason") or "")
        text = str(body.get("Message") or body.get("message") or kind or "no error body")
        fields = [f.get("Name") for f in body.get("Fields") or [] if isinstance(f, dict)]
        code = f"{kind}:{reason}" if reason else kind or str(response.status)
        if kind in ("UnrecognizedClientException", "InvalidSignatureException"):
            return AuthError(f"AWS refused the credentials in the aws:// URL ({text})", code=code)
        if kind == "AccessDeniedException":
            return AuthError(f"AWS denied SendTextMessage ({reason or text})", code=code)
        if kind == "ThrottlingException" or response.status == 429:
            return RateLimited(
                f"AWS is throttling: {text}", code=code, retry_after=retry_after(response, 1.0)
            )
        if kind == "ConflictException" and reason == "DESTINATION_PHONE_NUMBER_OPTED_OUT":
            return OptedOut(
                f"recipient {message.to} opted out of messages from {self.sender_for(message)}",
                code=code,
                field="to",
            )
        if kind == "ServiceQuotaExceededException":
            return InsufficientFunds(
                f"an AWS SMS quota or spend limit is reached: {text}", code=code
            )
        if kind == "ResourceNotFoundException":
            return ProviderUnavailable(
                f"AWS does not know {body.get('ResourceType') or 'a resource'} "
                f"{body.get('ResourceId') or ''}: fix the sender or configuration_set in the "
                "aws:// URL",
                code=code,
            )
        if "DestinationPhoneNumber" in fields:
            return InvalidRecipient(
                f"AWS refused recipient {message.to}: {text}", code=code, field="to"
            )
        if "OriginationIdentity" in fields or reason.startswith("SENDER_ID"):
            return self.sender_refused(message, f"AWS refused the sender: {text}", code=code)
        if response.status < 500:
            return InvalidMessage(f"AWS refused the message: {text}", code=code)
        return self.map_http_status(response, detail=text, code=code)

    # -- SNS webhooks -------------------------------------------------------------------------

    def _sns(self, request: WebhookRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict) or not body.get("Type") or not body.get("Signature"):
            raise WebhookVerificationError("not a signed SNS message", provider=self.name)
        return body

    def _certificate(self, url: str) -> Any:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = False
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise WebhookVerificationError(
                "SNS SigningCertURL is not https", provider=self.name, field="SigningCertURL"
            )
        if not self._cert_host.fullmatch(host) or not parts.path.endswith(".pem"):
            raise WebhookVerificationError(
                f"SNS SigningCertURL host {host!r} is not trusted (sns_cert_host)",
                provider=self.name,
                field="SigningCertURL",
            )
        with self._certs_lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        import urllib.request

        from cryptography import x509

        try:
            # Fetched once per URL and cached: SNS rotates certificates rarely.
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - checked above
                pem = answer.read(65536)
            cert = x509.load_pem_x509_certificate(pem)
        except (OSError, ValueError) as exc:
            raise WebhookVerificationError(
                f"could not load the SNS signing certificate ({type(exc).__name__})",
                provider=self.name,
            ) from None
        self._check_chain(cert)
        with self._certs_lock:
            self._certs[url] = cert
        return cert

    def _check_chain(self, cert: Any) -> None:
        from cryptography import x509
        from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

        if self._ca_file:
            with open(self._ca_file, "rb") as handle:
                roots = x509.load_pem_x509_certificates(handle.read())
        else:
            import ssl

            paths = ssl.get_default_verify_paths()
            try:
                with open(paths.cafile or "/etc/ssl/certs/ca-certificates.crt", "rb") as handle:
                    roots = x509.load_pem_x509_certificates(handle.read())
            except OSError:
                raise WebhookVerificationError(
                    "no CA bundle to check the SNS signing certificate; set sns_ca_file",
                    provider=self.name,
                ) from None
        host = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(host[0].value) if host else ""
        verifier = (
            PolicyBuilder()
            .store(Store(roots))
            .time(datetime.fromtimestamp(self.clock.time(), UTC))
            .build_server_verifier(x509.DNSName(name))
        )
        try:
            verifier.verify(cert, [])
        except (VerificationError, ValueError) as exc:
            raise WebhookVerificationError(
                f"the SNS signing certificate does not chain to a trusted CA ({exc})",
                provider=self.name,
            ) from None

    def verify_webhook(self, request: WebhookRequest) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        message = self._sns(request)
        version = str(message.get("SignatureVersion") or "1")
        algorithm: hashes.HashAlgorithm = hashes.SHA256() if version == "2" else hashes.SHA1()  # noqa: S303
        if version not in ("1", "2"):
            raise WebhookVerificationError(
                f"SNS SignatureVersion {version!r} is not known", provider=self.name
            )
        cert = self._certificate(str(message.get("SigningCertURL") or ""))
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookVerificationError("SNS certificate key is not RSA", provider=self.name)
        try:
            signature = base64.b64decode(str(message["Signature"]), validate=True)
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        except (InvalidSignature, ValueError):
            raise WebhookVerificationError(
                "SNS signature does not match the message", provider=self.name
            ) from None

    def _event(self, request: WebhookRequest) -> tuple[dict[str, Any], dict[str, Any] | None]:
        sns = self._sns(request)
        if sns.get("Type") != "Notification":
            return sns, None
        try:
            event = json.loads(str(sns.get("Message") or ""))
        except ValueError:
            return sns, None
        return sns, event if isinstance(event, dict) else None

    def parse_status_webhook(self, request: WebhookRequest) -> list[DeliveryEvent]:
        sns, event = self._event(request)
        if event is None or not str(event.get("eventType") or "").startswith("TEXT_"):
            return []
        event_type = str(event["eventType"])
        status = EVENTS.get(event_type, Status.UNKNOWN)
        bad = status in (Status.UNDELIVERED, Status.FAILED, Status.EXPIRED)
        context = event.get("context") or {}
        stamp = event.get("eventTimestamp")
        parts = event.get("totalMessageParts")
        return [
            DeliveryEvent(
                provider=self.name,
                provider_message_id=str(event.get("messageId") or ""),
                status=status,
                # SNS's MessageId is signed, and the same on SNS's own retries.
                event_id=str(sns.get("MessageId") or request.event_digest()),
                occurred_at=(
                    datetime.fromtimestamp(stamp / 1000, UTC)
                    if isinstance(stamp, int | float)
                    else None
                ),
                message_id=str(context["smsgate_id"]) if context.get("smsgate_id") else None,
                to=str(event.get("destinationPhoneNumber") or "") or None,
                error_code=event_type if bad else None,
                reason=str(
                    event.get("messageStatusDescription") or event.get("messageStatus") or ""
                ),
                opted_out=event_type == "TEXT_BLOCKED"
                and "opt" in str(event.get("messageStatusDescription") or "").lower(),
                parts=parts if isinstance(parts, int) else None,
                raw=event,
            )
        ]

    def parse_inbound_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        _, event = self._event(request)
        if event is None or "originationNumber" not in event:
            return []
        if not event.get("inboundMessageId"):
            raise WebhookVerificationError(
                "AWS inbound SMS without inboundMessageId", provider=self.name
            )
        return [
            InboundMessage(
                provider=self.name,
                provider_message_id=str(event["inboundMessageId"]),
                sender=str(event["originationNumber"]),
                to=str(event.get("destinationNumber") or ""),
                body=str(event.get("messageBody") or ""),
                raw=event,
            )
        ]
