"""Inputs that used to poison the store, through the HTTP API, on both engines: refused with a
4xx naming the field, and afterwards every read still answers 200."""

from __future__ import annotations

from typing import Any

import pytest
from tests.server.conftest import Running

TO = "+15555550100"

POISON: list[tuple[str, dict[str, Any]]] = [
    ("send_at", {"send_at": "0001-01-01T00:00:00+14:00"}),
    ("send_at", {"send_at": "2200-01-01T00:00:00Z"}),
    ("send_at", {"send_at": 0}),
    ("body", {"body": "a\x00b"}),
    ("metadata", {"metadata": {"note": "x\x00"}}),
    ("to", {"to": "0"}),
]


def reads_answer(server: Running) -> None:
    listed = server.get("/v1/messages")
    assert listed.status_code == 200, listed.text
    for item in listed.json()["items"]:
        assert server.get(f"/v1/messages/{item['id']}").status_code == 200
    assert server.get("/v1/messages", params={"status": "queued"}).status_code == 200


@pytest.mark.parametrize(("field", "values"), POISON, ids=[f for f, _ in POISON])
def test_poison_is_refused_and_reads_still_answer(
    server: Running, field: str, values: dict[str, Any]
) -> None:
    single = server.post("/v1/messages", json={"to": TO, "body": "hi", **values})
    assert single.status_code == 422, single.text
    assert (single.json()["field"] or "").startswith(field), single.json()
    batch = server.post(
        "/v1/messages/batch",
        json={"messages": [{"to": TO, "body": "ok"}, {"to": TO, "body": "x", **values}]},
    )
    if batch.status_code == 200:  # refused per item: the other one is stored
        results = batch.json()["results"]
        assert results[0]["created"] and results[1]["error"]["field"].startswith(field)
    else:  # a type error refuses the batch as a whole
        assert batch.status_code == 422 and field in batch.json()["field"], batch.text
    reads_answer(server)


def test_a_lone_surrogate_is_invalid_json(server: Running) -> None:
    raw = b'{"to": "+15555550100", "body": "a\\udcffb"}'
    answer = server.post("/v1/messages", data=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    reads_answer(server)


@pytest.mark.parametrize("path", ["msg_%00x", "msg%20x", "x" * 101])
def test_a_malformed_id_is_not_found_on_both_engines(server: Running, path: str) -> None:
    assert server.get(f"/v1/messages/{path}").status_code == 404
    assert server.post(f"/v1/messages/{path}/cancel").status_code == 404
    assert server.get(f"/v1/webhooks/{path}").status_code == 404
    assert server.delete(f"/v1/webhooks/{path}").status_code == 404
    assert server.post(f"/v1/webhooks/dead-letters/{path}/retry").status_code == 404
    for where in ("/v1/messages", "/v1/inbound", "/v1/webhooks/deliveries"):
        answer = server.get(where, params={"cursor": "msg_\x00x"})
        assert answer.status_code == 422 and answer.json()["field"] == "cursor", answer.text
    reads_answer(server)


def test_a_formatted_number_is_refused_with_its_e164_form(server: Running) -> None:
    answer = server.post("/v1/messages", json={"to": "+1 555 555 0100", "body": "hi"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "to" and "+15555550100" in answer.json()["fix"]


def test_a_405_lists_every_method_of_the_path(server: Running) -> None:
    answer = server.api.put(f"{server.url}/v1/messages")
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    # a concrete path lists its own methods, not those of a template that also matches it
    for path, methods in [
        ("/v1/webhooks/deliveries", {"GET", "HEAD"}),
        ("/v1/messages/batch", {"POST"}),
        ("/v1/webhooks/whk_1", {"GET", "HEAD", "DELETE"}),
    ]:
        answer = server.api.options(f"{server.url}{path}")
        assert answer.status_code == 405
        assert set(answer.headers["Allow"].split(", ")) == methods, path


def test_a_metadata_key_with_nul_is_refused_as_the_schema_says(server: Running) -> None:
    answer = server.post("/v1/messages", json={"to": TO, "body": "x", "metadata": {"a\x00": 1}})
    assert answer.status_code == 422 and answer.json()["field"].startswith("metadata")
    schema = server.get("/openapi.json").json()
    message_in = schema["components"]["schemas"]["MessageIn"]["properties"]["metadata"]
    assert message_in["additionalProperties"] is False and "propertyNames" in message_in
