"""/metrics: counters derived from the outbox history, gauges read at scrape time."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import requests
from prometheus_client.parser import text_string_to_metric_families
from tests.server.conftest import Running, ServerFactory
from tests.server.test_provider_webhooks import TOKEN, TWILIO_URL
from twilio.request_validator import RequestValidator

from smsgate.emulators.base import Callbacks
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.outbox.tables.server import EventRow
from smsgate.server.metrics import EventFollower, Metrics


def scrape(running: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = running.anonymous.get(running.url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def receipt(running: Running, message_id: str, status: str, code: str | None = None) -> None:
    url = f"{running.url}/webhooks/twilio/status?" + urlencode({"smsgate_id": message_id})
    fields = {"MessageSid": f"SM{status}", "MessageStatus": status}
    if code:
        fields["ErrorCode"] = code
    headers = {
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, fields),
        "I-Twilio-Idempotency-Token": f"{message_id}{status}",
    }
    assert requests.post(url, data=fields, headers=headers, timeout=10).status_code == 200


def test_counters_follow_the_history(server_factory: ServerFactory, store_url: str) -> None:
    running = server_factory(
        store_url, config={"providers": {"twilio": {"url": TWILIO_URL}}}, background=False
    )
    follower: EventFollower = running.thread.app.state.follower
    follower.step()  # start from here
    ids = [
        running.post("/v1/messages", json={"to": "+15555550100", "body": "x", "purpose": p}).json()[
            "id"
        ]
        for p in ("transactional", "transactional", "otp", "marketing")
    ]
    running.post(f"/v1/messages/{ids[3]}/cancel")
    receipt(running, ids[0], "delivered")
    receipt(running, ids[1], "undelivered", "30003")
    receipt(running, ids[1], "undelivered", "30003")  # a replay counts once
    assert follower.step() >= 7
    metrics = scrape(running)
    assert metrics[("smsgate_messages_submitted_total", (("purpose", "transactional"),))] == 2
    assert metrics[("smsgate_messages_submitted_total", (("purpose", "otp"),))] == 1
    assert (
        metrics[("smsgate_messages_delivered_total", (("provider", "twilio"), ("route", "none")))]
        == 1
    )
    failed = (
        "smsgate_messages_failed_total",
        (
            ("error", "receipt"),
            ("provider", "twilio"),
            ("route", "none"),
            ("status", "undelivered"),
        ),
    )
    assert metrics[failed] == 1
    assert metrics[("smsgate_queue_depth", (("status", "queued"),))] == 1
    assert metrics[("smsgate_queue_depth", (("status", "canceled"),))] == 1
    assert metrics[("smsgate_queue_depth", (("status", "delivered"),))] == 1
    refused = (
        "smsgate_provider_webhooks_total",
        (("kind", "status"), ("outcome", "duplicate"), ("provider", "twilio")),
    )
    assert metrics[refused] == 1


def test_metrics_need_no_key_and_are_prometheus_text(server: Running) -> None:
    response = server.anonymous.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "smsgate_messages_submitted",
        "smsgate_send_latency_seconds",
        "smsgate_queue_depth",
        "smsgate_send_retries",
    } <= names


def test_worker_metrics_sent_latency_and_circuits(
    server_factory: ServerFactory, sqlite_url: str
) -> None:
    emulator = TwilioEmulator(callbacks=Callbacks(delay=0.05))
    with emulator.run_in_thread():
        running = server_factory(
            sqlite_url,
            worker=True,
            background=False,
            config={"providers": {"twilio": {"url": emulator.provider_url()}}},
        )
        follower: EventFollower = running.thread.app.state.follower
        follower.step()
        ids = [
            running.post("/v1/messages", json={"to": "+15555550100", "body": f"m{n}"}).json()["id"]
            for n in range(3)
        ]
        deadline = time.monotonic() + 20
        while {running.outbox.status(m).status.value for m in ids} != {"delivered"}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        follower.step()
        metrics = scrape(running)
    labels = (("provider", "twilio"), ("route", "default"))
    assert metrics[("smsgate_messages_sent_total", labels)] == 3
    assert metrics[("smsgate_messages_delivered_total", labels)] == 3
    assert metrics[("smsgate_send_latency_seconds_count", labels)] == 3
    assert metrics[("smsgate_send_latency_seconds_sum", labels)] < 30
    assert metrics[("smsgate_circuit_state", (("provider", "twilio"), ("state", "closed")))] == 1
    assert metrics[("smsgate_circuit_state", (("provider", "twilio"), ("state", "open")))] == 0


def row(
    event_id: int,
    from_status: str | None,
    to_status: str,
    source: str = "worker:w",
    last_error: str | None = None,
) -> EventRow:
    return EventRow(
        id=event_id,
        message_id="msg_1",
        at=100.0,
        from_status=from_status,
        to_status=to_status,
        source=source,
        reason=None,
        provider="twilio",
        attempt=1,
        to="+15555550100",
        route="otp",
        purpose="otp",
        sender=None,
        created_at=90.0,
        send_at=None,
        last_error=last_error,
        provider_message_id=None,
        payload=None,
    )


def test_retries_and_error_kinds() -> None:
    metrics = Metrics()
    metrics.observe(
        [
            row(1, None, "queued", source="submit"),
            row(2, "queued", "sending"),
            row(3, "sending", "queued", last_error='{"error": "transient"}'),
            row(4, "queued", "sending"),
            row(5, "sending", "rejected", last_error='{"error": "invalid_recipient"}'),
            row(6, "rejected", "rejected", source="webhook:twilio"),
        ]
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert samples[("smsgate_send_retries_total", (("provider", "twilio"), ("route", "otp")))] == 1
    rejected = (
        "smsgate_messages_failed_total",
        (
            ("error", "invalid_recipient"),
            ("provider", "twilio"),
            ("route", "otp"),
            ("status", "rejected"),
        ),
    )
    assert samples[rejected] == 1  # the stale receipt after it changed nothing
    assert samples[("smsgate_messages_submitted_total", (("purpose", "otp"),))] == 1


def test_receipts_that_timed_out_are_counted_by_what_became_of_them() -> None:
    metrics = Metrics()
    metrics.observe(
        [
            row(1, "sending", "sent"),
            row(2, "sent", "sent", source="receipt-lookup:twilio"),  # asked, not settled yet
            row(3, "sent", "delivered", source="receipt-lookup:twilio"),
            row(4, "sent", "unknown", source="receipt-lookup:twilio"),
        ]
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    timeouts = "smsgate_receipt_timeouts_total"
    assert samples[(timeouts, (("provider", "twilio"), ("status", "delivered")))] == 1
    assert samples[(timeouts, (("provider", "twilio"), ("status", "unknown")))] == 1
    assert (timeouts, (("provider", "twilio"), ("status", "sent"))) not in samples
    delivered = ("smsgate_messages_delivered_total", (("provider", "twilio"), ("route", "otp")))
    assert samples[delivered] == 1  # and counted as delivered like any receipt
