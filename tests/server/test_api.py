"""API v1 over real HTTP, on SQLite and PostgreSQL: messages, tools, health, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from tests.server.conftest import Running, ServerFactory

TO = "+15555550100"


def submit(server: Running, body: dict[str, Any], **headers: str) -> requests.Response:
    return server.post("/v1/messages", json=body, headers=headers)


# -- submit -------------------------------------------------------------------------------------


def test_submit_stores_the_message_and_returns_its_id(server: Running) -> None:
    response = submit(server, {"to": TO, "body": "Your order shipped", "metadata": {"o": 42}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "queued" and body["to"] == TO and body["created"] is True
    record = server.outbox.status(body["id"])
    assert record.body == "Your order shipped" and record.metadata == {"o": 42}


def test_national_numbers_are_refused_with_the_field_and_the_fix(server: Running) -> None:
    response = submit(server, {"to": "(555) 555-0100", "body": "hi"})
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "invalid_recipient" and error["field"] == "to"
    assert error["fix"] and "country code" in error["fix"]
    assert server.outbox.list().items == []


def test_a_reserved_metadata_key_is_refused_so_a_message_reads_back_as_sent(
    server: Running,
) -> None:
    # "redacted_body" makes a message read back as other text (Verify masks its codes with it)
    single = submit(server, {"to": TO, "body": "real", "metadata": {"redacted_body": "fake"}})
    assert single.status_code == 422, single.text
    assert single.json()["field"] == "metadata.redacted_body"
    batch = server.post(
        "/v1/messages/batch",
        json={"messages": [{"to": TO, "body": "real", "metadata": {"redacted_body": "x"}}]},
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["error"]["field"] == "metadata.redacted_body"
    assert server.outbox.list().items == []


def test_idempotency_key_header_returns_the_first_message(server: Running) -> None:
    first = submit(server, {"to": TO, "body": "once"}, **{"Idempotency-Key": "order-42"})
    again = submit(server, {"to": TO, "body": "once"}, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
    assert len(server.outbox.list().items) == 1
    assert server.outbox.status(first.json()["id"]).idempotency_key == "order-42"


def test_idempotency_key_in_body_and_header_must_agree(server: Running) -> None:
    response = submit(
        server, {"to": TO, "body": "x", "idempotency_key": "a"}, **{"Idempotency-Key": "b"}
    )
    assert response.status_code == 409 and response.json()["field"] == "idempotency_key"


def test_send_at_schedules(server: Running) -> None:
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = submit(server, {"to": TO, "body": "later", "send_at": when})
    assert response.status_code == 201 and response.json()["status"] == "scheduled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "no recipient"}, "to"),
        ({"to": TO, "body": 5}, "body"),
        ({"to": TO, "body": "x" * 1601}, "body"),
        ({"to": TO, "body": "x", "purpose": "spam"}, "purpose"),
        ({"to": TO, "body": "x", "surprise": 1}, "surprise"),
        ({"to": TO, "body": ""}, "body"),
        ({"to": TO, "body": "x", "send_at": "2024-05-01T10:00:00"}, "send_at"),
    ],
)
def test_malformed_messages_get_422_naming_the_field(
    server: Running, body: dict[str, Any], field: str
) -> None:
    response = submit(server, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field, error
    assert error["message"] and "Traceback" not in response.text


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'{"to": '])
def test_bodies_that_are_not_json_objects_get_422(server: Running, raw: bytes) -> None:
    response = server.api.post(
        server.url + "/v1/messages", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("fast", [True, False])
def test_fast_path_and_route_answer_alike(
    server_factory: ServerFactory, sqlite_url: str, fast: bool
) -> None:
    running = server_factory(sqlite_url, server={"fast_submit": fast})
    ok = submit(running, {"to": TO, "body": "hi"}, **{"Idempotency-Key": "k"})
    again = submit(running, {"to": TO, "body": "hi"}, **{"Idempotency-Key": "k"})
    bad = submit(running, {"to": TO})
    wrong = submit(running, {"to": "12", "body": "x"})
    assert (ok.status_code, again.status_code, bad.status_code, wrong.status_code) == (
        201,
        200,
        422,
        422,
    )
    assert set(ok.json()) == {"id", "status", "to", "created"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert bad.json()["field"] == "body" and wrong.json()["error"] == "invalid_recipient"
    long_key = submit(running, {"to": TO, "body": "x"}, **{"Idempotency-Key": "k" * 201})
    assert long_key.status_code == 422


# -- batch --------------------------------------------------------------------------------------


def test_batch_gives_one_result_per_item_in_order(server: Running) -> None:
    messages = [
        {"to": TO, "body": "a"},
        {"to": "not a number", "body": "b"},
        {"to": "+15555550101", "body": "c", "idempotency_key": "k1"},
        {"to": "+15555550101", "body": "c", "idempotency_key": "k1"},
        {"to": "+15555550102", "body": ""},
    ]
    response = server.post("/v1/messages/batch", json={"messages": messages})
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["created"] and results[0]["status"] == "queued"
    assert results[1]["error"]["error"] == "invalid_recipient" and results[1]["id"] is None
    assert results[2]["created"] and not results[3]["created"]
    assert results[3]["id"] == results[2]["id"] and results[3]["status"] == "queued"
    assert results[4]["error"]["field"] == "body"
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    assert len(server.outbox.list().items) == 2


def test_batch_over_the_limit_is_refused_whole(server: Running) -> None:
    messages = [{"to": TO, "body": "x"}] * 10_001
    response = server.post("/v1/messages/batch", json={"messages": messages})
    assert response.status_code == 422 and response.json()["field"] == "messages"
    assert server.outbox.list().items == []


# -- read, list, cancel -------------------------------------------------------------------------


def test_get_returns_state_and_history(server: Running) -> None:
    mid = submit(server, {"to": TO, "body": "hello"}).json()["id"]
    response = server.get(f"/v1/messages/{mid}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == mid and body["status"] == "queued" and body["body"] == "hello"
    assert [(e["from"], e["to"], e["source"]) for e in body["events"]] == [
        (None, "queued", "submit")
    ]


def test_unknown_message_is_404(server: Running) -> None:
    response = server.get("/v1/messages/msg_nope")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert server.post("/v1/messages/msg_nope/cancel").status_code == 404


def test_list_filters_and_pages(server: Running) -> None:
    ids = [submit(server, {"to": f"+1555555010{i}", "body": str(i)}).json()["id"] for i in range(5)]
    server.post(f"/v1/messages/{ids[0]}/cancel")
    first = server.get("/v1/messages", params={"limit": 2}).json()
    assert [m["id"] for m in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    second = server.get("/v1/messages", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [m["id"] for m in second["items"]] == ids[::-1][2:4]
    canceled = server.get("/v1/messages", params={"status": "canceled"}).json()
    assert [m["id"] for m in canceled["items"]] == [ids[0]]
    to = server.get("/v1/messages", params={"to": "+15555550103"}).json()
    assert [m["id"] for m in to["items"]] == [ids[3]]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert server.get("/v1/messages", params={"since": later}).json()["items"] == []
    assert server.get("/v1/messages", params={"status": "nonsense"}).status_code == 422
    naive = server.get("/v1/messages", params={"since": "2024-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "since"


def test_cancel_a_queued_message_then_refuse_to_cancel_a_sent_one(server: Running) -> None:
    mid = submit(server, {"to": TO, "body": "x"}).json()["id"]
    response = server.post(f"/v1/messages/{mid}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert server.post(f"/v1/messages/{mid}/cancel").status_code == 200  # a no-op
    sent = submit(server, {"to": TO, "body": "y"}).json()["id"]
    _force_sent(server, sent)
    refused = server.post(f"/v1/messages/{sent}/cancel")
    assert refused.status_code == 409 and refused.json()["error"] == "not_cancelable"


def _force_sent(server: Running, message_id: str) -> None:
    from smsgate.message import DeliveryEvent, Status

    server.outbox.record_event(
        DeliveryEvent(
            provider="p",
            provider_message_id="SM1",
            status=Status.SENT,
            event_id="e1",
            message_id=message_id,
        )
    )


# -- tools and health ---------------------------------------------------------------------------


def test_segments_preview(server: Running) -> None:
    gsm = server.get("/v1/segments", params={"text": "Hello €"}).json()
    assert (gsm["encoding"], gsm["units"], gsm["segments"]) == ("GSM-7", 8, 1)
    ucs2 = server.get("/v1/segments", params={"text": "Привет" * 20}).json()
    assert ucs2["encoding"] == "UCS-2" and ucs2["segments"] == 2
    assert server.get("/v1/segments").status_code == 422


def test_lookup(server: Running) -> None:
    info = server.get("/v1/lookup/+442079460958").json()
    assert info["region"] == "GB" and info["type"] == "fixed_line" and info["valid"] is True
    # the API takes E.164 only (its schema says so); the library and CLI take national numbers
    formatted = server.get("/v1/lookup/+1 201 555 0123")
    assert formatted.status_code == 422 and "+12015550123" in formatted.json()["fix"]
    bad = server.get("/v1/lookup/hello")
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_recipient"


def test_health_and_readiness_need_no_key(server: Running) -> None:
    assert server.anonymous.get(server.url + "/healthz").json()["status"] == "ok"
    ready = server.anonymous.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"


def test_readyz_and_submit_are_503_when_the_store_breaks(
    server_factory: ServerFactory, sqlite_url: str
) -> None:
    import sqlite3

    running = server_factory(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # another process wrecks the schema
        conn.execute("ALTER TABLE smsgate_schema_version RENAME TO gone")
        conn.execute("ALTER TABLE smsgate_messages RENAME TO gone_too")
    response = running.anonymous.get(running.url + "/readyz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
    failed = submit(running, {"to": TO, "body": "x"})
    assert failed.status_code == 503 and failed.json()["error"] == "unavailable"
    assert failed.headers["Retry-After"] == "1" and "Traceback" not in failed.text


def test_unknown_paths_and_methods_are_json(server: Running) -> None:
    missing = server.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = server.api.put(server.url + "/v1/messages", json={})
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_openapi_and_docs_are_served(server: Running) -> None:
    schema = server.anonymous.get(server.url + "/openapi.json").json()
    for path in (
        "/v1/messages",
        "/v1/messages/batch",
        "/v1/messages/{message_id}",
        "/v1/messages/{message_id}/cancel",
        "/v1/segments",
        "/v1/lookup/{number}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/inbound",
        "/v1/suppressions",
        "/v1/webhooks",
        "/webhooks/{provider}/status",
        "/webhooks/{provider}/inbound",
    ):
        assert path in schema["paths"], path
    assert schema["paths"]["/v1/messages"]["post"]["security"] == [{"bearer": []}]
    assert "401" in schema["paths"]["/v1/messages"]["post"]["responses"]
    docs = server.anonymous.get(server.url + "/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
