"""Interop with code nobody here wrote: the official ``twilio`` package against our emulator,
and Twilio's ``RequestValidator`` against our signatures (both directions).

The SDK is pointed at the emulator the supported way: ``client.api.base_url`` (the ``Api`` domain
of ``twilio.rest.Client`` builds every Messages URL from it). Nothing else is patched.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from multidict import MultiDict
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from smsgate.emulators.base import EmulatorThread, Faults
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.errors import WebhookVerificationError
from smsgate.providers import create_provider
from smsgate.providers.base import WebhookRequest
from smsgate.providers.signing import twilio_signature
from smsgate.providers.twilio import TwilioProvider
from tests.support.webhooks import WebhookReceiver

TO = "+15558675310"
FROM = "+15005550006"
IMAGE = "https://c1.staticflickr.com/3/2899/14341091933_1e92e62d12_b.jpg"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    running = TwilioEmulator(faults=Faults(seed=1)).run_in_thread()
    yield running
    running.stop()


def sdk_client(emulator: EmulatorThread, token: str | None = None) -> Client:
    sid, _, real_token = emulator.emulator.credentials.partition(":")
    client = Client(sid, token or real_token)
    client.api.base_url = emulator.url
    return client


def stored(emulator: EmulatorThread) -> list[dict[str, object]]:
    summary = emulator.call(emulator.emulator.summary)
    messages: list[dict[str, object]] = summary["messages"]
    return messages


# -- the SDK drives the emulator --------------------------------------------------------------


def test_create_returns_a_message_resource(emulator: EmulatorThread) -> None:
    client = sdk_client(emulator)
    message = client.messages.create(body="Your code is 481902", from_=FROM, to=TO)
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.to == TO and message.from_ == FROM
    assert message.body == "Your code is 481902"
    assert message.num_segments == "1" and message.num_media == "0"
    assert message.direction == "outbound-api"
    assert message.account_sid == client.account_sid
    assert message.date_created is not None and message.date_created.tzinfo is not None
    [kept] = stored(emulator)
    assert (kept["id"], kept["to"], kept["body"]) == (message.sid, TO, "Your code is 481902")


def test_create_counts_unicode_segments(emulator: EmulatorThread) -> None:
    message = sdk_client(emulator).messages.create(body="Привет 😜 " * 10, from_=FROM, to=TO)
    assert message.num_segments == "2"  # 100 UTF-16 units: two UCS-2 parts of 67


def test_fetch_returns_what_create_made(emulator: EmulatorThread) -> None:
    client = sdk_client(emulator)
    created = client.messages.create(body="fetch me", from_=FROM, to=TO)
    fetched = client.messages(created.sid).fetch()
    assert (fetched.sid, fetched.body, fetched.to, fetched.status) == (
        created.sid,
        "fetch me",
        TO,
        "queued",
    )


def test_fetch_of_an_unknown_sid_is_a_404(emulator: EmulatorThread) -> None:
    with pytest.raises(TwilioRestException) as info:
        sdk_client(emulator).messages("SM" + "0" * 32).fetch()
    assert info.value.status == 404 and info.value.code == 20404


def test_list_filters_by_recipient_newest_first(emulator: EmulatorThread) -> None:
    client = sdk_client(emulator)
    first = client.messages.create(body="one", from_=FROM, to=TO)
    client.messages.create(body="other", from_=FROM, to="+15558675311")
    second = client.messages.create(body="two", from_=FROM, to=TO)
    listed = client.messages.list(to=TO, limit=20)
    assert [m.sid for m in listed] == [second.sid, first.sid]
    assert len(client.messages.list(limit=20)) == 3
    assert [m.body for m in client.messages.list(from_=FROM, to="+15558675311")] == ["other"]


def test_mms_create_with_media_url(emulator: EmulatorThread) -> None:
    message = sdk_client(emulator).messages.create(
        body="look", from_=FROM, media_url=[IMAGE, "https://example.com/b.png"], to=TO
    )
    assert message.sid.startswith("MM")
    assert message.num_media == "2"
    [kept] = stored(emulator)
    assert kept["media"] == [IMAGE, "https://example.com/b.png"]


@pytest.mark.parametrize(
    ("to", "sender", "code", "status"),
    [
        ("+15005550001", FROM, 21211, 400),  # invalid To
        ("+15005550002", FROM, 21612, 400),  # To not reachable
        ("+15005550003", FROM, 21408, 400),  # region not enabled
        ("+15005550004", FROM, 21610, 400),  # unsubscribed (STOP)
        ("+15005550009", FROM, 21614, 400),  # To not mobile
        (TO, "+15005550001", 21212, 400),  # invalid From
        (TO, "+15005550007", 21606, 400),  # From not owned
        ("not a number", FROM, 21211, 400),
    ],
)
def test_magic_numbers_arrive_as_twilio_rest_exceptions(
    emulator: EmulatorThread, to: str, sender: str, code: int, status: int
) -> None:
    with pytest.raises(TwilioRestException) as info:
        sdk_client(emulator).messages.create(body="hello", from_=sender, to=to)
    assert info.value.code == code
    assert info.value.status == status
    assert info.value.method == "POST"
    assert info.value.msg  # Twilio's message text, passed through
    assert stored(emulator) == []


def test_wrong_auth_token_is_20003(emulator: EmulatorThread) -> None:
    with pytest.raises(TwilioRestException) as info:
        sdk_client(emulator, token="not-the-token").messages.create(body="x", from_=FROM, to=TO)
    assert (info.value.status, info.value.code) == (401, 20003)


def test_missing_body_and_media_is_21602(emulator: EmulatorThread) -> None:
    with pytest.raises(TwilioRestException) as info:
        sdk_client(emulator).messages.create(from_=FROM, to=TO)
    assert info.value.code == 21602


def test_injected_429_reaches_the_sdk_as_20429(emulator: EmulatorThread) -> None:
    emulator.call(lambda: emulator.emulator.faults.update({"rate_limit_rate": 1}))
    with pytest.raises(TwilioRestException) as info:
        sdk_client(emulator).messages.create(body="x", from_=FROM, to=TO)
    assert (info.value.status, info.value.code) == (429, 20429)


# The SDK's async client uses aiohttp.BasicAuth, which aiohttp 3.14 deprecates: not ours to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_async_client_creates_too(emulator: EmulatorThread) -> None:
    sid, _, token = emulator.emulator.credentials.partition(":")

    async def main() -> list[str]:
        http = AsyncTwilioHttpClient()
        client = Client(sid, token, http_client=http)
        client.api.base_url = emulator.url
        try:
            created = await asyncio.gather(
                *(client.messages.create_async(body=f"n{i}", from_=FROM, to=TO) for i in range(5))
            )
            with pytest.raises(TwilioRestException) as info:
                await client.messages.create_async(body="x", from_=FROM, to="+15005550004")
            assert info.value.code == 21610
            return [m.sid for m in created]
        finally:
            await http.close()

    sids = asyncio.run(main())
    assert len(set(sids)) == 5
    assert sorted(str(m["body"]) for m in stored(emulator)) == [f"n{i}" for i in range(5)]


# -- the seed's own snippets (seeds/004), unchanged except for the base URL --------------------

SEED_SMS = """\
# Download the helper library from https://www.twilio.com/docs/python/install
from twilio.rest import Client


