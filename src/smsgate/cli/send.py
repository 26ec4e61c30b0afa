"""``smsgate send``: messages to one or more recipients, directly through a provider or into the
outbox (``--queue``)."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smsgate.cli import common
from smsgate.cli.common import fail, print_json

if TYPE_CHECKING:
    from smsgate.message import Message
    from smsgate.providers.base import Provider

#: what a provider URL starts with; anything else is not echoed back (it may be a secret)
_PROVIDER_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)


def send_command(
    args: Annotated[
        list[str],
        typer.Argument(
            help="Recipients then the text: TO [TO...] BODY. A BODY of - reads the text from "
            "standard input; a TO of - reads recipients from it, one per line.",
            metavar="TO... BODY",
            show_default=False,
        ),
    ],
    provider: str = typer.Option(
        None,
        "--provider",
        envvar="SMSGATE_PROVIDER",
        help="Provider URL (or set SMSGATE_PROVIDER).",
    ),
    sender: str = typer.Option(None, "--sender", help="Sender number or alphanumeric id."),
    media: list[str] = typer.Option([], "--media", help="Media URL for MMS (repeatable)."),
    region: str = typer.Option(None, "--region", help="Default region for a national number."),
    carrier: str = typer.Option(None, "--carrier", help="Carrier key for email-to-SMS (smtp://)."),
    purpose: str = typer.Option(
        "transactional", "--purpose", help="transactional, otp or marketing."
    ),
    idempotency_key: str = typer.Option(
        None, "--idempotency-key", help="Sends once per key (with --queue; one recipient)."
    ),
    queue: bool = typer.Option(
        False, "--queue", help="Submit to the outbox instead of sending now."
    ),
    config: common.ConfigOption = None,
    store: common.StoreOption = None,
    json: common.JsonOption = False,
    verbose: common.VerboseOption = False,
) -> None:
    """Send BODY to each TO and print our id, the provider's id, status, segments and encoding.

    Exit 1 when a provider refused one of the messages (the others are still sent).
    """
    from smsgate.errors import InvalidMessage, SmsgateError
    from smsgate.message import Purpose

    recipients, body = _split(args)
    if purpose not in Purpose.__members__.values():
        fail(f"--purpose {purpose!r} is not one of {', '.join(Purpose)}")
    if idempotency_key and len(recipients) > 1:
        fail("--idempotency-key names one message; send to one recipient at a time with it")
    messages: list[Message] = []
    try:
        for to in recipients:
            messages.append(
                _message(to, body, sender, media, region, carrier, purpose, idempotency_key)
            )
    except (SmsgateError, InvalidMessage) as exc:
        fail(str(exc))
    if queue:
        _queue(messages, config, store, json)
        return
    if not provider:
        fail(
            "no provider: pass --provider URL or set SMSGATE_PROVIDER "
            "(e.g. twilio://SID:TOKEN@+15017122661), or queue with --queue"
        )
    if not _PROVIDER_URL.match(provider):
        # never echo it: "twilio:/SID:TOKEN@..." is a URL with its secret in it
        fail(
            "--provider is not a provider URL; write scheme://credentials@sender, e.g. "
            "twilio://SID:TOKEN@+15017122661"
        )
    _send_now(messages, provider, json=json, verbose=verbose)


def _split(args: list[str]) -> tuple[list[str], str]:
    if len(args) < 2:
        fail("give at least one recipient and the text: smsgate send TO [TO...] BODY")
    *recipients, body = args
    if body == "-":
        if "-" in recipients:
            fail("only one of TO and BODY can be read from standard input")
        body = common.read_stdin_text()
    if "-" in recipients:
        read = [line.strip() for line in sys.stdin if line.strip()]
        position = recipients.index("-")
        recipients = recipients[:position] + read + recipients[position + 1 :]
        if not recipients:
            fail("no recipients on standard input")
    return recipients, common.checked_text(body)


def _message(
    to: str,
    body: str,
    sender: str | None,
    media: list[str],
    region: str | None,
    carrier: str | None,
    purpose: str,
    idempotency_key: str | None,
) -> Message:
    from smsgate.message import Message, Purpose
    from smsgate.phone import normalize

    number = normalize(to, region, strict=False)
    # scoped to the SMTP provider, so other providers of a chain ignore it
    options = {"smtp": {"carrier": carrier}} if carrier else {}
    return Message(
        to=number,
        body=body,
        sender=sender,
        media=tuple(media),
        purpose=Purpose(purpose),
        idempotency_key=idempotency_key,
        provider_options=options,
    )


def _send_now(messages: list[Message], provider: str, *, json: bool, verbose: bool) -> None:
    from smsgate.errors import SmsgateError
    from smsgate.gateway import Gateway

    try:
        gateway = Gateway.from_url(provider)
    except SmsgateError as exc:
        fail(str(exc))
    failures = 0
    try:
        for message in messages:
            if verbose:
                _show_request(next(iter(gateway.providers.values())), message, provider)
            try:
                result = gateway.send(message)
            except SmsgateError as exc:
                failures += 1
                bad_input = exc.kind in ("invalid_message", "config") and exc.code is None
                if len(messages) == 1:
                    fail(_explain(exc), 2 if bad_input else 1)
                common.report_error(f"{message.to}: {_explain(exc)}", 1)
                continue
            if verbose:
                _show_response(result.raw)
            if json:
                print_json(result.to_dict())
            else:
                print(
                    f"sent {result.id} to {result.to} via {result.provider}: provider id "
                    f"{result.provider_message_id}, status {result.status.value}, "
                    f"{result.segments} segment(s), {result.encoding}"
                )
    finally:
        gateway.close()
    if failures:
        raise typer.Exit(1)


def _show_request(provider: Provider, message: Message, url_text: str) -> None:
    """What goes to the provider, secrets masked, on stderr (``-v``): values named like secrets,
    and any value equal to a credential of the provider URL (SMSPM's account hash travels in a
    field called ``hash``)."""
    from smsgate.providers.base import HttpProvider
    from smsgate.providers.url import ProviderURL
    from smsgate.redact import redact_settings, redact_url

    parsed = ProviderURL.parse(url_text)
    credentials = {value for value in (parsed.username, parsed.password) if value}

    if not isinstance(provider, HttpProvider):
        sys.stderr.write(f"> {provider.name}: {message.to} ({len(message.body)} characters)\n")
        return
    request = provider.build_send_request(message)
    url = redact_url(f"{provider.base_url.rstrip('/')}/{request.path.lstrip('/')}")
    sys.stderr.write(f"> {request.method} {url}\n")
    for name in request.headers:
        shown = "***" if _secret_header(name) else request.headers[name]
        sys.stderr.write(f"> {name}: {shown}\n")
    if request.auth is not None:
        user = request.auth[0]
        shown_user = user if len(user) <= 8 else user[:4] + "…"
        sys.stderr.write(f"> (basic auth as {shown_user}, password ***)\n")
    payload: Any = request.json if request.json is not None else request.data
    if isinstance(payload, list):
        payload = dict(payload)
    if payload is not None:
        sys.stderr.write(f"> {_dumps(_without(redact_settings(payload), credentials))}\n")


def _without(value: Any, credentials: set[str]) -> Any:
    """``value`` with every string equal to one of ``credentials`` replaced by ``***``."""
    if isinstance(value, dict):
        return {key: _without(item, credentials) for key, item in value.items()}
    if isinstance(value, list):
        return [_without(item, credentials) for item in value]
    return "***" if isinstance(value, str) and value in credentials else value


#: header names that carry credentials; an idempotency key does not
_CREDENTIAL_HEADERS = re.compile(r"authorization|api-?key|token|secret|signature|cookie", re.I)


def _secret_header(name: str) -> bool:
    return _CREDENTIAL_HEADERS.search(name) is not None


def _show_response(raw: Any) -> None:
    from smsgate.redact import redact_settings

    sys.stderr.write(f"< {_dumps(redact_settings(raw))}\n")


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _explain(exc: Exception) -> str:
    from smsgate.errors import SmsgateError

    if isinstance(exc, SmsgateError) and exc.provider and exc.code:
        return f"{exc.message} ({exc.provider} {exc.code}, {exc.kind})"
    return str(exc)


def _queue(messages: list[Message], config: str | None, store: str | None, json: bool) -> None:
    from smsgate.errors import SmsgateError
    from smsgate.outbox.cli_support import open_outbox

    resolved = common.load_config(config)
    common.require_providers(resolved)
    try:
        with open_outbox(resolved, store=store) as outbox:
            ids = [outbox.submit(message) for message in messages]
    except SmsgateError as exc:
        fail(str(exc))
    for message, message_id in zip(messages, ids, strict=True):
        if json:
            print_json({"id": message_id, "to": message.to, "status": "queued"})
        else:
            print(f"queued {message_id} to {message.to}")
