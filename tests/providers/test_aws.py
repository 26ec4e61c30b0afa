from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smsgate
from smsgate.emulators.aws import AwsEmulator, SnsSigner
from smsgate.emulators.base import Emulator, EmulatorThread
from smsgate.errors import AuthError, ConfigError, InvalidMessage, WebhookVerificationError
from smsgate.message import Message, Status
from smsgate.providers import create_provider
from smsgate.providers.aws import AwsProvider
from smsgate.providers.base import WebhookRequest
from tests.providers.contract import GOOD, ProviderContract, with_options
from tests.support.webhooks import WebhookReceiver

pytest.importorskip("botocore", reason="the aws extra: pip install 'smsgate[aws]'")


_OTHER: list[SnsSigner] = []


def _other_ca() -> SnsSigner:
    """One signer with its own CA for the whole module (key generation is slow); its CA file is
    removed when the interpreter exits."""
    if not _OTHER:
        import atexit

        _OTHER.append(SnsSigner())
        _OTHER[0].write()
        atexit.register(Path(_OTHER[0].ca_file).unlink, missing_ok=True)
    return _OTHER[0]


class TestAwsContract(ProviderContract):
    emulator_cls = AwsEmulator
    wrong_credentials = "AKIAWRONG00000000000:wrongSecretAccessKey000000000000000000000"

    def provider_url(self, emulator: Emulator, **options: str) -> str:
        # Events reach smsgate through the configuration set's SNS topic, not a request field:
        # the emulator's SNS subscription endpoint stands for it.
        assert isinstance(emulator, AwsEmulator)
        callback = options.pop("callback", None)
        if callback:
            emulator.webhook_url = callback
        return super().provider_url(emulator, **options)

    def webhook_provider(self, emulator: Emulator, *, wrong_key: bool = False) -> Any:
        if wrong_key:
            # Another CA: the emulator's certificate does not chain to it.
            assert isinstance(emulator, AwsEmulator)
            other = _other_ca()
            return create_provider(
                emulator.provider_url().replace(
                    emulator.signer.ca_file.replace("/", "%2F"), other.ca_file.replace("/", "%2F")
                )
            )
        return create_provider(emulator.provider_url())

    def test_tampered_webhook_is_refused(
        self, emulator: EmulatorThread, webhook_receiver: WebhookReceiver
    ) -> None:
        # SNS signs fields, not bytes: whitespace around them changes nothing that is signed, so
        # the tampering here changes the signed event itself (a sent event made "delivered").
        [request, *_] = self._status_webhooks(emulator, webhook_receiver)
        tampered_body = request.body.replace(b"TEXT_SUCCESSFUL", b"TEXT_DELIVERED")
        assert tampered_body != request.body
        tampered = WebhookRequest(request.url, request.method, request.headers, tampered_body)
        provider = self.webhook_provider(emulator.emulator)
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(tampered)

    def secrets(self, emulator: Emulator) -> list[str]:
        assert isinstance(emulator, AwsEmulator)
        return [emulator.secret_access_key]


@pytest.fixture
def stranger() -> Iterator[SnsSigner]:
    """A signer with its own CA, which the emulator's provider URL does not trust."""
    signer = SnsSigner()
    signer.write()
    yield signer
    Path(signer.ca_file).unlink(missing_ok=True)


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = AwsEmulator().run_in_thread()
    yield running
    running.stop()


def _inner(emulator: EmulatorThread) -> AwsEmulator:
    assert isinstance(emulator.emulator, AwsEmulator)
    return emulator.emulator


def test_request_carries_the_options_and_a_botocore_sigv4_signature(
    emulator: EmulatorThread,
) -> None:
    inner = _inner(emulator)
    url = with_options(
        inner.provider_url(), configuration_set="events", max_price="0.05", ttl="600"
    )
    with smsgate.Gateway.from_url(url) as gateway:
        sent = gateway.send(GOOD, "hello")
    [stored] = inner.summary()["messages"]
    assert stored["id"] == sent.provider_message_id
    fields = stored["fields"]
    assert fields["configuration_set"] == "events" and fields["max_price"] == "0.05"
    assert fields["ttl"] == 600 and fields["context"] == {"smsgate_id": sent.id}


def test_max_price_below_the_price_is_refused(emulator: EmulatorThread) -> None:
    url = with_options(_inner(emulator).provider_url(), max_price="0.001")
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(InvalidMessage) as info:
        gateway.send(GOOD, "hello")
    assert "PRICE_OVER_THRESHOLD" in str(info.value.code)


def test_dry_run_is_answered_and_nothing_sent(emulator: EmulatorThread) -> None:
    url = with_options(_inner(emulator).provider_url(), dry_run="true")
    with smsgate.Gateway.from_url(url) as gateway:
        result = gateway.send(GOOD, "hello")
    assert result.provider_message_id and result.status is Status.CANCELED
    summary = _inner(emulator).summary()
    assert summary["messages"] == [] and summary["dry_runs"] == 1


def test_a_wrong_secret_fails_the_signature(emulator: EmulatorThread) -> None:
    inner = _inner(emulator)
    url = inner.provider_url().replace(inner.secret_access_key, "x" * 40)
    with smsgate.Gateway.from_url(url) as gateway, pytest.raises(AuthError) as info:
        gateway.send(GOOD, "hello")
    assert "InvalidSignatureException" in str(info.value.code)