# Your Account Sid and Auth Token from twilio.com/console
# DANGER! This is insecure. See http://twil.io/secure
account_sid = 'ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'
auth_token = 'your_auth_token'
client = Client(account_sid, auth_token)

message = client.messages \\
    .create(
         body='This is the ship that made the Kessel Run in fourteen parsecs?',
         from_='+15017122661',
         to='+15558675310'
     )

print(message.sid)
"""

SEED_MMS = """\
# Download the helper library from https://www.twilio.com/docs/python/install
from twilio.rest import Client


# Your Account Sid and Auth Token from twilio.com/console
# DANGER! This is insecure. See http://twil.io/secure
account_sid = 'ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'
auth_token = 'your_auth_token'
client = Client(account_sid, auth_token)

message = client.messages \\
    .create(
         body='This is the ship that made the Kessel Run in fourteen parsecs?',
         from_='+15017122661',
         media_url=['https://c1.staticflickr.com/3/2899/14341091933_1e92e62d12_b.jpg'],
         to='+15558675310'
     )

print(message.sid)
"""
# "Add the following line to the end of your send_mms.py file"
SEED_MMS_EXTRA = "print(message.media._uri)\n"

SEED_LOOP = """\
numbers_to_message = ['+15558675310', '+14158141829', '+15017122661']
for number in numbers_to_message:
    client.messages.create(
        body = 'Hello from my Twilio number!',
        from_ = '+15017122662',
        to = 'number'
    )
