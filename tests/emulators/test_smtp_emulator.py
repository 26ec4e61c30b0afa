"""The SMTP emulator: TLS modes, AUTH, recording (spool and JSON), faults, the CLI, and seed 000.

Seed 000's script (``smtp2sms.py`` in the blog post) runs against the emulator unchanged except for
its host (the ``SMTP_SERVER`` environment variable it already reads) and its hard-coded port.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import requests

import smsgate
from smsgate.emulators import smtp as smtp_emulator
from smsgate.emulators.base import EmulatorThread, Faults
from smsgate.emulators.smtp import SmtpEmulator, SmtpFaults

#: Seed 000's script, verbatim (the code block of shared/seeds/000_132fdc0f2931307d.txt).
SEED_000 = """# /// script
# requires-python = ">=3.10"
# dependencies = [
# ]
# ///
import os, smtplib
from email.mime.text import MIMEText

SMTP_APP_USER=os.environ.get("SMTP_APP_USER") # me@gmail.com
SMTP_APP_PASSWORD=os.environ.get("SMTP_APP_PASSWORD")
SMTP_SERVER=os.environ.get("SMTP_SERVER")  # smtp.gmail.ch

# NOTE: I haven't verified all the carrier domains - this was provided by ChatGPT

carriers = {
    "att": {
        "sms": "txt.att.net",
        "mms": "mms.att.net"
    },
    "tmobile": {
        "sms": "tmomail.net",
        "mms": "tmomail.net"
    },
    "verizon": {
        # "sms": "vtext.com", # not reliable
        "sms": "vzwpix.com",
        "mms": "vzwpix.com"
    },
    "sprint": {
        "sms": "messaging.sprintpcs.com",
        "mms": "pm.sprint.com"
    },
    "googlefi": {
        "sms": "msg.fi.google.com",
        "mms": "msg.fi.google.com"
    },
    "uscellular": {
        "sms": "email.uscc.net",
        "mms": "mms.uscc.net"
    },
    "boost": {
        "sms": "sms.myboostmobile.com",
        "mms": "myboostmobile.com"
    },
    "cricket": {
        "sms": "sms.cricketwireless.net",
        "mms": "mms.cricketwireless.net"
    },
    "metropcs": {
        "sms": "mymetropcs.com",
        "mms": "mymetropcs.com"
    },
    "virgin": {
        "sms": "vmobl.com",
        "mms": "vmobl.com"
    }
}
contacts = {
    "me": {"carrier": "verizon", "number": "1234567890"},
}
msg = MIMEText("Hello from a python script? What?!")
msg["From"] = SMTP_APP_USER

SEND_TO = "me"

# Complex for my future use cases - deal with it
msg["To"] = f"{contacts[SEND_TO]['number']}@{carriers[contacts[SEND_TO]['carrier']]['sms']}"

with smtplib.SMTP(SMTP_SERVER, 587) as email_handler:
    email_handler.starttls()
    email_handler.login(SMTP_APP_USER, SMTP_APP_PASSWORD)
    email_handler.sendmail(SMTP_APP_USER, [msg["To"]], msg.as_string())