@pytest.mark.parametrize(
    ("option", "field"),
    [
        ("max_price=5", "max_price"),
        ("ttl=2", "ttl"),
        ("region=mars", "region"),
        ("callback=https://x.example/c", "callback"),
        ("sns_cert_host=(", "sns_cert_host"),
    ],
)
def test_bad_options_name_the_field(option: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_provider(f"aws://AKID:SECRET@+15005550006?{option}")
    assert info.value.field == field


# -- SNS forgeries --------------------------------------------------------------------------------


def _signed_event(
    emulator: EmulatorThread, receiver: WebhookReceiver
) -> tuple[AwsProvider, WebhookRequest]:
    inner = _inner(emulator)
    inner.webhook_url = f"{receiver.url}/sns"
    with smsgate.Gateway.from_url(inner.provider_url()) as gateway:
        gateway.send(GOOD, "hello")
    request = receiver.wait(1, path="/sns")[0]
    provider = create_provider(inner.provider_url())
    assert isinstance(provider, AwsProvider)
    return provider, request


def _resigned(
    request: WebhookRequest, change: dict[str, Any], signer: SnsSigner | None
) -> WebhookRequest:
    message = {**json.loads(request.body), **change}
    if signer is not None:
        message["Signature"] = signer.sign(message)
    return WebhookRequest(request.url, "POST", request.headers, json.dumps(message).encode())


def test_sns_forgeries_are_refused(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver, stranger: SnsSigner
) -> None:
    provider, request = _signed_event(emulator, webhook_receiver)
    [event] = provider.handle_status_webhook(request)
    assert event.status is Status.SENT and event.message_id
    inner = _inner(emulator)
    forgeries = {
        "changed message": _resigned(request, {"Message": "{}"}, None),
        "other key, same cert url": _resigned(request, {"TopicArn": "arn:x"}, stranger),
        "cert on an untrusted host": _resigned(
            request, {"SigningCertURL": inner.cert_url.replace("127.0.0.1", "localhost")}, None
        ),
        "cert url not .pem": _resigned(request, {"SigningCertURL": inner.url + "/cert"}, None),
        "unknown version": _resigned(request, {"SignatureVersion": "3"}, None),
        "no signature": _resigned(request, {"Signature": ""}, None),
    }
    for name, forged in forgeries.items():
        with pytest.raises(WebhookVerificationError):
            provider.handle_status_webhook(forged)
            pytest.fail(name)


def test_certificate_from_another_ca_is_refused(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver, stranger: SnsSigner
) -> None:
    _, request = _signed_event(emulator, webhook_receiver)
    other_ca = stranger.ca_file
    inner = _inner(emulator)
    provider = create_provider(
        inner.provider_url().replace(
            inner.signer.ca_file.replace("/", "%2F"), other_ca.replace("/", "%2F")
        )
    )
    with pytest.raises(WebhookVerificationError, match="chain"):
        provider.handle_status_webhook(request)


# -- boto3, AWS's own client, against the emulator -----------------------------------------------


def test_boto3_sends_through_the_emulator(emulator: EmulatorThread) -> None:
    boto3 = pytest.importorskip("boto3")
    inner = _inner(emulator)
    client = boto3.client(
        "pinpoint-sms-voice-v2",
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id=inner.access_key_id,
        aws_secret_access_key=inner.secret_access_key,
    )
    answer = client.send_text_message(
        DestinationPhoneNumber=GOOD,
        OriginationIdentity="+15005550006",
        MessageBody="from boto3",
        ConfigurationSetName="events",
        MaxPrice="0.05",
        TimeToLive=300,
    )
    [stored] = inner.summary()["messages"]
    assert stored["id"] == answer["MessageId"] and stored["body"] == "from boto3"
    with pytest.raises(client.exceptions.ConflictException):
        client.send_text_message(
            DestinationPhoneNumber="+15005550004",
            OriginationIdentity="+15005550006",
            MessageBody="x",
        )
    bad = boto3.client(
        "pinpoint-sms-voice-v2",
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id=inner.access_key_id,
        aws_secret_access_key="y" * 40,
    )
    with pytest.raises(Exception, match="InvalidSignatureException"):
        bad.send_text_message(
            DestinationPhoneNumber=GOOD, OriginationIdentity="+15005550006", MessageBody="x"
        )


def test_message_model_matches_botocore() -> None:
    # The request fields smsgate sends are members of botocore's SendTextMessageRequest.
    import botocore.session

    model = botocore.session.get_session().get_service_model("pinpoint-sms-voice-v2")
    members = set(model.operation_model("SendTextMessage").input_shape.members)
    provider = create_provider(
        "aws://AKID:SECRET@+15005550006?configuration_set=c&max_price=0.05&ttl=60&dry_run=true"
    )
    request = provider.build_send_request(Message(to=GOOD, body="x"))
    assert isinstance(request.data, bytes)
    assert set(json.loads(request.data)) <= members
    assert request.headers["X-Amz-Target"] == "PinpointSMSVoiceV2.SendTextMessage"
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