"""

SEED_CREDENTIALS = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:your_auth_token"
CLIENT_LINE = "client = Client(account_sid, auth_token)\n"


def test_the_embedded_snippets_are_the_seeds_text() -> None:
    # ../shared/seeds next to the checkout, where the project's tutorials live
    seeds = sorted(Path(__file__).resolve().parents[3].glob("shared/seeds/004_*.txt"))
    if not seeds:
        pytest.skip("the seed tutorials are not next to this checkout")
    text = seeds[0].read_text(encoding="utf-8")
    for snippet in (SEED_SMS, SEED_MMS, SEED_LOOP, SEED_MMS_EXTRA):
        assert snippet.strip() in text


@pytest.fixture
def seed_emulator() -> Iterator[EmulatorThread]:
    # The snippets carry placeholder credentials: run the emulator with exactly those.
    running = TwilioEmulator(credentials=SEED_CREDENTIALS).run_in_thread()
    yield running
    running.stop()


def run_seed(code: str, base_url: str, namespace: dict[str, object] | None = None) -> str:
    """Execute a seed snippet with one added line pointing the client at the emulator."""
    assert CLIENT_LINE in code or namespace is not None
    patched = code.replace(CLIENT_LINE, CLIENT_LINE + f"client.api.base_url = {base_url!r}\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(patched, "<seed 004>", "exec"), namespace if namespace is not None else {})
    return out.getvalue()


def test_seed_sms_snippet_runs_unchanged(seed_emulator: EmulatorThread) -> None:
    printed = run_seed(SEED_SMS, seed_emulator.url).strip()
    [kept] = stored(seed_emulator)
    assert printed == kept["id"] and printed.startswith("SM")
    assert kept["to"] == "+15558675310" and kept["sender"] == "+15017122661"
    assert kept["body"] == "This is the ship that made the Kessel Run in fourteen parsecs?"


def test_seed_mms_snippet_runs_unchanged(seed_emulator: EmulatorThread) -> None:
    printed = run_seed(SEED_MMS + SEED_MMS_EXTRA, seed_emulator.url).splitlines()
    [kept] = stored(seed_emulator)
    assert printed[0] == kept["id"] and printed[0].startswith("MM")
    assert kept["media"] == [IMAGE]
    assert printed[1].endswith(f"/Messages/{kept['id']}/Media.json")


def test_seed_multi_recipient_loop_bug_is_caught(seed_emulator: EmulatorThread) -> None:
    # The seed's loop sends to the literal string 'number' instead of the variable: Twilio (and
    # the emulator) answer 21211 on the first iteration instead of texting anyone.
    namespace: dict[str, object] = {}
    run_seed(SEED_SMS, seed_emulator.url, namespace)
    with pytest.raises(TwilioRestException) as info:
        run_seed(SEED_LOOP, seed_emulator.url, namespace)
    assert info.value.code == 21211
    assert len(stored(seed_emulator)) == 1  # only the first snippet's message


# -- signatures, cross-checked with twilio.request_validator ----------------------------------

TOKEN = "12345abcde-auth-token"
CALLBACK_FORM = {
    "MessageSid": "SM" + "a" * 32,
    "SmsSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "SmsStatus": "delivered",
    "AccountSid": "AC" + "0" * 32,
    "From": "+15017122661",
    "To": "+15558675310",
    "ApiVersion": "2010-04-01",
    "Body": "Grüße & café = 10€ + 😜",
}
URLS = [
    "https://hooks.example.com/twilio/status",
    "https://hooks.example.com/twilio/status?smsgate_id=msg_01H&x=a%20b",
    "https://hooks.example.com:8443/twilio/status?smsgate_id=msg_01H",
    "http://127.0.0.1:8000/twilio/status?a=1&b=2&a=3",
    "https://hooks.example.com/twilio/status?q=caf%C3%A9&empty=",
]


@pytest.mark.parametrize("url", URLS)
def test_our_signature_validates_with_request_validator(url: str) -> None:
    signature = twilio_signature(TOKEN, url, CALLBACK_FORM.items())
    validator = RequestValidator(TOKEN)
    assert validator.validate(url, CALLBACK_FORM, signature)
    assert signature == validator.compute_signature(url, CALLBACK_FORM)
    assert not RequestValidator("another-token").validate(url, CALLBACK_FORM, signature)
    assert not validator.validate(url, {**CALLBACK_FORM, "MessageStatus": "failed"}, signature)


@pytest.mark.parametrize("url", URLS)
def test_request_validator_signature_verifies_with_our_provider(url: str) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, CALLBACK_FORM)
    assert twilio_signature(TOKEN, url, CALLBACK_FORM.items()) == signature
    provider = twilio_provider(TOKEN)
    request = form_request(url, CALLBACK_FORM, signature)
    [event] = provider.handle_status_webhook(request)
    assert event.provider_message_id == CALLBACK_FORM["MessageSid"]
    tampered = form_request(url, {**CALLBACK_FORM, "To": "+15558675311"}, signature)
    with pytest.raises(WebhookVerificationError):
        provider.handle_status_webhook(tampered)
    with pytest.raises(WebhookVerificationError):
        twilio_provider("another-token").handle_status_webhook(request)


@pytest.mark.parametrize(
    ("signed_url", "seen_url"),
    [
        # Twilio signed without the port; our server sees the default port spelled out.
        ("https://hooks.example.com/s?id=1", "https://hooks.example.com:443/s?id=1"),
        # Twilio signed with the port; a proxy stripped it.
        ("https://hooks.example.com:443/s?id=1", "https://hooks.example.com/s?id=1"),
        ("http://hooks.example.com:80/s", "http://hooks.example.com/s"),
        ("http://hooks.example.com/s", "http://hooks.example.com:80/s"),
    ],
)
def test_port_variants_are_accepted_both_ways(signed_url: str, seen_url: str) -> None:
    theirs = RequestValidator(TOKEN).compute_signature(signed_url, CALLBACK_FORM)
    twilio_provider(TOKEN).verify_webhook(form_request(seen_url, CALLBACK_FORM, theirs))
    ours = twilio_signature(TOKEN, signed_url, CALLBACK_FORM.items())
    assert RequestValidator(TOKEN).validate(seen_url, CALLBACK_FORM, ours)


def test_a_different_non_default_port_is_not_accepted() -> None:
    signature = twilio_signature(TOKEN, "https://hooks.example.com:8443/s", CALLBACK_FORM.items())
    with pytest.raises(WebhookVerificationError):
        twilio_provider(TOKEN).verify_webhook(
            form_request("https://hooks.example.com:9443/s", CALLBACK_FORM, signature)
        )
    assert not RequestValidator(TOKEN).validate(
        "https://hooks.example.com:9443/s", CALLBACK_FORM, signature
    )


def test_public_url_behind_a_proxy() -> None:
    public = "https://hooks.example.com/twilio/status?smsgate_id=msg_1"
    seen = "http://10.0.0.5:8000/twilio/status?smsgate_id=msg_1"
    signature = RequestValidator(TOKEN).compute_signature(public, CALLBACK_FORM)
    request = form_request(seen, CALLBACK_FORM, signature)
    with pytest.raises(WebhookVerificationError):
        twilio_provider(TOKEN).verify_webhook(request)
    twilio_provider(TOKEN, public_url="https://hooks.example.com").verify_webhook(request)


def test_repeated_parameter_names_sign_the_same() -> None:
    url = "https://hooks.example.com/inbound"
    fields = [
        ("To", "+15017122661"),
        ("MediaUrl", "https://b.example/2"),
        ("From", "+15558675310"),
        ("MediaUrl", "https://a.example/1"),
    ]
    signature = twilio_signature(TOKEN, url, fields)
    assert RequestValidator(TOKEN).validate(url, MultiDict(fields), signature)
    assert RequestValidator(TOKEN).compute_signature(url, MultiDict(fields)) == signature


def test_get_webhooks_sign_only_the_url() -> None:
    url = "https://hooks.example.com/status?MessageSid=SM1&MessageStatus=sent"
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    assert twilio_signature(TOKEN, url, []) == signature
    twilio_provider(TOKEN).verify_webhook(
        WebhookRequest(url, "GET", {"X-Twilio-Signature": signature})
    )


def test_emulator_callbacks_validate_with_request_validator(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    emulator.call(lambda: setattr(emulator.emulator.callbacks, "delay", 0.01))
    callback = f"{webhook_receiver.url}/status?tenant=acme"
    sdk_client(emulator).messages.create(body="hi", from_=FROM, to=TO, status_callback=callback)
    requests = webhook_receiver.wait(2, path="/status")
    token = auth_token(emulator)
    for request in requests:
        form = MultiDict(parse_qsl(request.body.decode(), keep_blank_values=True))
        signature = request.header("X-Twilio-Signature")
        assert signature and RequestValidator(token).validate(request.url, form, signature)
        assert not RequestValidator("wrong").validate(request.url, form, signature)
    assert {dict(r.form())["MessageStatus"] for r in requests} == {"sent", "delivered"}
    assert all(dict(r.query)["tenant"] == "acme" for r in requests)


def test_emulator_inbound_webhook_validates_with_request_validator(
    emulator: EmulatorThread, webhook_receiver: WebhookReceiver
) -> None:
    import requests

    answer = requests.post(
        f"{emulator.url}/_emulator/inbound",
        json={
            "from": "+15558675310",
            "to": FROM,
            "body": "STOP",
            "media": [IMAGE],
            "url": f"{webhook_receiver.url}/inbound",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    [request] = webhook_receiver.wait(1, path="/inbound")
    form = dict(parse_qsl(request.body.decode()))
    assert form["MediaUrl0"] == IMAGE and form["Body"] == "STOP"
    signature = request.header("X-Twilio-Signature") or ""
    assert RequestValidator(auth_token(emulator)).validate(request.url, form, signature)


# -- helpers ----------------------------------------------------------------------------------


def auth_token(emulator: EmulatorThread) -> str:
    twilio = emulator.emulator
    assert isinstance(twilio, TwilioEmulator)
    return twilio.auth_token


def twilio_provider(token: str, public_url: str | None = None) -> TwilioProvider:
    url = f"twilio://AC{'0' * 32}:{token}@+15017122661"
    if public_url:
        url += "?" + urlencode({"public_url": public_url})
    provider = create_provider(url)
    assert isinstance(provider, TwilioProvider)
    return provider


def form_request(url: str, form: dict[str, str], signature: str) -> WebhookRequest:
    return WebhookRequest(
        url=url,
        method="POST",
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=urlencode(form).encode(),
    )
