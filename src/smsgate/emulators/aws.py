"""An AWS End User Messaging SMS emulator: ``SendTextMessage`` with SigV4, events through SNS.

Run it with ``smsgate emulate aws --option webhook_url=https://.../sns`` (the URL of the HTTPS
subscription of the SNS topic a configuration set publishes to). It makes its own CA and an SNS
signing certificate at start, writes the CA to a file and prints it (``sns_ca_file=`` in the
aws:// URL; ``provider_url()`` includes it and the loopback ``sns_cert_host``). What it speaks:

- AWS JSON 1.0 ``POST /`` with ``X-Amz-Target: PinpointSMSVoiceV2.SendTextMessage``; the SigV4
  signature is recomputed with botocore from what arrived (``UnrecognizedClientException`` for an
  unknown key, ``InvalidSignatureException`` for a wrong signature); answers ``{"MessageId"}``;
  ``DryRun`` is checked and answered, nothing is sent;
- AWS's refusals ``{"__type", "Message", "Reason", "Fields"}``: Twilio's magic numbers as
  ``ValidationException`` (invalid recipient, ``DestinationPhoneNumber``),
  ``ConflictException``/``DESTINATION_PHONE_NUMBER_OPTED_OUT`` (also after an inbound STOP),
  ``ResourceNotFoundException`` (an origination identity the account does not own),
  ``ThrottlingException``; ``MaxPrice`` below the price is ``PRICE_OVER_THRESHOLD``;
- events as SNS ``Notification`` messages signed with SignatureVersion 2 (SHA256withRSA), the
  certificate served at ``/_emulator/sns-cert.pem``: ``TEXT_SUCCESSFUL``, then
  ``TEXT_DELIVERED``, ``TEXT_CARRIER_UNREACHABLE`` or ``TEXT_TTL_EXPIRED``; the message's
  ``Context`` comes back as ``context``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smsgate.emulators.base import EmulatedMessage, Emulator, possible_number
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.providers.aws import SIGNING_NAME, TARGET, sns_string_to_sign

PART_PRICE = 0.00581
#: the signing-certificate host pattern an emulator's provider URL trusts
LOOPBACK_HOST = r"127\.0\.0\.1"
TOPIC = "arn:aws:sns:us-east-1:123456789012:smsgate-emulator-events"
_FINALS: dict[str, tuple[str, str, str]] = {
    "delivered": ("TEXT_DELIVERED", "DELIVERED", "Message has been accepted by phone"),
    "undelivered": (
        "TEXT_CARRIER_UNREACHABLE",
        "CARRIER_UNREACHABLE",
        "Phone carrier is currently unreachable",
    ),
    "expired": ("TEXT_TTL_EXPIRED", "TTL_EXPIRED", "Message expired before delivery"),
}


def aws_error(kind: str, message: str, status: int = 400, **extra: Any) -> web.Response:
    body = {"__type": kind, "Message": message, **extra}
    return web.json_response(
        body,
        status=status,
        headers={"x-amzn-ErrorType": kind},
        content_type="application/x-amz-json-1.0",
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


class SnsSigner:
    """An own CA and an SNS signing certificate issued by it (RSA, as SNS uses).

    Built here rather than with trustme (:mod:`smsgate.emulators.tls`): trustme marks the
    subjectAltName critical beside a non-empty subject, which the web PKI path validation the
    provider runs (``cryptography.x509.verification``) refuses; real SNS certificates do not.
    """

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = _name("smsgate emulator SNS CA")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        host = "sns.us-east-1.amazonaws.com"
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(ca_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        #: where :meth:`write` puts the CA's PEM, for ``sns_ca_file=`` (written only when used,
        #: so an emulator that is never started leaves no file behind)
        self.ca_file = str(Path(tempfile.gettempdir()) / f"smsgate-{uuid.uuid4().hex}-sns-ca.pem")

    def write(self) -> str:
        Path(self.ca_file).write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        return self.ca_file

    def sign(self, message: dict[str, Any]) -> str:
        signature = self.key.sign(sns_string_to_sign(message), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()


class AwsEmulator(Emulator):
    name = "aws"
    default_credentials = "AKIAEMULATOR00000000:emulatorSecretAccessKey0000000000000000"
    default_sender = "+15005550006"
    outcome_names = tuple(_FINALS)
    stop_words = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "arret"})
    start_words = frozenset({"start", "unstop"})

    def __init__(self, *, webhook_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.access_key_id, _, self.secret_access_key = self.credentials.partition(":")
        #: the SNS subscription endpoint events are posted to
        self.webhook_url = webhook_url
        self.signer = SnsSigner()
        self.dry_runs = 0

    @property
    def cert_url(self) -> str:
        return f"{self.url}/_emulator/sns-cert.pem"

    def provider_url(self) -> str:
        return (
            f"aws://{self.credentials}@{self.default_sender}?base_url={self.url}"
            f"&region=us-east-1&sns_cert_host={quote(LOOPBACK_HOST, safe='')}"
            f"&sns_ca_file={quote(self.signer.ca_file, safe='')}"
        )

    def describe(self) -> list[str]:
        return [*super().describe(), f"SNS CA certificate (sns_ca_file=): {self.signer.ca_file}"]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/", self.dispatch)
        app.router.add_get("/_emulator/sns-cert.pem", self.certificate)

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "throttled":
            return aws_error("ThrottlingException", "Rate exceeded", status)
        return aws_error("ServiceUnavailableException", "Service unavailable", status)

    async def certificate(self, request: web.Request) -> web.Response:
        pem = self.signer.cert.public_bytes(serialization.Encoding.PEM)
        return web.Response(body=pem, content_type="application/x-pem-file")

    def _check_signature(self, request: web.Request, body: bytes) -> web.Response | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        header = request.headers.get("Authorization", "")
        try:
            algorithm, _, rest = header.partition(" ")
            parts = dict(p.strip().split("=", 1) for p in rest.split(","))
            key_id, _day, region, service, _ = parts["Credential"].split("/")
            signed_headers = parts["SignedHeaders"].split(";")
            given = parts["Signature"]
        except (KeyError, ValueError):
            return aws_error("MissingAuthenticationTokenException", "Missing Authentication Token")
        if algorithm != "AWS4-HMAC-SHA256" or key_id != self.access_key_id:
            return aws_error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        headers = {
            h: request.headers[h] for h in signed_headers if h != "host" and h in request.headers
        }
        rebuilt = AWSRequest(
            method=request.method,
            url=f"http://{request.host}{request.path_qs}",
            data=body,
            headers=headers,
        )
        rebuilt.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        auth = SigV4Auth(Credentials(key_id, self.secret_access_key), service, region)
        expected = auth.signature(
            auth.string_to_sign(rebuilt, auth.canonical_request(rebuilt)), rebuilt
        )
        if service != SIGNING_NAME or expected != given:
            return aws_error(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        return None

    async def dispatch(self, request: web.Request) -> web.Response:
        body = await request.read()
        if (denied := self._check_signature(request, body)) is not None:
            return denied
        if request.headers.get("X-Amz-Target") != TARGET:
            return aws_error("UnknownOperationException", "Unknown operation")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return aws_error("SerializationException", "Request body is not JSON")
        return self.send_text(data)

    def send_text(self, data: dict[str, Any]) -> web.Response:
        to = str(data.get("DestinationPhoneNumber") or "")
        sender = str(data.get("OriginationIdentity") or "")
        text = str(data.get("MessageBody") or "")
        for field, value in (("DestinationPhoneNumber", to), ("MessageBody", text)):
            if not value:
                return aws_error(
                    "ValidationException",
                    f"{field} is required",
                    Reason="MISSING_PARAMETER",
                    Fields=[{"Name": field, "Message": "required"}],
                )
        outcome = magic_outcome(to, sender)
        if outcome in (Outcome.INVALID_TO, Outcome.NOT_MOBILE) or not possible_number(to):
            return aws_error(
                "ValidationException",
                "Invalid destination phone number",
                Reason="INVALID_PARAMETER",
                Fields=[{"Name": "DestinationPhoneNumber", "Message": "not a valid E.164 number"}],
            )
        if outcome in (Outcome.UNREACHABLE, Outcome.REGION_NOT_ENABLED):
            return aws_error(
                "ValidationException",
                "Sending to this country is blocked",
                Reason="DESTINATION_COUNTRY_BLOCKED",
                Fields=[{"Name": "DestinationPhoneNumber", "Message": "country blocked"}],
            )
        if outcome is Outcome.OPTED_OUT or self.has_opted_out(to, sender):
            return aws_error(
                "ConflictException",
                "The destination phone number is opted out",
                Reason="DESTINATION_PHONE_NUMBER_OPTED_OUT",
                ResourceType="opt-out-list",
                ResourceId="Default",
            )
        if outcome in (Outcome.INVALID_FROM, Outcome.FROM_NOT_OWNED):
            return aws_error(
                "ResourceNotFoundException",
                "Origination identity not found",
                ResourceType="phone-number",
                ResourceId=sender,
            )
        if outcome is Outcome.FROM_QUEUE_FULL:
            return aws_error("ThrottlingException", "Rate exceeded")
        from smsgate.encoding import segments

        parts = max(1, segments(text).segments)
        max_price = data.get("MaxPrice")
        if max_price is not None and float(max_price) < PART_PRICE:
            return aws_error(
                "ValidationException",
                f"The price {PART_PRICE} is above MaxPrice {max_price}",
                Reason="PRICE_OVER_THRESHOLD",
                Fields=[{"Name": "MaxPrice", "Message": "below the message price"}],
            )
        message_id = str(uuid.uuid4())
        if data.get("DryRun"):
            self.dry_runs += 1
            return web.json_response(
                {"MessageId": message_id}, content_type="application/x-amz-json-1.0"
            )
        self.record(
            EmulatedMessage(
                id=message_id,
                to=to,
                sender=sender,
                body=text,
                status="PENDING",
                created_at=time.time(),
                callback_url=self.webhook_url,
                segments=parts,
                fields={
                    "context": data.get("Context") or {},
                    "configuration_set": data.get("ConfigurationSetName"),
                    "ttl": data.get("TimeToLive"),
                    "max_price": max_price,
                    "message_type": data.get("MessageType"),
                },
            )
        )
        return web.json_response(
            {"MessageId": message_id}, content_type="application/x-amz-json-1.0"
        )

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "dry_runs": self.dry_runs}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.signer.write()
        return await super().start(host, port)

    async def stop(self) -> None:
        await super().stop()
        # The CA file is this run's: a client configured with it cannot outlive the emulator.
        Path(self.signer.ca_file).unlink(missing_ok=True)

    # -- SNS ------------------------------------------------------------------------------------

    def sns_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A signed SNS Notification carrying ``payload`` as its Message."""
        message: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(payload),
            "Timestamp": dt.datetime.now(dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "SignatureVersion": "2",
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": f"{self.url}/_emulator/unsubscribe",
        }
        message["Signature"] = self.signer.sign(message)
        return message

    async def _publish(self, url: str, payload: dict[str, Any]) -> int:
        message = self.sns_message(payload)
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": message["MessageId"],
            "x-amz-sns-topic-arn": TOPIC,
        }
        return await self.post(url, data=json.dumps(message).encode(), headers=headers)

    def _event(self, m: EmulatedMessage, event_type: str, status: str, text: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {
            "eventType": event_type,
            "eventVersion": "1.0",
            "eventTimestamp": now,
            "isFinal": event_type != "TEXT_SUCCESSFUL",
            "originationPhoneNumber": m.sender,
            "destinationPhoneNumber": m.to,
            "isoCountryCode": "US",
            "messageId": m.id,
            "messageRequestTimestamp": int(m.created_at * 1000),
            "messageEncoding": "GSM",
            "messageType": m.fields.get("message_type") or "TRANSACTIONAL",
            "messageStatus": status,
            "messageStatusDescription": text,
            "totalMessageParts": m.segments,
            "totalMessagePrice": round(PART_PRICE * m.segments, 5),
            "totalCarrierFee": 0.00302,
            "context": m.fields.get("context") or {},
            "configurationSetName": m.fields.get("configuration_set"),
        }

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        assert message.callback_url is not None
        await self._publish(
            message.callback_url,
            self._event(
                message, "TEXT_SUCCESSFUL", "SUCCESSFUL", "Message has been accepted by carrier"
            ),
        )
        event_type, status, text = _FINALS.get(outcome, _FINALS["undelivered"])
        message.status = status
        await self._publish(message.callback_url, self._event(message, event_type, status, text))

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        self.track_keyword(sender, to, body)
        words = body.split()
        payload = {
            "originationNumber": sender,
            "destinationNumber": to,
            "messageKeyword": words[0].upper() if words else "",
            "messageBody": body,
            "inboundMessageId": str(uuid.uuid4()),
            "previousPublishedMessageId": None,
        }
        return await self._publish(url, payload)
