"""``smsgate keys``: API keys for ``smsgate serve``, printed once and stored hashed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from smsgate.cli import common

if TYPE_CHECKING:
    from smsgate.outbox import Outbox

ConfigOption = common.ConfigOption
StoreOption = common.StoreOption


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="keys",
        help="API keys for smsgate serve.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    group.command("create")(create)
    group.command("list")(list_keys)
    group.command("revoke")(revoke)
    app.add_typer(group, name="keys")


def create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. billing-service.")],
    purpose: Annotated[
        list[str] | None,
        typer.Option(
            "--purpose",
            help="Allow only this purpose (repeatable): transactional, otp, marketing, or verify "
            "(the verify API; a key with only verify sends no other message).",
        ),
    ] = None,
    sender: Annotated[
        list[str] | None, typer.Option("--sender", help="Allow only this sender (repeatable).")
    ] = None,
    rate: Annotated[
        str | None, typer.Option("--rate", help='Requests per period, e.g. "100/s", "600/min".')
    ] = None,
    burst: Annotated[
        int | None, typer.Option("--burst", help="Requests it may save up (default: one period).")
    ] = None,
    quota: Annotated[
        str | None, typer.Option("--quota", help='Messages per window, e.g. "10000/d".')
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """Create a key and print it. It is shown only now: the store keeps only its hash."""
    from smsgate.errors import ConfigError
    from smsgate.outbox.tables.server import ServerStore
    from smsgate.server.auth import create_key

    with _outbox(config, store) as outbox:
        try:
            made = create_key(
                ServerStore.of(outbox.store),
                name,
                purposes=purpose or (),
                senders=sender or (),
                rate=rate,
                burst=burst,
                quota=quota,
            )
        except ConfigError as exc:
            common.fail(str(exc))
    record = made.record
    if as_json:
        common.print_json(
            {
                "id": record.id,
                "name": record.name,
                "key": made.key,
                "purposes": record.purposes,
                "senders": record.senders,
                "rate": record.rate,
                "burst": record.burst,
                "quota": record.quota,
            }
        )
        return
    print(made.key)
    limits = [
        f"purposes {', '.join(record.purposes)}" if record.purposes else "any purpose",
        f"senders {', '.join(record.senders)}" if record.senders else "any sender",
        f"rate {record.rate}" if record.rate else "no rate limit",
        f"quota {record.quota}" if record.quota else "no quota",
    ]
    print(
        f"key {record.id} ({record.name}): {'; '.join(limits)}. "
        "Store it now: it cannot be shown again.",
        file=sys.stderr,
    )


def list_keys(
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """List keys (never their secrets)."""
    from smsgate.outbox.tables.server import ServerStore

    with _outbox(config, store, existing=True) as outbox:
        keys = ServerStore.of(outbox.store).list_keys()
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "purposes": k.purposes,
            "senders": k.senders,
            "rate": k.rate,
            "quota": k.quota,
            "revoked": k.revoked_at is not None,
        }
        for k in keys
    ]
    if as_json:
        common.print_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        print(f"{row['id']}  {state:8} {row['name']}")


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after sgk_).")],
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """Revoke a key: servers refuse it within seconds."""
    from smsgate.outbox.tables.server import ServerStore

    with _outbox(config, store, existing=True) as outbox:
        done = ServerStore.of(outbox.store).revoke_key(key_id, outbox.clock.time())
    if not done:
        common.fail(f"no active key {key_id!r}; see smsgate keys list", 1)
    if as_json:
        common.print_json({"id": key_id, "revoked": True})
    else:
        print(f"revoked {key_id}")


def _outbox(config: str | None, store: str | None, *, existing: bool = False) -> Outbox:
    from smsgate.errors import ConfigError
    from smsgate.outbox import Outbox

    common.require_extra("fastapi", "server", "smsgate keys")
    url = store or common.load_config(config).store
    if existing:
        common.open_existing_store(url)
    try:
        return Outbox(url)
    except ConfigError as exc:
        common.fail(str(exc))
