"""``smsgate send``: one message, directly through a provider or into the outbox (``--queue``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from smsgate.cli.common import fail, print_json

if TYPE_CHECKING:
    from smsgate.message import Message


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)


def send_command(
    to: str = typer.Argument(..., help="Recipient, E.164 (or national with --region)."),
    body: str = typer.Argument("", help="The text."),
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
        None, "--idempotency-key", help="Sends once per key (with --queue)."
    ),
    queue: bool = typer.Option(
        False, "--queue", help="Submit to the outbox instead of sending now."
    ),
    config: str = typer.Option(
        None, "--config", envvar="SMSGATE_CONFIG", help="smsgate.toml (with --queue)."
    ),
    json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Send BODY to TO and print our id, the provider's id, status, segments and encoding."""
    from smsgate.errors import InvalidMessage, SmsgateError
    from smsgate.message import Message, Purpose
    from smsgate.phone import normalize

    try:
        number = normalize(to, region, strict=False)
        # scoped to the SMTP provider, so other providers of a chain ignore it
        options = {"smtp": {"carrier": carrier}} if carrier else {}
        if purpose not in Purpose.__members__.values():
            raise InvalidMessage(
                f"--purpose {purpose!r} is not one of {', '.join(Purpose)}", field="purpose"
            )
        message = Message(
            to=number,
            body=body,
            sender=sender,
            media=tuple(media),
            purpose=Purpose(purpose),
            idempotency_key=idempotency_key,
            provider_options=options,
        )
    except SmsgateError as exc:
        fail(str(exc))
    if queue:
        _queue(message, config, json)
        return
    if not provider:
        fail(
            "no provider: pass --provider URL or set SMSGATE_PROVIDER (e.g. twilio://SID:TOKEN@+15017122661)"
        )
    from smsgate.gateway import Gateway

    try:
        gateway = Gateway.from_url(provider)
    except SmsgateError as exc:
        fail(str(exc))
    try:
        result = gateway.send(message)
    except SmsgateError as exc:
        exit_code = 2 if exc.kind in ("invalid_message", "config") and exc.code is None else 1
        fail(_explain(exc), exit_code)
    finally:
        gateway.close()
    if json:
        print_json(result.to_dict())
    else:
        print(
            f"sent {result.id} via {result.provider}: provider id {result.provider_message_id}, "
            f"status {result.status.value}, {result.segments} segment(s), {result.encoding}"
        )


def _explain(exc: Exception) -> str:
    from smsgate.errors import SmsgateError

    if isinstance(exc, SmsgateError) and exc.provider and exc.code:
        return f"{exc.message} ({exc.provider} {exc.code}, {exc.kind})"
    return str(exc)


def _queue(message: Message, config_path: str | None, json: bool) -> None:
    from smsgate.errors import SmsgateError
    from smsgate.outbox.cli_support import queue_message

    try:
        message_id = queue_message(config_path, message)
    except SmsgateError as exc:
        fail(str(exc))
    if json:
        print_json({"id": message_id, "status": "queued"})
    else:
        print(f"queued {message_id}")
