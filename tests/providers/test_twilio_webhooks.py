"""Twilio status callbacks: which URLs a signature may be over, and the fields parsed from them.

Signatures are made with the official twilio SDK's validator, independent of smsgate's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from smsgate.errors import WebhookVerificationError
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.twilio import TwilioProvider

TOKEN = "tok-secret"
FIELDS = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15555550100"}


def provider(public_url: str | None = None) -> TwilioProvider:
    url = f"twilio://AC1:{TOKEN}@+15005550006"
    if public_url:
        url += "?" + urlencode({"public_url": public_url})
    made = create_provider(url)
    assert isinstance(made, TwilioProvider)
    return made


def request(received_at: str, signed_url: str, fields: dict[str, str] = FIELDS) -> WebhookRequest:
    signature = RequestValidator(TOKEN).compute_signature(signed_url, fields)
    return WebhookRequest(
        url=received_at,
        method="POST",
        headers={"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": "t1"},
        body=urlencode(fields).encode(),
    )


PATH = "/webhooks/twilio/status?smsgate_id=msg_1"


@pytest.mark.parametrize(
    ("received_at", "signed_url", "public_url"),
    [
        ("https://gw.example.com" + PATH, "https://gw.example.com" + PATH, None),
        # a proxy added or removed the default port
        ("https://gw.example.com:443" + PATH, "https://gw.example.com" + PATH, None),
        ("https://gw.example.com" + PATH, "https://gw.example.com:443" + PATH, None),
        ("http://10.0.0.5:8080" + PATH, "http://10.0.0.5" + PATH, None),
        # Twilio called the public URL; the server sees its own
        (
            "http://10.0.0.5:8080" + PATH,
            "https://sms.example.com" + PATH,
            "https://sms.example.com",
        ),
        (
            "http://10.0.0.5:8080" + PATH,
            "https://sms.example.com:443" + PATH,
            "https://sms.example.com",
        ),
    ],
)
def test_a_signature_over_any_form_of_the_called_url_verifies(
    received_at: str, signed_url: str, public_url: str | None
) -> None:
    twilio = provider(public_url)
    (event,) = twilio.handle_status_webhook(request(received_at, signed_url))
    assert (event.provider_message_id, event.status.value, event.message_id) == (
        "SM1",
        "delivered",
        "msg_1",
    )
    twilio.verify_webhook(request(received_at, signed_url))


@pytest.mark.parametrize(
    ("received_at", "signed_url"),
    [
        ("https://gw.example.com" + PATH, "https://other.example.com" + PATH),
        ("https://gw.example.com" + PATH, "https://gw.example.com" + PATH + "&x=1"),
        ("https://gw.example.com" + PATH, "https://gw.example.com:8443" + PATH),
    ],
)
def test_a_signature_over_another_url_does_not(received_at: str, signed_url: str) -> None:
    with pytest.raises(WebhookVerificationError, match="does not match"):
        provider().handle_status_webhook(request(received_at, signed_url))


def test_a_tampered_field_does_not_verify() -> None:
    url = "https://gw.example.com" + PATH
    genuine = request(url, url)
    tampered = WebhookRequest(
        url=url,
        method="POST",
        headers=genuine.headers,
        body=urlencode({**FIELDS, "MessageStatus": "failed"}).encode(),
    )
    with pytest.raises(WebhookVerificationError):
        provider().handle_status_webhook(tampered)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2405011230", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("6812312359", datetime(2068, 12, 31, 23, 59, tzinfo=UTC)),
        ("6901010000", datetime(1969, 1, 1, 0, 0, tzinfo=UTC)),  # as strptime's %y reads it
        ("2402291200", datetime(2024, 2, 29, 12, 0, tzinfo=UTC)),
        ("2302291200", None),  # no such day
        ("2413011230", None),
        ("2405012430", None),
        ("2405011260", None),
        ("240501123", None),
        ("24050112300", None),
        ("24O5011230", None),
    ],
)
def test_the_providers_done_date_is_read_as_utc(raw: str, expected: datetime | None) -> None:
    url = "https://gw.example.com" + PATH
    fields = {**FIELDS, "RawDlrDoneDate": raw}
    (event,) = provider().handle_status_webhook(request(url, url, fields))
    assert event.occurred_at == expected