"""
SEED_FILE = Path("/work/shared/seeds/000_132fdc0f2931307d.txt")
USER, PASSWORD = "me@gmail.com", "abcd efgh ijkl mnop"


def emu(thread: EmulatorThread) -> SmtpEmulator:
    """The running SMTP emulator behind a thread handle (typed)."""
    emulator = thread.emulator
    assert isinstance(emulator, SmtpEmulator)
    return emulator


@pytest.fixture
def start() -> Iterator[Callable[..., EmulatorThread]]:
    running: list[EmulatorThread] = []

    def start(**options: Any) -> EmulatorThread:
        options.setdefault("faults", SmtpFaults(seed=7))
        thread = SmtpEmulator(**options).run_in_thread()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.stop()


def summary(emulator: EmulatorThread) -> dict[str, Any]:
    result: dict[str, Any] = emulator.call(emu(emulator).summary)
    return result


def client(emulator: EmulatorThread, *, login: bool = True) -> smtplib.SMTP:
    e = emu(emulator)
    assert e.ca_file is not None
    context = ssl.create_default_context(cafile=e.ca_file)
    if e.tls == "implicit":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", e.smtp_port, context=context, timeout=10)
    else:
        smtp = smtplib.SMTP("127.0.0.1", e.smtp_port, timeout=10)
        smtp.starttls(context=context)
    smtp.ehlo()
    if login:
        smtp.login(e.username, e.password)
    return smtp


def mail(to: str = "5555550100@msg.fi.google.com", body: str = "hello", subject: str = "") -> str:
    head = f"From: {USER}\r\nTo: {to}\r\n" + (f"Subject: {subject}\r\n" if subject else "")
    return head + f"\r\n{body}\r\n"


# -- seed 000 --------------------------------------------------------------------------------


def test_the_embedded_seed_is_the_seed() -> None:
    if not SEED_FILE.exists():
        pytest.skip("the shared seeds are not on this machine")
    text = SEED_FILE.read_text(encoding="utf-8")
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None and found.group(1) == SEED_000


def _run_seed(
    emulator: EmulatorThread, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    port = str(emu(emulator).smtp_port)
    script = SEED_000.replace("587", port)
    assert SEED_000.count("587") == 1 and script.count(port) == 1  # the port, nothing else
    path = tmp_path / "smtp2sms.py"
    path.write_text(script, encoding="utf-8")
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")},
        "SMTP_APP_USER": USER,
        "SMTP_APP_PASSWORD": PASSWORD,
        "SMTP_SERVER": "127.0.0.1",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(path)], env=environment, capture_output=True, text=True, timeout=60
    )


def test_seed_000_runs_unchanged_except_host_and_port(
    start: Callable[..., EmulatorThread], tmp_path: Path
) -> None:
    emulator = start(credentials=f"{USER}:{PASSWORD}")
    ca_file = emu(emulator).ca_file
    assert ca_file is not None
    # The seed calls starttls() with no context; SSL_CERT_FILE is how its smtplib would trust
    # the emulator's CA if it checked certificates at all (see the next test).
    done = _run_seed(emulator, tmp_path, SSL_CERT_FILE=ca_file)
    assert done.returncode == 0, done.stderr
    data = summary(emulator)
    assert (data["count"], data["connections"], data["logins"]) == (1, 1, 1)
    [stored] = data["messages"]
    assert stored["rcpt"] == "1234567890@vzwpix.com" and stored["to"] == "+11234567890"
    assert stored["carrier"] == "verizon"
    assert stored["from"] == USER and stored["mail_from"] == USER
    assert stored["body"] == "Hello from a python script? What?!"
    assert stored["tls"] is True


def test_seed_000_does_not_check_the_servers_certificate(
    start: Callable[..., EmulatorThread], tmp_path: Path
) -> None:
    # smtplib.starttls() without a context uses ssl._create_stdlib_context(): no verification.
    # The seed would hand a Gmail app password to anyone on the path; smsgate refuses instead
    # (tests/providers/test_smtp.py::test_an_untrusted_certificate_is_refused_not_ignored).
    emulator = start(credentials=f"{USER}:{PASSWORD}")
    done = _run_seed(emulator, tmp_path)
    assert done.returncode == 0, done.stderr
    assert summary(emulator)["logins"] == 1


# -- TLS and AUTH ----------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_modes_with_smtplib(start: Callable[..., EmulatorThread], tls: str) -> None:
    emulator = start(tls=tls)
    with client(emulator) as smtp:
        smtp.sendmail(USER, ["5555550100@msg.fi.google.com"], mail())
    [stored] = summary(emulator)["messages"]
    assert stored["tls"] is True and stored["body"] == "hello"


def test_plain_mode_has_no_certificate(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(tls="none")
    assert emu(emulator).ca_file is None and "ca_file" not in emu(emulator).provider_url()
    with smtplib.SMTP("127.0.0.1", emu(emulator).smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.login(emu(emulator).username, emu(emulator).password)
        smtp.sendmail(USER, ["5555550100@msg.fi.google.com"], mail())
    assert summary(emulator)["messages"][0]["tls"] is False


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_plain_and_login(start: Callable[..., EmulatorThread], mechanism: str) -> None:
    emulator = start()
    e = emu(emulator)
    with client(emulator, login=False) as smtp:
        smtp.user, smtp.password = e.username, e.password
        code, _ = smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        assert code == 235
    assert summary(emulator)["logins"] == 1


def test_wrong_password_is_535_and_counted(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    with (
        client(emulator, login=False) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError) as info,
    ):
        smtp.login(emu(emulator).username, "not-the-password")
    assert info.value.smtp_code == 535
    data = summary(emulator)
    assert data["logins"] == 0 and data["auth_failures"] >= 1


def test_starttls_comes_before_auth_and_auth_before_mail(
    start: Callable[..., EmulatorThread],
) -> None:
    emulator = start()
    with smtplib.SMTP("127.0.0.1", emu(emulator).smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert (
            smtp.docmd("AUTH", "PLAIN AGVtdWxhdG9yQHNtc2dhdGUudGVzdABlbXVsYXRvci1wYXNzd29yZA==")[0]
            == 530
        )
        assert smtp.docmd("MAIL", "FROM:<a@example.com>")[0] == 530
    with client(emulator, login=False) as smtp:
        assert smtp.mail("a@example.com")[0] == 530
    assert summary(emulator)["logins"] == 0


def test_the_certificate_covers_localhost_and_loopback_only(
    start: Callable[..., EmulatorThread],
) -> None:
    emulator = start(tls="implicit")
    e = emu(emulator)
    assert e.ca_file is not None
    context = ssl.create_default_context(cafile=e.ca_file)
    for name in ("localhost", "127.0.0.1"):
        with (
            socket.create_connection(("127.0.0.1", e.smtp_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.recv(3) == b"220"
    with (
        socket.create_connection(("127.0.0.1", e.smtp_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="smtp.gmail.com")


def test_stop_removes_the_generated_key_and_certificates() -> None:
    emulator = SmtpEmulator().run_in_thread()
    files = emu(emulator).tls_files
    assert files is not None and files.key_file.exists()
    assert files.key_file.stat().st_mode & 0o077 == 0
    emulator.stop()
    assert not files.directory.exists()


# -- recording -------------------------------------------------------------------------------


def test_spool_has_one_eml_per_mail(start: Callable[..., EmulatorThread], tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    emulator = start(spool=str(spool))
    with client(emulator) as smtp:
        for i in range(3):
            smtp.sendmail(
                USER,
                [f"555555010{i}@msg.fi.google.com"],
                mail(f"555555010{i}@msg.fi.google.com", f"n{i}"),
            )
    files = sorted(spool.glob("*.eml"))
    assert len(files) == 3
    stored = summary(emulator)["messages"]
    assert [m["eml"] for m in stored] == [str(f) for f in files]
    for i, path in enumerate(files):
        parsed = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert parsed["To"] == f"555555010{i}@msg.fi.google.com"
        assert stored[i]["body"] == f"n{i}"


def test_json_side_port_lists_resets_and_sets_faults(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    with client(emulator) as smtp:
        smtp.sendmail(
            USER, ["5555550100@vtext.com"], mail("5555550100@vtext.com", "hi", "Re: hello")
        )
    data = requests.get(f"{emulator.url}/_emulator/messages", timeout=10).json()
    assert data["count"] == 1 and data["connections"] == 1 and data["logins"] == 1
    [stored] = data["messages"]
    assert {
        k: stored[k] for k in ("to", "rcpt", "from", "subject", "body", "attachments", "carrier")
    } == {
        "to": "+15555550100",
        "rcpt": "5555550100@vtext.com",
        "from": USER,
        "subject": "Re: hello",
        "body": "hi",
        "attachments": [],
        "carrier": "verizon",
    }
    assert requests.post(f"{emulator.url}/_emulator/reset", timeout=10).json() == {"reset": True}
    assert requests.get(f"{emulator.url}/_emulator/messages", timeout=10).json()["count"] == 0
    faults = requests.get(f"{emulator.url}/_emulator/faults", timeout=10).json()
    assert {"perm_fail_rate", "drop_rate", "max_per_connection", "error_rate", "latency"} <= set(
        faults
    )
    answer = requests.post(
        f"{emulator.url}/_emulator/faults", json={"perm_fail_rate": 1}, timeout=10
    )
    assert answer.json()["perm_fail_rate"] == 1
    with client(emulator) as smtp, pytest.raises(smtplib.SMTPDataError) as info:
        smtp.sendmail(USER, ["5555550100@vtext.com"], mail())
    assert info.value.smtp_code == 554
    bad = requests.post(f"{emulator.url}/_emulator/faults", json={"bogus": 1}, timeout=10)
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
    assert requests.get(f"{emulator.url}/_emulator/messages", timeout=10).json()["count"] == 0


def test_the_same_message_id_twice_is_a_duplicate(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    with client(emulator) as smtp:
        for _ in range(2):
            smtp.sendmail(
                USER, ["5555550100@msg.fi.google.com"], "Message-ID: <a@b.example>\r\n" + mail()
            )
    assert summary(emulator)["duplicates"] == 1


def test_each_recipient_of_a_mail_is_its_own_text(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    rcpts = ["5555550100@vtext.com", "5555550101@msg.fi.google.com"]
    with client(emulator) as smtp:
        smtp.sendmail(USER, rcpts, "Message-ID: <two@b.example>\r\n" + mail(", ".join(rcpts)))
    data = summary(emulator)
    assert [(m["to"], m["carrier"]) for m in data["messages"]] == [
        ("+15555550100", "verizon"),
        ("+15555550101", "googlefi"),
    ]
    assert data["duplicates"] == 0


# -- pipelining ------------------------------------------------------------------------------


def test_pipelined_commands_are_answered_in_order_as_one_group(
    start: Callable[..., EmulatorThread],
) -> None:
    emulator = start()
    envelope = "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n"
    with client(emulator) as smtp:
        assert smtp.has_extn("pipelining")
        smtp.send(envelope.format(USER, "5555550100@vtext.com"))
        assert [smtp.getreply()[0] for _ in range(3)] == [250, 250, 354]
        smtp.send("Subject: grouped\r\n\r\npipelined\r\n.\r\n")
        assert smtp.getreply()[0] == 250
        # A refused recipient: DATA is refused too, and the session carries on after RSET.
        smtp.send(envelope.format(USER, "5005550001@vtext.com"))
        assert [smtp.getreply()[0] for _ in range(3)] == [250, 550, 503]
        assert smtp.rset()[0] == 250
        # One command at a time, as smtplib sends: each reply comes on its own.
        smtp.sendmail(USER, ["5555550101@vtext.com"], mail("5555550101@vtext.com", "alone"))
    data = summary(emulator)
    assert [(m["to"], m["body"]) for m in data["messages"]] == [
        ("+15555550100", "pipelined"),
        ("+15555550101", "alone"),
    ]
    assert data["reply_groups"] == 2


def test_pipelining_can_be_turned_off(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(pipelining="false")
    with client(emulator) as smtp:
        assert not smtp.has_extn("pipelining")
        smtp.sendmail(USER, ["5555550100@vtext.com"], mail())
    assert summary(emulator)["count"] == 1
    with pytest.raises(ValueError, match="pipelining='maybe'"):
        SmtpEmulator(pipelining="maybe")


# -- reading mails ---------------------------------------------------------------------------

PLAIN_MAILS = {
    "ascii": b"From: me@example.com\r\nTo: 5555550100@vtext.com\r\nMessage-ID: <a@b>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\n\r\nhello\r\n..dots stay\r\n",
    "quoted-printable": b"From: =?utf-8?q?Caf=C3=A9?= <me@example.com>\r\n"
    b"Subject: =?utf-8?b?w6l0w6k=?=\r\nContent-Type: text/plain; CHARSET=UTF-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve =E2=82=AC=\r\n5\r\n",
    "folded": b"From: me@example.com\r\nSubject: a long\r\n\tfolded subject\r\n\r\nbody\r\n",
    "latin-1": b"From: me@example.com\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n",
    "unknown charset": b"From: me@example.com\r\nContent-Type: text/plain; charset=x-nope\r\n"
    b"\r\nok\r\n",
    "no headers of note": b"X-Anything: 1\r\n\r\nbare\r\n",
}
OTHER_MAILS = {
    "base64": b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n",
    "multipart": b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
    "a name": b'Content-Type: text/plain; name="a.txt"\r\n\r\nhi\r\n',
    "a disposition": b"Content-Disposition: attachment\r\n\r\nhi\r\n",
    "not a header": b"From me@example.com Mon\r\nTo: x@y\r\n\r\nhi\r\n",
    "bare line feeds": b"From: me@example.com\nTo: x@y\r\n\r\nhi\r\n",
    "8-bit header": b"Subject: caf\xc3\xa9\r\n\r\nhi\r\n",
    "twice": b"Subject: one\r\nSubject: two\r\n\r\nhi\r\n",
    "no body": b"Subject: one\r\n",
}


@pytest.mark.parametrize("name", PLAIN_MAILS)
def test_plain_text_mails_are_read_as_the_email_package_reads_them(name: str) -> None:
    raw = PLAIN_MAILS[name]
    direct = smtp_emulator._read_plain_text(raw)
    assert direct is not None, "a one-part text mail takes the direct path"
    reference = smtp_emulator._read_mime(raw)
    assert direct.body == reference.body and direct.attachments == reference.attachments == []
    for header in ("from", "to", "subject", "message-id", "x-anything"):
        assert direct.header(header) == reference.header(header)


@pytest.mark.parametrize("name", OTHER_MAILS)
def test_other_mails_are_left_to_the_email_package(name: str) -> None:
    assert smtp_emulator._read_plain_text(OTHER_MAILS[name]) is None


def test_a_multipart_mail_is_recorded_with_its_attachments(
    start: Callable[..., EmulatorThread],
) -> None:
    emulator = start()
    with client(emulator) as smtp:
        smtp.sendmail(USER, ["5555550100@mms.att.net"], OTHER_MAILS["multipart"])
    [stored] = summary(emulator)["messages"]
    assert stored["body"] == "hi" and stored["attachments"] == []


# -- faults ----------------------------------------------------------------------------------


def test_magic_numbers_are_refused_at_rcpt(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    with client(emulator) as smtp:
        smtp.mail(USER)
        assert smtp.rcpt("5005550001@msg.fi.google.com")[0] == 550
        assert smtp.rcpt("5005550004@vtext.com")[1].startswith(b"5.7.1")
        assert smtp.rcpt("5555550100@vtext.com")[0] == 250


def test_4xx_rate_limit_and_drops(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(faults=SmtpFaults(seed=7, error_rate=1))
    with client(emulator) as smtp, pytest.raises(smtplib.SMTPDataError) as info:
        smtp.sendmail(USER, ["5555550100@vtext.com"], mail())
    assert info.value.smtp_code == 451
    emulator.call(lambda: emu(emulator).faults.update({"error_rate": 0, "rate_limit_rate": 1}))
    with client(emulator) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail(USER, ["5555550100@vtext.com"], mail())
    assert refused.value.recipients["5555550100@vtext.com"][0] == 450
    emulator.call(lambda: emu(emulator).faults.update({"rate_limit_rate": 0, "drop_rate": 1}))
    with client(emulator) as smtp, pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.mail(USER)
    assert summary(emulator)["count"] == 0


def test_max_per_connection_closes_with_421(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(max_per_connection="2")
    smtp = client(emulator)
    for _ in range(2):
        smtp.sendmail(USER, ["5555550100@vtext.com"], mail())
    assert smtp.mail(USER)[0] == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    smtp.close()
    assert summary(emulator)["count"] == 2


def test_latency_slows_every_reply(start: Callable[..., EmulatorThread]) -> None:
    emulator = start(faults=SmtpFaults(latency=0.3))
    with client(emulator) as smtp:
        started = time.monotonic()
        smtp.mail(USER)
        assert time.monotonic() - started >= 0.3


def test_drop_connections_cuts_every_client(start: Callable[..., EmulatorThread]) -> None:
    emulator = start()
    smtp = client(emulator)
    assert emulator.call(emu(emulator).drop_connections) == 1
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    smtp.close()


def test_cli_faults_become_smtp_faults() -> None:
    faults = SmtpFaults.from_faults(
        Faults(error_rate=0.5, seed=3), drop_rate="0.25", perm_fail_rate=None
    )
    assert (faults.error_rate, faults.drop_rate, faults.perm_fail_rate, faults.seed) == (
        0.5,
        0.25,
        0.0,
        3,
    )
    with pytest.raises(ValueError, match="tls='ssl'"):
        SmtpEmulator(tls="ssl")
    with pytest.raises(ValueError, match="USER:PASS"):
        SmtpEmulator(credentials="no-colon")


# -- the command -----------------------------------------------------------------------------


def _smsgate() -> list[str]:
    beside = Path(sys.executable).with_name("smsgate")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("smsgate")
    assert found, "the smsgate console script is not installed (pip install -e .)"
    return [found]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smsgate_emulate_smtp(tmp_path: Path) -> None:
    port, http_port, spool = _free_port(), _free_port(), tmp_path / "spool"
    proc = subprocess.Popen(
        [
            *_smsgate(),
            "emulate",
            "smtp",
            "--port",
            str(port),
            "--credentials",
            f"{USER}:{PASSWORD}",
            "--spool",
            str(spool),
            "--option",
            f"http_port={http_port}",
            "--seed",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "recorded mails" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"the emulator exited early ({proc.poll()})"
            key, _, value = line.partition(": ")
            lines[key.strip()] = value.strip()
        assert f"127.0.0.1:{port} (STARTTLS)" in next(
            k for k in lines if k.startswith("smtp emulator")
        )
        ca_file = lines["CA certificate"].split(" ")[0]
        assert Path(ca_file).exists()
        assert lines["recorded mails"] == f"http://127.0.0.1:{http_port}/_emulator/messages"
        with smsgate.Gateway.from_url(lines["provider URL"]) as gw:
            assert gw.send("+15555550100", "from the command line").ok
        data = requests.get(lines["recorded mails"], timeout=10).json()
        assert data["count"] == 1 and data["messages"][0]["body"] == "from the command line"
        # The command runs on uvloop: aiosmtpd answered smsgate's pipelined group there too.
        assert data["reply_groups"] == 1
        assert len(list(spool.glob("*.eml"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
    assert not Path(ca_file).exists()


def test_spool_is_an_smtp_emulator_option_only(tmp_path: Path) -> None:
    out = subprocess.run(
        [*_smsgate(), "emulate", "twilio", "--spool", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--spool is an smtp emulator option" in out.stderr


def test_smsgate_emulate_smtp_refuses_a_bad_option() -> None:
    out = subprocess.run(
        [*_smsgate(), "emulate", "smtp", "--option", "tls=ssl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "tls='ssl'" in out.stderr
