"""Every console page and action over real HTTP on loopback: sign-in, sessions, CSRF, lockout,
roles, the log's filters and pages, the message page and its actions, the operations pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from smsgate.clock import FakeClock
from smsgate.console.auth import Role
from smsgate.message import Message, Purpose
from smsgate.outbox.sql import SqlStore
from smsgate.outbox.tables.pauses import ProviderPauses
from smsgate.outbox.tables.server import InboundRecord, Subscription
from smsgate.server.auth import create_key
from smsgate.server.webhooks_out import make_event
from smsgate.verify import Verify
from tests.console.conftest import CSRF, PASSWORD, ConsoleFactory, ConsoleServer

PAGES = (
    "/",
    "/messages",
    "/compose",
    "/inbound",
    "/suppressions",
    "/keys",
    "/webhooks",
    "/providers",
)
LATER = datetime.now(UTC) + timedelta(days=2)


def sql(console: ConsoleServer) -> SqlStore:
    store = console.running.outbox.store
    assert isinstance(store, SqlStore)
    return store


def submit(console: ConsoleServer, **fields: Any) -> str:
    values = {"to": "+15555550100", "body": "hello", **fields}
    return console.running.outbox.submit(Message(**values))


def set_row(console: ConsoleServer, message_id: str, **columns: Any) -> None:
    names = ", ".join(f"{name} = ?" for name in columns)
    with sql(console).write_transaction() as tx:
        tx.execute(
            f"UPDATE smsgate_messages SET {names} WHERE id = ?", [*columns.values(), message_id]
        )


def ids_on(page: requests.Response) -> list[str]:
    import re

    return re.findall(r'class="mono">(msg_[0-9A-Z]+)</a>', page.text)


# -- sign-in, sessions, CSRF, lockout ---------------------------------------------------------


def test_every_page_and_action_needs_a_session(console: ConsoleServer) -> None:
    anonymous = console.anonymous()
    for path in (*PAGES, "/messages/msg_x", "/live"):
        answer = anonymous.get(console.url + path, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next=%2Fconsole")
    for path in ("/providers/alpha/pause", "/keys", "/suppressions", "/messages/msg_x/cancel"):
        answer = anonymous.post(console.url + path, data={}, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, path
    assert ProviderPauses(sql(console)).names() == frozenset()
    css = anonymous.get(console.url + "/static/console.css", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert anonymous.get(console.url + "/static/../app.py", timeout=10).status_code == 404


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it(
    console_any: ConsoleServer,
) -> None:
    console = console_any
    name = console.user(Role.READONLY)
    session = console.anonymous()
    answer = console.sign_in(session, name, PASSWORD)
    assert answer.url.endswith("/console/")
    cookie = answer.history[0].headers["set-cookie"]
    assert "smsgate_console=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    assert "Content-Security-Policy" in answer.headers
    token = session.cookies["smsgate_console"]
    with sql(console).read_transaction() as tx:  # only a hash of the token is stored
        assert not tx.execute(
            "SELECT 1 FROM smsgate_console_sessions WHERE token_hash = ?", (token,)
        )
    logout = console.post(session, "/logout")
    assert logout.url.endswith("/console/login")
    replay = requests.get(
        console.url + "/", cookies={"smsgate_console": token}, allow_redirects=False, timeout=10
    )
    assert replay.status_code == 303  # the session is gone on the server, not just the cookie


def test_cookie_is_secure_behind_tls(console_factory: ConsoleFactory, sqlite_url: str) -> None:
    console = console_factory(sqlite_url, public_url="https://sms.example.com")
    name = console.user(Role.ADMIN)
    page = requests.get(console.url + "/login", timeout=10)
    assert "Secure" in page.headers["set-cookie"]
    token = CSRF.search(page.text)
    assert token is not None
    # a browser sends a Secure cookie only over https; the proxy in front speaks http to us
    answer = requests.post(
        console.url + "/login",
        data={"name": name, "password": PASSWORD, "csrf": token[1]},
        cookies={"smsgate_console_login": page.cookies["smsgate_console_login"]},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "smsgate_console=" in cookie and "Secure" in cookie and "HttpOnly" in cookie


def test_sign_in_form_needs_its_csrf_token(console: ConsoleServer) -> None:
    name = console.user(Role.ADMIN)
    session = console.anonymous()
    forged = session.post(
        console.url + "/login", data={"name": name, "password": PASSWORD}, timeout=10
    )
    assert forged.status_code == 403 and "out of date" in forged.text
    assert "smsgate_console" not in session.cookies
    # the page it answered with carries a token that works
    token = CSRF.search(forged.text)
    assert token is not None
    ok = session.post(
        console.url + "/login",
        data={"name": name, "password": PASSWORD, "csrf": token[1]},
        timeout=10,
    )
    assert ok.url.endswith("/console/")


def test_lockout_after_repeated_failures_lifts_on_the_clock(
    console_factory: ConsoleFactory, sqlite_url: str
) -> None:
    clock = FakeClock(start=datetime.now(UTC).timestamp())
    console = console_factory(
        sqlite_url, clock=clock, console={"max_failures": 3, "lockout": "10min"}
    )
    name = console.user(Role.ADMIN)
    session = console.anonymous()
    for _ in range(2):
        assert console.sign_in(session, name, "wrong password").status_code == 401
    locked = console.sign_in(session, name, "wrong password")
    assert locked.status_code == 429 and "locked for 10 more minutes" in locked.text
    right = console.sign_in(session, name, PASSWORD)
    assert right.status_code == 429  # the right password does not get through a lock
    # unknown names lock the same way (no telling them apart)
    for _ in range(3):
        unknown = console.sign_in(session, "nobody", "wrong password")
    assert unknown.status_code == 429
    clock.advance(9 * 60)
    assert console.sign_in(session, name, PASSWORD).status_code == 429
    clock.advance(61)
    assert console.sign_in(session, name, PASSWORD).url.endswith("/console/")
    # a success resets the count
    other = console.anonymous()
    for _ in range(2):
        assert console.sign_in(other, name, "wrong password").status_code == 401


def test_api_key_with_the_console_scope_signs_in_until_revoked(console: ConsoleServer) -> None:
    store = console.running.store
    scoped = create_key(store, "ops")
    plain = create_key(store, "backend")
    assert console.auth.grant_key(scoped.record.id, Role.READONLY)
    assert not console.auth.grant_key("nosuchkey", Role.ADMIN)
    refused = console.sign_in(console.anonymous(), "", plain.key)
    assert refused.status_code == 403 and "no console access" in refused.text
    wrong = console.sign_in(console.anonymous(), "", scoped.key[:-2] + "xx")
    assert wrong.status_code == 401
    session = console.anonymous()
    ok = console.sign_in(session, "", scoped.key)
    assert ok.url.endswith("/console/") and f"key {scoped.record.id}" in ok.text
    assert "readonly" in ok.text
    store.revoke_key(scoped.record.id, console.running.services.clock.time())
    after = session.get(console.url + "/", allow_redirects=False, timeout=10)
    assert after.status_code == 303  # a revoked key's session ends with it


def test_after_sign_in_only_pages_of_the_console(console: ConsoleServer) -> None:
    name = console.user(Role.ADMIN)
    session = console.anonymous()
    page = session.get(console.url + "/login", timeout=10)
    token = CSRF.search(page.text)
    assert token is not None
    for target, lands in (
        ("https://evil.example/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/console/messages?state=failed", "/console/messages?state=failed"),
    ):
        session.cookies.pop("smsgate_console", None)
        answer = session.post(
            console.url + "/login",
            data={"name": name, "password": PASSWORD, "csrf": token[1], "next": target},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.headers["location"] == lands
        token = CSRF.search(session.get(console.url + "/login", timeout=10).text) or token


# -- roles and CSRF on actions ----------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.READONLY, Role.ADMIN])
def test_every_page_renders_for_each_role(console: ConsoleServer, role: Role) -> None:
    session = console.login(role)
    for path in PAGES:
        page = session.get(console.url + path, timeout=10)
        assert page.status_code == 200, (path, page.text[:300])
        assert 'lang="en"' in page.text and "<main" in page.text
        assert ("Sign out" in page.text) and role.value in page.text
    admin_only = ('action="/console/keys"', 'action="/console/suppressions"', "Pause")
    providers = session.get(console.url + "/providers", timeout=10).text
    keys = session.get(console.url + "/keys", timeout=10).text
    shown = [needle in providers + keys for needle in admin_only[:1]] + ["Pause" in providers]
    assert all(shown) is (role is Role.ADMIN)


def test_read_only_role_changes_nothing(console: ConsoleServer) -> None:
    scheduled = submit(console, send_at=LATER)
    key = create_key(console.running.store, "victim")
    session = console.login(Role.READONLY)
    attempts = [
        ("/providers/alpha/pause", {}),
        (f"/messages/{scheduled}/cancel", {}),
        (f"/messages/{scheduled}/resend", {}),
        ("/compose", {"to": "+15555550100", "body": "x"}),
        ("/suppressions", {"recipient": "+15555550123", "reason": "x"}),
        ("/suppressions/remove", {"recipient": "+15555550123"}),
        ("/keys", {"name": "mine"}),
        (f"/keys/{key.record.id}/revoke", {}),
        ("/deliveries/dlv_x/redeliver", {}),
    ]
    for path, data in attempts:
        answer = console.post(session, path, data)
        assert answer.status_code == 403, path
        assert "read-only role" in answer.text
    assert ProviderPauses(sql(console)).names() == frozenset()
    assert console.running.outbox.status(scheduled).state == "scheduled"
    assert console.running.store.list_suppressions() == []
    assert [k.name for k in console.running.store.list_keys()] == ["tests", "victim"]
    assert console.running.store.get_key(key.record.id).revoked_at is None  # type: ignore[union-attr]
    assert len(console.running.outbox.list(limit=100).items) == 1


def test_every_action_checks_the_csrf_token(console: ConsoleServer) -> None:
    scheduled = submit(console, send_at=LATER)
    session = console.login(Role.ADMIN)
    for path in ("/providers/alpha/pause", f"/messages/{scheduled}/cancel", "/logout"):
        for token in ("", "forged"):
            answer = session.post(console.url + path, data={"csrf": token}, timeout=10)
            assert answer.status_code == 403 and "security token" in answer.text, path
    another = console.login(Role.ADMIN)  # a token of another session does not do either
    answer = session.post(
        console.url + "/providers/alpha/pause", data={"csrf": console.csrf(another)}, timeout=10
    )
    assert answer.status_code == 403
    assert ProviderPauses(sql(console)).names() == frozenset()
    assert console.running.outbox.status(scheduled).state == "scheduled"
    assert session.get(console.url + "/", timeout=10).url.endswith("/console/")  # still signed in
    wrong_type = session.post(
        console.url + "/providers/alpha/pause",
        data=json.dumps({"csrf": console.csrf(session)}),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert wrong_type.status_code == 415


# -- the log ----------------------------------------------------------------------------------


def test_log_filters_and_keyset_pages(store_url: str, console_factory: ConsoleFactory) -> None:
    # store_url first: its schema is dropped after the server stops
    console = console_factory(store_url, console={"page_size": 10})
    made = {}
    for i in range(25):
        made[i] = submit(console, to=f"+1555555{i:04d}", body=f"n{i}", send_at=LATER)
    uk = submit(console, to="+447700900123", purpose="otp", send_at=LATER)
    failed = submit(console, to="+15555559999")
    set_row(
        console,
        failed,
        state="failed",
        provider="beta",
        route="default",
        next_attempt_at=None,
        last_error=json.dumps(
            {"error": "invalid_recipient", "code": "21211", "message": "bad"}, separators=(",", ":")
        ),
    )
    delivered = submit(console, to="+15555558888")
    set_row(
        console,
        delivered,
        state="delivered",
        provider="alpha",
        route="default",
        next_attempt_at=None,
    )
    session = console.login(Role.READONLY)

    def log(**params: str) -> requests.Response:
        return session.get(console.url + "/messages", params=params, timeout=10)

    first = log()
    assert ids_on(first) == [delivered, failed, uk, *[made[i] for i in range(24, 17, -1)]]
    before = first.text.split('rel="next" href="/console/messages?')[1].split('"')[0]
    second = session.get(console.url + "/messages?" + before.replace("&amp;", "&"), timeout=10)
    assert ids_on(second) == [made[i] for i in range(17, 7, -1)]
    third = log(before=made[8])
    assert ids_on(third) == [made[i] for i in range(7, -1, -1)]
    assert 'rel="next"' not in third.text
    assert ids_on(log(state="failed")) == [failed]
    assert ids_on(log(state="failed", provider="alpha")) == []
    assert ids_on(log(state="delivered", provider="alpha", window="24h")) == [delivered]
    assert ids_on(log(provider="beta", route="default")) == [failed]
    assert ids_on(log(purpose="otp")) == [uk]
    assert ids_on(log(country="GB")) == [uk]
    assert ids_on(log(country="44")) == [uk]
    assert ids_on(log(recipient="+1 555 555 0003")) == [made[3]]
    assert ids_on(log(q="5550003")) == [made[3]]
    assert ids_on(log(error="21211")) == [failed]
    assert ids_on(log(error="invalid_recipient")) == [failed]
    assert ids_on(log(error="21")) == []
    now = datetime.now(UTC)
    assert ids_on(
        log(since=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"), state="failed")
    ) == [failed]
    assert ids_on(log(until=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))) == []
    for params, field in (
        ({"state": "lost"}, "state"),
        ({"country": "Narnia"}, "country"),
        ({"recipient": "12"}, "recipient"),
        ({"since": "yesterday"}, "since"),
        ({"q": "abc"}, "search"),
        ({"purpose": "spam"}, "purpose"),
    ):
        bad = log(**params)
        assert bad.status_code == 400, params
        assert field in bad.text and 'role="alert"' in bad.text
    assert "Traceback" not in bad.text


# -- the message page and its actions -----------------------------------------------------------


def test_message_page_shows_the_timeline_payloads_and_webhook_deliveries(
    console: ConsoleServer,
) -> None:
    message_id = submit(console, send_at=LATER, metadata={"order": "42"})
    events = console.running.outbox.status(message_id).events
    store = console.running.store
    now = console.running.services.clock.time()
    store.add_subscription(
        Subscription("sub_1", "http://127.0.0.1:9/hook", ("*",), "whsec_x", None, now)
    )
    event = make_event(
        "message.scheduled", {"message_id": message_id}, now, f"evt_msg_{events[0].id}"
    )
    store.enqueue([event], now)
    delivery = store.list_deliveries()[0]
    store.finish_delivery(
        delivery.id, state="dead", status=500, error="boom", next_attempt_at=None, now=now
    )
    session = console.login(Role.ADMIN)
    page = session.get(f"{console.url}/messages/{message_id}", timeout=10)
    assert page.status_code == 200
    assert "submit" in page.text and "scheduled" in page.text
    assert "&#34;order&#34;: &#34;42&#34;" in page.text  # metadata, pretty-printed and escaped
    assert "http://127.0.0.1:9/hook" in page.text and "boom" in page.text
    answer = console.post(
        session, f"/deliveries/{delivery.id}/redeliver", {"back": f"/messages/{message_id}"}
    )
    assert answer.url.endswith(f"/messages/{message_id}?notice=Queued+for+delivery+again.")
    assert store.get_delivery(delivery.id).state == "pending"  # type: ignore[union-attr]
    missing = session.get(f"{console.url}/messages/msg_nosuch", timeout=10)
    assert missing.status_code == 404 and "no message with id" in missing.text


def test_cancel_and_resend_where_the_state_allows(console: ConsoleServer) -> None:
    scheduled = submit(console, send_at=LATER, body="later")
    session = console.login(Role.ADMIN)
    page = session.get(f"{console.url}/messages/{scheduled}", timeout=10).text
    assert "Cancel message" in page and "Send again" not in page
    refused = console.post(session, f"/messages/{scheduled}/resend")
    assert refused.status_code == 409
    done = console.post(session, f"/messages/{scheduled}/cancel")
    assert done.status_code == 200 and "Canceled." in done.text
    record = console.running.outbox.status(scheduled)
    assert record.state == "canceled"
    assert "canceled in the console by admin-" in (record.events[-1].reason or "")
    again = console.post(session, f"/messages/{scheduled}/cancel")
    assert "canceled already" in again.text
    sent = submit(console)
    set_row(console, sent, state="sent", next_attempt_at=None)
    late = console.post(session, f"/messages/{sent}/cancel")
    assert late.status_code == 409 and "not canceled" in late.text
    resent = console.post(session, f"/messages/{scheduled}/resend")
    new_id = resent.url.rsplit("/", 1)[1].split("?")[0]
    assert new_id != scheduled
    copy = console.running.outbox.status(new_id)
    assert (copy.to, copy.body, copy.state) == ("+15555550100", "later", "queued")
    assert copy.metadata["resent_from"] == scheduled


def test_a_verification_text_shows_its_code_masked_and_is_not_resent(
    console: ConsoleServer,
) -> None:
    from smsgate.verify import Verify
    from smsgate.verify.service import MASK

    verify = Verify(console.running.outbox, secret="a-console-test-secret-of-32-chars!!")
    started = verify.start("+14155552671")
    (message_id,) = verify.store.list_rows()[0].messages
    stored = sql(console).get(message_id)
    assert stored is not None
    body = json.loads(stored.payload)["body"]
    code = next(
        word for word in body.replace(".", " ").split() if word.isdigit() and len(word) == 6
    )
    session = console.login(Role.ADMIN)
    page = session.get(f"{console.url}/messages/{message_id}", timeout=10)
    assert page.status_code == 200 and started.id in page.text
    assert f"Your verification code is {MASK * 6}." in page.text and code not in page.text
    log = session.get(f"{console.url}/messages", timeout=10)
    assert message_id in ids_on(log) and code not in log.text
    # sending the masked text again would be useless: refused, and no button offers it
    set_row(console, message_id, state="failed", next_attempt_at=None)
    page = session.get(f"{console.url}/messages/{message_id}", timeout=10)
    assert "Send again" not in page.text
    refused = console.post(session, f"/messages/{message_id}/resend")
    assert refused.status_code == 409 and "start a new verification" in refused.text


def test_compose_queues_a_message_or_names_the_problem(console: ConsoleServer) -> None:
    session = console.login(Role.ADMIN)
    sent = console.post(
        session, "/compose", {"to": "+1 555 555 0142", "body": "test", "purpose": "otp"}
    )
    message_id = sent.url.rsplit("/", 1)[1].split("?")[0]
    record = console.running.outbox.status(message_id)
    assert (record.to, record.body, record.purpose) == ("+15555550142", "test", "otp")
    assert record.metadata["composed_by"].startswith("admin-")
    later = console.post(
        session, "/compose", {"to": "+15555550142", "body": "x", "send_at": "2099-01-01T09:30"}
    )
    assert "scheduled" in later.text
    bad = console.post(session, "/compose", {"to": "12", "body": "hi"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text and 'value="12"' in bad.text
    empty = console.post(session, "/compose", {"to": "+15555550142", "body": ""})
    assert empty.status_code == 422
    console.running.store  # noqa: B018
    console.post(session, "/suppressions", {"recipient": "+15555550143", "reason": "asked"})
    opted = console.post(session, "/compose", {"to": "+15555550143", "body": "hi"})
    assert opted.status_code == 422 and "opted out" in opted.text.lower()


# -- operations -------------------------------------------------------------------------------


def test_suppressions_search_add_remove_with_who_and_why(console_any: ConsoleServer) -> None:
    console = console_any
    session = console.login(Role.ADMIN, name="alice")
    added = console.post(
        session,
        "/suppressions",
        {"recipient": "+1 555 555 0150", "our_number": "", "reason": "complained by email"},
    )
    assert "Suppressed." in added.text
    row = console.running.store.list_suppressions("+15555550150")[0]
    assert (row.source, row.reason, row.our_number) == ("console:alice", "complained by email", "*")
    assert "console:alice" in added.text and "complained by email" in added.text
    twice = console.post(session, "/suppressions", {"recipient": "+15555550150", "reason": "again"})
    assert "Already suppressed" in twice.text
    no_reason = console.post(session, "/suppressions", {"recipient": "+15555550151", "reason": ""})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    bad = console.post(session, "/suppressions", {"recipient": "abc", "reason": "x"})
    assert bad.status_code == 422 and "recipient" in bad.text
    search = session.get(
        console.url + "/suppressions", params={"recipient": "+15555550150"}, timeout=10
    )
    assert "complained by email" in search.text
    other = session.get(
        console.url + "/suppressions", params={"recipient": "+15555550199"}, timeout=10
    )
    assert "No suppressions for" in other.text
    removed = console.post(
        session, "/suppressions/remove", {"recipient": "+15555550150", "our_number": "*"}
    )
    assert "Removed 1 entry." in removed.text
    assert console.running.store.list_suppressions("+15555550150") == []


def test_keys_are_shown_once_granted_console_access_and_revoked(console: ConsoleServer) -> None:
    session = console.login(Role.ADMIN)
    made = console.post(
        session, "/keys", {"name": "reporting", "console": "readonly", "rate": "5/s"}
    )
    key = made.text.split('id="new-key" class="mono" readonly value="')[1].split('"')[0]
    assert key.startswith("sgk_")
    record = next(k for k in console.running.store.list_keys() if k.name == "reporting")
    assert record.rate == "5/s"
    listing = session.get(console.url + "/keys", timeout=10).text
    assert key not in listing and record.id in listing and "readonly" in listing
    assert console.sign_in(console.anonymous(), "", key).url.endswith("/console/")
    bad = console.post(session, "/keys", {"name": "x", "rate": "fast"})
    assert bad.status_code == 422 and "rate" in bad.text
    api = requests.get(
        console.running.url + "/v1/messages", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert api.status_code == 200
    revoked = console.post(session, f"/keys/{record.id}/revoke")
    assert f"Key {record.id} revoked." in revoked.text
    api = requests.get(
        console.running.url + "/v1/messages", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert api.status_code == 401
    assert console.post(session, f"/keys/{record.id}/revoke").status_code == 404


def test_providers_pause_and_resume(console_any: ConsoleServer) -> None:
    console = console_any
    session = console.login(Role.ADMIN, name="bob")
    paused = console.post(session, "/providers/alpha/pause", {"reason": "billing problem"})
    assert (
        "alpha paused" in paused.text and "billing problem" in paused.text and "bob" in paused.text
    )
    pauses = ProviderPauses(sql(console))
    assert pauses.list()["alpha"].paused_by == "bob"
    overview = session.get(console.url + "/", timeout=10)
    assert "paused" in overview.text
    assert "already paused" in console.post(session, "/providers/alpha/pause").text
    assert console.post(session, "/providers/nosuch/pause").status_code == 404
    resumed = console.post(session, "/providers/alpha/resume")
    assert "alpha resumed" in resumed.text and pauses.names() == frozenset()


def test_inbound_and_webhooks_pages(console: ConsoleServer) -> None:
    store = console.running.store
    now = console.running.services.clock.time()
    store.record_inbound(
        InboundRecord(
            "inb_1",
            "alpha",
            "P1",
            "+15555550160",
            "+15005550006",
            "STOP please",
            (),
            "opt_out",
            now,
        ),
        None,
    )
    store.add_subscription(
        Subscription("sub_9", "http://127.0.0.1:9/x", ("message.*",), "s", "ops", now)
    )
    store.enqueue([make_event("message.failed", {"message_id": "m"}, now)], now)
    delivery = store.list_deliveries()[0]
    store.finish_delivery(
        delivery.id,
        state="dead",
        status=None,
        error="connection refused",
        next_attempt_at=None,
        now=now,
    )
    session = console.login(Role.ADMIN)
    inbound = session.get(console.url + "/inbound", timeout=10).text
    assert "STOP please" in inbound and "opt_out" in inbound
    hooks = session.get(console.url + "/webhooks", timeout=10).text
    assert "http://127.0.0.1:9/x" in hooks and "connection refused" in hooks
    retried = console.post(session, f"/deliveries/{delivery.id}/redeliver", {"back": "/webhooks"})
    assert "Queued for delivery again." in retried.text
    assert "No dead letters." in retried.text
    assert console.post(session, "/deliveries/nosuch/redeliver").status_code == 404


def test_overview_counts_charts_and_live_updates(console: ConsoleServer) -> None:
    ids = [submit(console, to=f"+1555555{i:04d}") for i in range(4)]
    outbox = console.running.outbox
    store = sql(console)
    now = console.running.services.clock.time()
    with store.write_transaction() as tx:
        for n, message_id in enumerate(ids):
            final = "delivered" if n < 3 else "failed"
            tx.execute(
                "INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, provider) "
                "VALUES (?, ?, 'queued', 'sent', 'worker:t', 'alpha')",
                (message_id, now),
            )
            tx.execute(
                "INSERT INTO smsgate_events (message_id, at, from_status, to_status, source, provider) "
                "VALUES (?, ?, 'sent', ?, 'webhook:alpha', 'alpha')",
                (message_id, now + 2, final),
            )
    session = console.login(Role.READONLY)
    page = session.get(console.url + "/", timeout=10).text
    assert 'id="depth-queued">4<' in page
    assert "4 / 4" in page and "3 / 3" in page and "1 / 1" in page  # sent, delivered, failed
    assert page.count("<svg") == 2 and "75%" in page  # 3 of 4 delivered
    assert "from 3 receipts" in page
    with session.get(console.url + "/live", stream=True, timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        head = [next(lines) for _ in range(4)]
    assert "event: overview" in head
    assert outbox.counts()


def test_message_timeline_streams(console: ConsoleServer) -> None:
    message_id = submit(console, send_at=LATER)
    session = console.login(Role.READONLY)
    with session.get(
        f"{console.url}/messages/{message_id}/live", stream=True, timeout=10
    ) as stream:
        lines = stream.iter_lines(decode_unicode=True)
        seen = [next(lines) for _ in range(6)]
    assert "event: timeline" in seen
    assert any(message_id in line or "scheduled" in line for line in seen)


def test_console_can_be_turned_off_and_rejects_unknown_settings(
    console_factory: ConsoleFactory, sqlite_url: str
) -> None:
    off = console_factory(sqlite_url, console={"enabled": False})
    assert requests.get(off.url + "/login", timeout=10).status_code == 404
    from smsgate.console.settings import ConsoleSettings
    from smsgate.errors import ConfigError

    for table, field in (
        ({"sesion_ttl": "1h"}, "console.sesion_ttl"),
        ({"max_failures": 0}, "console.max_failures"),
        ({"lockout": "soon"}, "console.lockout"),
        ({"secure_cookie": "yes"}, "console.secure_cookie"),
    ):
        with pytest.raises(ConfigError) as caught:
            ConsoleSettings.from_mapping(table)
        assert caught.value.field == field
    assert ConsoleSettings.from_mapping({"secure_cookie": "auto"}).secure_cookie is None
    assert Purpose.OTP.value == "otp"


def test_without_jinja2_the_console_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from smsgate.config import Config
    from smsgate.console import console_app
    from smsgate.errors import ConfigError

    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    with pytest.raises(ConfigError) as caught:
        console_app(None, Config.default())  # type: ignore[arg-type]
    assert caught.value.field == "console.enabled"
    assert "pip install 'smsgate[server]'" in str(caught.value)


def test_overview_serves_recent_figures_while_newer_ones_are_computed(
    console_factory: ConsoleFactory, sqlite_url: str
) -> None:
    import time

    from smsgate.console.web import OVERVIEW_STALE, OVERVIEW_TTL

    clock = FakeClock(start=datetime.now(UTC).timestamp())
    console = console_factory(sqlite_url, clock=clock)
    session = console.login(Role.READONLY)

    def queued() -> str:
        page = session.get(console.url + "/", timeout=10).text
        return page.split('id="depth-queued">')[1].split("<")[0]

    assert queued() == "0"
    submit(console)
    assert queued() == "0"  # within OVERVIEW_TTL: the same figures
    clock.advance(OVERVIEW_TTL + 1)
    assert queued() == "0"  # stale: shown at once, a refresh starts in the background
    deadline = time.monotonic() + 10
    while queued() != "1":
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.05)
    submit(console)
    clock.advance(OVERVIEW_STALE + 1)
    assert queued() == "2"  # too old to show: computed before answering


# -- verifications ----------------------------------------------------------------------------


def _verify_of(console: ConsoleServer) -> Verify:
    found = console.running.thread.app.state.verify
    assert isinstance(found, Verify)
    return found


def _block(console: ConsoleServer, prefix: str) -> None:
    from smsgate.verify.models import Block

    verify = _verify_of(console)
    now = verify.clock.time()
    block = Block(
        "blk_" + prefix[1:], prefix, 1, "pumping: 40 started, 0 approved", 40, 0, now, now + 3600
    )
    with verify.store.write() as tx:
        tx.add_block(block)


@pytest.fixture
def verifying(store_url: str, console_factory: ConsoleFactory) -> ConsoleServer:
    """With ``[verify]``, once per engine (``store_url`` first: torn down last)."""
    from tests.verify.conftest import SECRET

    return console_factory(store_url, verify={"secret": SECRET})


def test_verifications_page_shows_conversion_recent_and_blocks_never_a_code(
    verifying: ConsoleServer,
) -> None:
    from tests.verify.conftest import sent_codes

    verify = _verify_of(verifying)
    approved = verify.start("+14155552671")
    (code,) = sent_codes(verify, approved.id)
    assert verify.check(approved.id, code).valid
    pending = verify.start("+447911123456")
    (other,) = sent_codes(verify, pending.id)
    _block(verifying, "+4479")
    for role in (Role.ADMIN, Role.READONLY):
        session = verifying.login(role)
        page = session.get(verifying.url + "/verifications?window=1h", timeout=30)
        assert page.status_code == 200
        html = page.text
        assert 'href="/console/verifications" aria-current="page"' in html
        country = html.split('id="by-country"')[1].split("</table>")[0]
        assert (
            '>US</th><td class="num">1</td><td class="num">1</td><td class="num">100.0 %' in country
        )
        assert (
            '>GG</th><td class="num">1</td><td class="num">0</td><td class="num">0.0 %' in country
        )
        by_prefix = html.split('id="by-prefix"')[1].split("</table>")[0]
        assert by_prefix.count('<th scope="row"') == 2 and "100.0 %" in by_prefix
        recent = html.split('id="recent"')[1].split("</table>")[0]
        assert approved.id in recent and pending.id in recent and "approved" in recent
        assert 'id="block-4479"' in html and "pumping: 40 started" in html
        assert ("Unblock +4479" in html) is (role is Role.ADMIN)
        with verify.store.read() as tx:
            rows = [tx.get(v.id) for v in (approved, pending)]
        for secret in (
            code,
            other,
            *(r.code_hash for r in rows if r),
            *(r.salt for r in rows if r),
        ):
            assert secret and secret not in html
    bad = session.get(verifying.url + "/verifications?window=1y", timeout=30)
    assert bad.status_code == 400 and "window" in bad.text


def test_unblock_needs_admin_and_csrf_and_records_who(verifying: ConsoleServer) -> None:
    verify = _verify_of(verifying)
    _block(verifying, "+4479")
    reader = verifying.login(Role.READONLY)
    refused = verifying.post(reader, "/verifications/unblock", {"prefix": "+4479"})
    assert refused.status_code == 403 and "read-only" in refused.text
    admin = verifying.login(Role.ADMIN, name="ops")
    forged = admin.post(
        verifying.url + "/verifications/unblock", data={"prefix": "+4479"}, timeout=30
    )
    assert forged.status_code == 403
    assert [b.prefix for b in verify.blocks()] == ["+4479"]  # nothing changed
    done = verifying.post(admin, "/verifications/unblock", {"prefix": "+4479"})
    assert done.status_code == 200 and "+4479 unblocked." in done.text
    assert verify.blocks() == []
    (lifted,) = verify.blocks(active=False)
    assert lifted.lifted_by == "console:ops"
    again = verifying.post(admin, "/verifications/unblock", {"prefix": "+4479"})
    assert "+4479 was not blocked." in again.text
    bad = verifying.post(admin, "/verifications/unblock", {"prefix": "4479x"})
    assert bad.status_code == 422 and "prefix" in bad.text


def test_verifications_page_only_with_verify_configured(console: ConsoleServer) -> None:
    session = console.login(Role.ADMIN)
    home = session.get(console.url + "/", timeout=30)
    assert home.status_code == 200 and "Verifications" not in home.text
    page = session.get(console.url + "/verifications", timeout=30)
    assert page.status_code == 404 and "[verify]" in page.text
