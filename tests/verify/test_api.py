"""The verify API on a real server (uvicorn on loopback) over SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import requests

from smsgate.clock import FakeClock
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.outbox.tables.server import ServerStore, Subscription
from tests.verify.conftest import SECRET, ServeFactory, last_code

TO = "+14155552671"
BOT = "+234803"
FIELDS = {
    "id", "to", "channel", "status", "valid", "created_at", "updated_at", "expires_at",
    "attempts", "attempts_left", "sends", "max_sends", "locale", "country", "reason",
}  # fmt: skip


def test_start_get_check_cancel(serve: ServeFactory) -> None:
    served = serve()
    made = served.post("/v1/verifications", json={"to": TO, "locale": "fr"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert set(body) == FIELDS
    assert (body["status"], body["valid"], body["attempts_left"]) == ("pending", False, 5)
    ident = body["id"]
    code = last_code(served.verify, ident)

    got = served.get(f"/v1/verifications/{ident}").json()
    assert got["id"] == ident and got["status"] == "pending"

    wrong = served.post(f"/v1/verifications/{ident}/check", json={"code": "x"}).json()
    assert (wrong["status"], wrong["valid"], wrong["attempts_left"]) == ("pending", False, 4)
    right = served.post(
        "/v1/verifications/check", json={"to": TO, "code": f"{code[:3]}-{code[3:]}"}
    )
    assert right.status_code == 200 and right.json()["valid"] is True
    assert right.json()["status"] == "approved"
    again = served.post(f"/v1/verifications/{ident}/check", json={"code": code}).json()
    assert again["valid"] is False

    other = served.post("/v1/verifications", json={"to": "+447400123456"}).json()
    canceled = served.post(f"/v1/verifications/{other['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    # no code, hash or salt in any answer
    rows = served.verify.store.list_rows()
    texts = made.text + wrong.__repr__() + right.text + canceled.text
    for row in rows:
        for secret in (row.code_hash, row.salt):
            assert secret and secret not in texts
    assert code not in made.text + canceled.text + served.get(f"/v1/verifications/{ident}").text


def test_errors_name_the_field_and_the_fix(serve: ServeFactory) -> None:
    served = serve({"countries": {"deny": ["FR"]}, "limits": {"number_starts": "1/10m"}})
    bad = served.post("/v1/verifications", json={"to": "12"})
    assert bad.status_code == 422 and bad.json()["field"] == "to"
    short = served.post("/v1/verifications", json={"to": TO, "code_length": 3})
    assert short.status_code == 422 and short.json()["field"] == "code_length"
    extra = served.post("/v1/verifications", json={"to": TO, "code": "123456"})
    assert extra.status_code == 422

    denied = served.post("/v1/verifications", json={"to": "+33612345678"})
    assert denied.status_code == 403
    body = denied.json()
    assert body["error"] == "verification_blocked" and "country FR" in body["message"]
    assert body["verification"]["status"] == "blocked" and body["verification"]["id"]

    served.post("/v1/verifications", json={"to": TO})
    served.post(f"/v1/verifications/{served.verify.store.list_rows(to=TO)[0].id}/cancel")
    limited = served.post("/v1/verifications", json={"to": TO})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "number_starts" in limited.json()["message"]

    missing = served.get("/v1/verifications/ver_01NOSUCH")
    assert missing.status_code == 404 and missing.json()["field"] == "id"
    anonymous = requests.post(served.url + "/v1/verifications", json={"to": TO}, timeout=10)
    assert anonymous.status_code == 401


def test_a_check_by_number_answers_the_same_whether_or_not_one_is_pending(
    serve: ServeFactory,
) -> None:
    served = serve()
    ident = served.post("/v1/verifications", json={"to": TO}).json()["id"]
    code = last_code(served.verify, ident)
    guess = "000000" if code != "000000" else "111111"
    pending = served.post("/v1/verifications/check", json={"to": TO, "code": guess})
    nobody = served.post("/v1/verifications/check", json={"to": "+447400123456", "code": guess})
    assert pending.status_code == nobody.status_code == 200
    assert set(pending.json()) == set(nobody.json()) == FIELDS
    for answer in (pending.json(), nobody.json()):
        assert (answer["status"], answer["valid"], answer["attempts_left"]) == ("pending", False, 4)
    assert nobody.json()["id"].startswith("ver_") and nobody.json()["id"] != ident
    # once approved, the number has nothing pending: the same answer again
    served.post(f"/v1/verifications/{ident}/check", json={"code": code})
    over = served.post("/v1/verifications/check", json={"to": TO, "code": code})
    assert over.status_code == 200 and set(over.json()) == FIELDS
    assert over.json()["status"] == "pending" and over.json()["valid"] is False


def test_api_key_scope(serve: ServeFactory) -> None:
    served = serve()
    marketing = served.key("marketing", purposes=["marketing"])
    refused = marketing.post(served.url + "/v1/verifications", json={"to": TO}, timeout=10)
    assert refused.status_code == 403 and "--purpose verify" in refused.json()["fix"]
    only_verify = served.key("signup", purposes=["verify"])
    made = only_verify.post(served.url + "/v1/verifications", json={"to": TO}, timeout=10)
    assert made.status_code == 201
    # a key limited to verify sends no other message
    sent = only_verify.post(served.url + "/v1/messages", json={"to": TO, "body": "hi"}, timeout=10)
    assert sent.status_code == 403
    sent = only_verify.post(
        served.url + "/v1/messages", json={"to": TO, "body": "hi", "purpose": "otp"}, timeout=10
    )
    assert sent.status_code == 403
    # nor read the outbox, whose texts carry the codes of pending verifications
    listed = only_verify.get(served.url + "/v1/messages", timeout=10)
    assert listed.status_code == 403 and listed.json()["error"] == "forbidden"
    assert served.get("/v1/messages").status_code == 200  # an unrestricted key still can
    blocks = only_verify.get(served.url + "/v1/verify/blocks", timeout=10)
    assert blocks.status_code == 200


def test_verify_not_configured(serve: ServeFactory, store_url: str) -> None:
    from smsgate.config import Config
    from smsgate.outbox.cli_support import open_outbox
    from smsgate.server.app import create_app
    from smsgate.server.auth import create_key
    from smsgate.server.runner import ServerThread

    config = Config.from_dict({"store": store_url})
    outbox = open_outbox(config, migrate=True)
    thread = ServerThread(lambda url: create_app(config, outbox=outbox, worker=False))
    try:
        key = create_key(ServerStore.of(outbox.store), "t").key
        answer = requests.post(
            thread.url + "/v1/verifications",
            json={"to": TO},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert answer.status_code == 404 and "[verify]" in answer.json()["fix"]
        assert answer.json()["error"] == "not_configured"
    finally:
        thread.stop()
        outbox.close()


def test_client_ip_from_a_trusted_proxy_only(serve: ServeFactory) -> None:
    plain = serve()
    plain.post("/v1/verifications", json={"to": TO}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert plain.verify.decisions()[0].client_ip == "127.0.0.1"

    proxied = serve({"client_ip_header": "X-Forwarded-For", "trusted_proxies": ["127.0.0.1/32"]})
    proxied.post(
        "/v1/verifications",
        json={"to": "+447400123456"},
        headers={"X-Forwarded-For": "198.51.100.4, 203.0.113.9"},
    )
    assert proxied.verify.decisions(to="+447400123456")[0].client_ip == "203.0.113.9"


def test_pumping_block_webhook_metric_and_unblock(serve: ServeFactory) -> None:
    clock = FakeClock(time.time())
    served = serve({"pumping": {"min_volume": 5, "grace": "1m", "window": "10m"}}, clock=clock)
    store = ServerStore.of(served.outbox.store)
    store.add_subscription(
        Subscription("whs_1", "http://127.0.0.1:9/hook", ("verify.*",), "s" * 32, None, 0.0)
    )
    status = 201
    sent = 0
    for n in range(60):
        answer = served.post("/v1/verifications", json={"to": f"{BOT}{n:07d}"})
        status = answer.status_code
        if status != 201:
            break
        sent += 1
        clock.advance(20)
    assert status == 403 and sent < 20
    body = answer.json()
    assert "blocked for SMS pumping" in body["message"] and "verify unblock" in body["fix"]

    (delivery,) = store.list_deliveries()
    assert (
        delivery.event_type == "verify.blocked"
        and f'"prefix":"{BOT}"' in delivery.payload.replace(" ", "")
    )
    metrics = requests.get(served.url + "/metrics", timeout=10).text
    assert "smsgate_verify_blocks_total 1.0" in metrics
    assert "smsgate_verify_blocked_prefixes 1.0" in metrics
    assert 'smsgate_verify_decisions_total{action="start",outcome="blocked"} 1.0' in metrics

    blocks = served.get("/v1/verify/blocks").json()["items"]
    assert [b["prefix"] for b in blocks] == [BOT]
    lifted = served.api.delete(served.url + "/v1/verify/blocks/%2B234803", timeout=10)
    assert lifted.status_code == 200 and lifted.json()["items"][0]["lifted_by"] == "api key tests"
    assert served.get("/v1/verify/blocks").json()["items"] == []
    again = served.api.delete(served.url + "/v1/verify/blocks/%2B234803", timeout=10)
    assert again.status_code == 404
    assert served.post("/v1/verifications", json={"to": f"{BOT}9999999"}).status_code == 201


def test_no_code_or_hash_in_metrics_or_logs(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    served = serve()
    ident = served.post("/v1/verifications", json={"to": TO}).json()["id"]
    code = last_code(served.verify, ident)
    served.post(f"/v1/verifications/{ident}/check", json={"code": "000000"})
    served.post(f"/v1/verifications/{ident}/check", json={"code": code})
    (row,) = served.verify.store.list_rows()
    metrics = requests.get(served.url + "/metrics", timeout=10).text
    assert 'smsgate_verify_decisions_total{action="check",outcome="allowed"} 2.0' in metrics
    for secret in (code, row.code_hash, row.salt, SECRET):
        assert secret and secret not in metrics and secret not in caplog.text


def test_known_and_unknown_numbers_take_the_same_time(serve: ServeFactory) -> None:
    """A check by number answers a number with a pending verification (wrong code) and one
    never seen after the same work. Each known check is timed next to an unknown one, so a
    shared machine's load moves both; the median ratio of the pairs stays near 1."""
    served = serve({"limits": {"ip_starts": "off", "ip_checks": "off"}})
    known = [f"+1415555{n:04d}" for n in range(2000, 2070)]
    unknown = [f"+1415555{n:04d}" for n in range(3000, 3070)]
    for number in known:
        assert served.post("/v1/verifications", json={"to": number}).status_code == 201

    def timed(number: str) -> tuple[float, int]:
        began = time.perf_counter()
        answer = served.post("/v1/verifications/check", json={"to": number, "code": "000000"})
        return time.perf_counter() - began, answer.status_code

    for number in known[:10] + unknown[:10]:  # warm up connections and caches
        timed(number)
    ratios: list[float] = []
    known_times: list[float] = []
    unknown_times: list[float] = []
    for n, (a, b) in enumerate(zip(known[10:], unknown[10:], strict=True)):
        first, second = (a, b) if n % 2 else (b, a)  # alternate which goes first
        took_first, status_first = timed(first)
        took_second, status_second = timed(second)
        took = {first: (took_first, status_first), second: (took_second, status_second)}
        assert took[a][1] == 200 and took[b][1] == 200
        known_times.append(took[a][0])
        unknown_times.append(took[b][0])
        ratios.append(took[b][0] / took[a][0])
    k, u = statistics.median(known_times), statistics.median(unknown_times)
    ratio = statistics.median(ratios)
    print(
        f"\ncheck by number: known median {k * 1e3:.2f} ms, unknown {u * 1e3:.2f} ms, "
        f"median ratio {ratio:.2f}"
    )
    assert 2 / 3 < ratio < 3 / 2


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_offline_signup_with_the_emulator(serve: ServeFactory) -> None:
    emulator = TwilioEmulator()
    with emulator.run_in_thread():
        served = serve(
            {"webotp_origin": "example.com", "app_name": "Example"},
            worker=True,
            providers={"twilio": {"url": emulator.provider_url()}},
        )
        ident = served.post("/v1/verifications", json={"to": TO}).json()["id"]
        found: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = requests.get(emulator.url + "/_emulator/codes", params={"to": TO}, timeout=5)
            if answer.status_code == 200:
                found = answer.json()
                break
            time.sleep(0.05)
        assert found, "the worker never sent the text to the emulator"
        (message,) = [m for m in emulator.messages if m.to == TO]
        assert message.body.splitlines()[-1] == f"@example.com #{found['code']}"
        assert message.body.startswith("Your Example code is")
        # the real code went out; every read of the outbox shows it masked
        code = found["code"]
        assert code in message.body
        (text,) = served.verify.store.list_rows(to=TO)[0].messages
        masked = message.body.replace(code, "\u2022" * len(code))
        one = served.get(f"/v1/messages/{text}")
        listed = served.get("/v1/messages", params={"to": TO})
        assert one.status_code == listed.status_code == 200
        assert one.json()["body"] == masked and listed.json()["items"][0]["body"] == masked
        for item in (one.json(), listed.json()["items"][0]):
            assert code not in item["body"] and code not in str(item["metadata"])
        check = served.post(f"/v1/verifications/{ident}/check", json={"code": code})
        assert check.json()["valid"] is True
        missing = requests.get(emulator.url + "/_emulator/codes?to=%2B1999", timeout=5)
        assert missing.status_code == 404


def test_twenty_concurrent_right_checks_over_http_approve_once(serve: ServeFactory) -> None:
    """Through the API (fast path and grouped transactions): one of twenty is valid."""
    import threading

    served = serve()
    ident = served.post("/v1/verifications", json={"to": TO}).json()["id"]
    code = last_code(served.verify, ident)
    barrier = threading.Barrier(20)
    answers: list[dict[str, Any]] = []

    def run() -> None:
        with requests.Session() as session:
            session.headers.update(served.api.headers)
            barrier.wait()
            answer = session.post(
                f"{served.url}/v1/verifications/{ident}/check", json={"code": code}, timeout=30
            )
            answers.append(answer.json())

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 20
    assert sum(a["valid"] for a in answers) == 1
    assert {a["status"] for a in answers} == {"approved"}
