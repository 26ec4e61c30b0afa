"""The Django app in a real project (tests/integrations/djangoproject) through Django's test client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("django")

from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client, override_settings

from smsgate.emulators.base import EmulatorThread
from smsgate.errors import InvalidRecipient, OptedOut
from smsgate.message import Status
from smsgate.outbox import Outbox
from smsgate.testing import post_inbound, post_receipt, post_stop, telnyx_keys

pytestmark = pytest.mark.usefixtures("django_project")

SIGNING_KEY, PUBLIC_KEY = telnyx_keys()
PROVIDERS = {
    "twilio": "twilio://AC00000000000000000000000000000000:webhook-token@+15017122661",
    "plivo": "plivo://MAAAAAAAAAAAAAAAAAAA:plivo-token@+14155550100",
    "vonage": "vonage://key:secret@MyApp?signature_secret=sig-secret&signature_method=sha256",
    "smsroute": "smsroute://KEY@MyApp?webhook_secret=route-secret",
    "telnyx": f"telnyx://KEY@+14155550100?public_key={quote(PUBLIC_KEY, safe='')}",
}
CUSTOMER = "+16502530000"


class Heard:
    """Records what a Django signal sent."""

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.calls: list[dict[str, Any]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append({"sender": sender, **kwargs})

    def __enter__(self) -> Heard:
        self.signal.connect(self, weak=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.signal.disconnect(self)


def smsgate_settings(**values: Any) -> Any:
    return override_settings(SMSGATE=values)


@pytest.fixture
def outbox_settings(twilio: EmulatorThread, store_url: str) -> Iterator[dict[str, Any]]:
    """The outbox backend on a fresh store, sending through the Twilio emulator."""
    values = {
        "backend": "outbox",
        "test_backend": None,
        "store": store_url,
        "providers": {"twilio": {"url": twilio.emulator.provider_url()}},
    }
    with smsgate_settings(**values):
        yield values


def stored(store_url: str) -> list[Any]:
    with Outbox(store_url) as outbox:
        return list(outbox.list().items)


def make_order() -> int:
    from tests.integrations.djangoproject.shop.models import Customer, Order

    customer = Customer.objects.create(phone=CUSTOMER)
    return int(Order.objects.create(customer=customer).pk)


# -- sending ----------------------------------------------------------------------------------


def test_direct_backend_sends_through_the_provider_and_signals(twilio: EmulatorThread) -> None:
    from smsgate.integrations.django import send_sms, signals

    url = twilio.emulator.provider_url()
    with (
        smsgate_settings(backend="direct", test_backend=None, providers={"tw": {"url": url}}),
        Heard(signals.pre_send) as before,
        Heard(signals.post_send) as after,
    ):
        result = send_sms(CUSTOMER, "Your code is 123456", purpose="otp")
    assert result is not None and result.provider == "tw"
    (sent,) = twilio.emulator.messages
    assert result.provider_message_id == sent.id
    assert (sent.to, sent.body) == (CUSTOMER, "Your code is 123456")
    assert before.calls[0]["sms"].body == "Your code is 123456"
    assert after.calls[0]["result"] is result


def test_a_pre_send_receiver_cancels_the_message(twilio: EmulatorThread) -> None:
    from smsgate.integrations.django import send_sms, signals

    def veto(sender: Any, sms: Any, **kwargs: Any) -> None:
        if "promo" in sms.body:
            raise signals.CancelSend

    url = twilio.emulator.provider_url()
    signals.pre_send.connect(veto)
    try:
        with smsgate_settings(backend="direct", test_backend=None, providers={"tw": {"url": url}}):
            canceled = send_sms(CUSTOMER, "a promo for you")
            sent = send_sms(CUSTOMER, "your receipt")
    finally:
        signals.pre_send.disconnect(veto)
    assert canceled is not None and canceled.status is Status.CANCELED
    assert sent is not None and sent.provider_message_id
    assert [m.body for m in twilio.emulator.messages] == ["your receipt"]


def test_the_test_runner_uses_locmem_and_each_test_gets_a_fresh_outbox() -> None:
    import smsgate.integrations.django as sms

    with smsgate_settings(backend="outbox", store="sqlite:////nonexistent/never-opened.db"):
        sms.send_sms(CUSTOMER, "first test")
        assert [m.body for m in sms.outbox] == ["first test"]
        mail.outbox = []  # what Django's TestCase does before every test
        assert sms.outbox == []
        sms.send_sms(CUSTOMER, "second test")
        assert [m.body for m in sms.outbox] == ["second test"]


def test_console_backend_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from smsgate.integrations.django import send_sms

    with smsgate_settings(backend="console", test_backend=None):
        result = send_sms(CUSTOMER, "hello console", sender="MyApp")
    out = capsys.readouterr().out
    assert f"SMS to {CUSTOMER} from MyApp" in out and "hello console" in out
    assert result is not None and result.provider == "console"


def test_bad_input_names_the_field_and_fail_silently_logs() -> None:
    from smsgate.integrations.django import send_sms

    with smsgate_settings(backend="console", test_backend=None):
        with pytest.raises(InvalidRecipient) as caught:
            send_sms("12", "hi")
        assert caught.value.field == "to"
        assert send_sms("12", "hi", fail_silently=True) is None


def test_misconfigured_settings_raise_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from smsgate.integrations.django import send_sms

    with smsgate_settings(backend="carrier-pigeon"), pytest.raises(ImproperlyConfigured) as caught:
        send_sms(CUSTOMER, "hi")
    assert "SMSGATE['backend']" in str(caught.value)


# -- the transaction-aware outbox backend -----------------------------------------------------


def test_outbox_backend_stores_on_commit_and_a_rollback_sends_nothing(
    outbox_settings: dict[str, Any], twilio: EmulatorThread
) -> None:
    from tests.integrations.djangoproject.shop.models import Order
    from tests.integrations.djangoproject.shop.views import ShipmentFailed

    client = Client()
    rolled_back = make_order()
    with pytest.raises(ShipmentFailed):
        client.post(f"/orders/{rolled_back}/ship?carrier=down")
    assert not Order.objects.get(pk=rolled_back).shipped
    assert stored(outbox_settings["store"]) == []

    committed = make_order()
    assert client.post(f"/orders/{committed}/ship").status_code == 200
    (queued,) = stored(outbox_settings["store"])
    assert queued.body == f"Your order #{committed} is on its way!"
    assert queued.status is Status.QUEUED

    out = io.StringIO()
    call_command("smsgate_worker", "--until-idle", stdout=out)
    assert "worker stopped" in out.getvalue()
    assert [m.body for m in twilio.emulator.messages] == [queued.body]
    (sent,) = stored(outbox_settings["store"])
    assert sent.status is Status.SENT


def test_post_send_fires_after_commit_with_the_stored_id(outbox_settings: dict[str, Any]) -> None:
    from django.db import transaction

    from smsgate.integrations.django import send_sms, signals

    with Heard(signals.post_send) as after:
        with transaction.atomic():
            early = send_sms(CUSTOMER, "stored at commit")
            assert after.calls == []
        assert early is not None and early.status is Status.QUEUED
    (call,) = after.calls
    assert call["result"].id == early.id
    assert [r.id for r in stored(outbox_settings["store"])] == [early.id]


# -- webhooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_signed_receipts_of_every_provider_reach_status_changed(name: str) -> None:
    from smsgate.integrations.django import signals

    client = Client()
    providers = {n: {"url": url} for n, url in PROVIDERS.items()}
    with (
        smsgate_settings(backend="console", providers=providers),
        Heard(signals.status_changed) as heard,
    ):
        responses = post_receipt(
            client,
            f"/sms/webhooks/{name}/status",
            provider_url=PROVIDERS[name],
            message_id="pm-123",
            to=CUSTOMER,
            signing_key=SIGNING_KEY,
        )
    assert [r.status_code for r in responses] == [200] * len(responses)
    assert heard.calls, "no status_changed signal"
    last = heard.calls[-1]
    assert last["sender"] == name
    assert last["event"].provider_message_id == "pm-123"
    assert last["event"].status is Status.DELIVERED


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_inbound_and_stop_of_every_provider_reach_their_signals(name: str) -> None:
    from smsgate.integrations.django import signals

    client = Client()
    providers = {n: {"url": url} for n, url in PROVIDERS.items()}
    path = f"/sms/webhooks/{name}/inbound"
    with (
        smsgate_settings(backend="console", providers=providers),
        Heard(signals.inbound_received) as inbound,
        Heard(signals.opted_out) as stopped,
    ):
        hello = post_inbound(
            client,
            path,
            provider_url=PROVIDERS[name],
            sender=CUSTOMER,
            to="+14155550100",
            body="hello there",
            signing_key=SIGNING_KEY,
        )
        stop = post_stop(
            client,
            path,
            provider_url=PROVIDERS[name],
            sender=CUSTOMER,
            to="+14155550100",
            signing_key=SIGNING_KEY,
        )
    assert (hello.status_code, stop.status_code) == (200, 200)
    assert [c["message"].body for c in inbound.calls] == ["hello there", "STOP"]
    (opt_out,) = stopped.calls
    assert opt_out["recipient"].lstrip("+") == CUSTOMER.lstrip("+")
    assert opt_out["source"] == "keyword"


def test_a_forged_or_tampered_webhook_is_refused_and_signals_nothing() -> None:
    from smsgate.integrations.django import signals
    from smsgate.testing import WebhookSigner, post_webhook

    client = Client()
    with (
        smsgate_settings(backend="console", providers={"twilio": {"url": PROVIDERS["twilio"]}}),
        Heard(signals.status_changed) as heard,
    ):
        forger = WebhookSigner.for_url(PROVIDERS["twilio"].replace("webhook-token", "guess"))
        (forged, _) = forger.receipts(
            "http://testserver/sms/webhooks/twilio/status", message_id="SM1", to=CUSTOMER
        )
        refused = post_webhook(client, forged)
        signer = WebhookSigner.for_url(PROVIDERS["twilio"])
        (genuine, _) = signer.receipts(
            "http://testserver/sms/webhooks/twilio/status", message_id="SM1", to=CUSTOMER
        )
        tampered = type(genuine)(
            genuine.method,
            genuine.url,
            genuine.headers,
            genuine.body.replace(b"sent", b"delivered"),
        )
        altered = post_webhook(client, tampered)
        unknown = client.post("/sms/webhooks/nobody/status", data={})
    assert refused.status_code == 403 and refused.json()["error"] == "webhook_verification"
    assert altered.status_code == 403
    assert unknown.status_code == 404
    assert heard.calls == []


def test_receipts_move_stored_messages_once_and_stop_suppresses(
    outbox_settings: dict[str, Any], twilio: EmulatorThread
) -> None:
    from smsgate.integrations.django import send_sms, signals

    client = Client()
    url = twilio.emulator.provider_url()
    # the emulator's credentials, so its signatures verify
    send_sms(CUSTOMER, "order shipped")
    call_command("smsgate_worker", "--until-idle", stdout=io.StringIO())
    (record,) = stored(outbox_settings["store"])
    assert record.provider_message_id
    path = "/sms/webhooks/twilio/status"
    with Heard(signals.status_changed) as heard:
        first = post_receipt(
            client, path, provider_url=url, message_id=record.provider_message_id, to=CUSTOMER
        )
        replay = post_receipt(
            client, path, provider_url=url, message_id=record.provider_message_id, to=CUSTOMER
        )
    assert [r.json()["stored"] for r in first] == [1, 1]
    # Twilio's idempotency token names the same events: a provider retry changes nothing
    assert [r.json()["stored"] for r in replay] == [0, 0]
    assert [c["event"].status for c in heard.calls] == [Status.SENT, Status.DELIVERED]
    (delivered,) = stored(outbox_settings["store"])
    assert delivered.status is Status.DELIVERED

    with Heard(signals.opted_out) as stopped:
        post_stop(
            client,
            "/sms/webhooks/twilio/inbound",
            provider_url=url,
            sender=CUSTOMER,
            to=twilio.emulator.default_sender,
        )
    assert len(stopped.calls) == 1
    with Outbox(outbox_settings["store"]) as outbox, pytest.raises(OptedOut):
        outbox.submit({"to": CUSTOMER, "body": "promo", "sender": twilio.emulator.default_sender})


def test_http_backend_submits_to_a_running_smsgate_serve(store_url: str, tmp_path: Path) -> None:
    from smsgate.config import Config
    from smsgate.integrations.django import send_sms
    from smsgate.outbox.cli_support import open_outbox
    from smsgate.outbox.tables.server import ServerStore
    from smsgate.server.app import create_app
    from smsgate.server.auth import create_key
    from smsgate.server.runner import ServerThread
    from smsgate.server.settings import ServerSettings

    config = Config.from_dict({"store": store_url})
    box = open_outbox(config, migrate=True)
    thread = ServerThread(
        lambda url: create_app(
            config,
            settings=ServerSettings.from_mapping({}, public_url=url),
            outbox=box,
            worker=False,
            background=True,
        )
    )
    try:
        key = create_key(ServerStore.of(box.store), "django").key
        remote = {"url": thread.url, "api_key": key}
        with smsgate_settings(backend="http", test_backend=None, remote=remote):
            result = send_sms(CUSTOMER, "via the API", idempotency_key="order-9")
            again = send_sms(CUSTOMER, "via the API", idempotency_key="order-9")
            with pytest.raises(InvalidRecipient):
                send_sms("+1555", "bad number")  # refused locally, naming the field
        with smsgate_settings(backend="http", test_backend=None, remote={**remote, "api_key": "x"}):
            from smsgate.errors import AuthError

            with pytest.raises(AuthError):
                send_sms(CUSTOMER, "wrong key")
        assert result is not None and again is not None
        assert result.status is Status.QUEUED and again.id == result.id
        (record,) = box.list().items
        assert (record.to, record.body) == (CUSTOMER, "via the API")
    finally:
        thread.stop()
        box.close()


# -- phone numbers ----------------------------------------------------------------------------


def test_signup_form_normalizes_numbers_and_explains_refusals() -> None:
    client = Client()
    ok = client.post("/signup", {"phone": "(650) 253-0000"})
    assert ok.status_code == 200 and ok.json() == {"phone": CUSTOMER}
    bad = client.post("/signup", {"phone": "12"})
    assert bad.status_code == 400
    assert "phone" in bad.json()["errors"]
    assert bad.json()["errors"]["phone"][0]


def test_model_field_stores_e164_and_full_clean_refuses_garbage() -> None:
    from tests.integrations.djangoproject.shop.models import Customer

    customer = Customer.objects.create(phone="650 253 0000")
    customer.refresh_from_db()
    assert customer.phone == CUSTOMER
    with pytest.raises(ValidationError) as caught:
        Customer(phone="not a number").full_clean()
    assert "phone" in caught.value.message_dict


def test_django_phonenumber_field_values_are_accepted() -> None:
    pytest.importorskip("phonenumber_field")
    from phonenumber_field.phonenumber import PhoneNumber

    import smsgate.integrations.django as sms
    from smsgate.integrations.django.forms import PhoneNumberField
    from smsgate.integrations.django.validators import validate_phone_number
    from tests.integrations.djangoproject.shop.models import Customer

    number = PhoneNumber.from_string("+1 650 253 0000")
    validate_phone_number(number)
    with pytest.raises(ValidationError):
        validate_phone_number(PhoneNumber.from_string("+1 555 0100", region="US"))
    assert PhoneNumberField().clean(number) == CUSTOMER
    assert Customer.objects.create(phone=number).phone == CUSTOMER
    with smsgate_settings(backend="locmem"):
        sms.send_sms(number, "from a PhoneNumber")
        assert sms.outbox[-1].to == CUSTOMER


def test_the_docs_settings_and_view_send_after_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import RequestFactory

    from smsgate.emulators.smspm import SmspmEmulator
    from tests.integrations.snippets import run

    with SmspmEmulator().run_in_thread() as smspm:
        monkeypatch.setenv("SMSPM_URL", smspm.emulator.provider_url())
        documented = run("django.md", "settings")["SMSGATE"]
        store = f"sqlite:///{tmp_path / 'sms.db'}"
        with override_settings(SMSGATE={**documented, "store": store, "test_backend": None}):
            view = run(
                "django.md",
                "view",
                {
                    "__name__": "tests.integrations.djangoproject.shop.docs_view",
                    "__package__": "tests.integrations.djangoproject.shop",
                },
            )["ship_order"]
            order = make_order()
            answer = view(RequestFactory().post(f"/orders/{order}/ship"), order)
            assert answer.status_code == 200
            (queued,) = stored(store)
            call_command("smsgate_worker", "--until-idle", stdout=io.StringIO())
        (sent,) = smspm.emulator.messages
    assert (sent.to, sent.body) == (CUSTOMER, f"Your order #{order} is on its way!")
    assert queued.id in answer.content.decode()


def test_the_seed_style_helper_never_raises() -> None:
    from tests.integrations.djangoproject.shop.sms import send_sms

    with smsgate_settings(backend="locmem"):
        assert send_sms(CUSTOMER, "hello") is True
        assert send_sms("12", "hello") is False


def test_a_provider_reported_unsubscribe_reaches_opted_out() -> None:
    from smsgate.integrations.django import signals

    client = Client()
    with (
        smsgate_settings(backend="console", providers={"vonage": {"url": PROVIDERS["vonage"]}}),
        Heard(signals.opted_out) as stopped,
    ):
        (answer,) = post_receipt(
            client,
            "/sms/webhooks/vonage/status",
            provider_url=PROVIDERS["vonage"],
            message_id="0A000001",
            to=CUSTOMER,
            status="opted_out",
        )
    assert answer.status_code == 200
    (call,) = stopped.calls
    assert (call["sender"], call["source"]) == ("vonage", "provider")
    assert call["recipient"].lstrip("+") == CUSTOMER.lstrip("+")
