"""``smsgate users``: who may sign in to the web console (``smsgate serve`` at /console).

Passwords are read from a hidden prompt (asked twice) or, for scripts, one line of standard
input with ``--password-stdin``; never from an argument, which would land in shell history and
the process list.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from smsgate.cli import common

if TYPE_CHECKING:
    from smsgate.console.auth import ConsoleAuth

ConfigOption = common.ConfigOption
StoreOption = common.StoreOption
RoleOption = Annotated[
    str, typer.Option("--role", help="admin (may change things) or readonly (may only look).")
]
StdinOption = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from one line of standard input."),
]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="users",
        help="Console users for smsgate serve (/console).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    group.command("create")(create)
    group.command("password")(password)
    group.command("list")(list_users)
    group.command("delete")(delete)
    group.command("grant-key")(grant_key)
    app.add_typer(group, name="users")


@contextmanager
def _auth(config: str | None, store: str | None) -> Iterator[ConsoleAuth]:
    from smsgate.console.auth import ConsoleAuth
    from smsgate.console.settings import ConsoleSettings
    from smsgate.errors import ConfigError
    from smsgate.outbox import Outbox

    loaded = common.load_config(config)
    try:
        outbox = Outbox(store or loaded.store)
        settings = ConsoleSettings.from_mapping(loaded.console)
    except ConfigError as exc:
        common.fail(str(exc))
    with outbox:
        try:
            auth = ConsoleAuth(outbox.store, settings)
        except ConfigError as exc:
            common.fail(str(exc))
        yield auth


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first: str = typer.prompt("Password", hide_input=True)
    again: str = typer.prompt("Repeat it", hide_input=True)
    if first != again:
        common.fail("the two passwords differ; nothing changed")
    return first


def create(
    name: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: RoleOption = "readonly",
    password_stdin: StdinOption = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Create a console user (password hashed with scrypt)."""
    from smsgate.console.auth import parse_role
    from smsgate.errors import ConfigError

    try:
        chosen = parse_role(role)
    except ConfigError as exc:
        common.fail(str(exc))
    secret = _read_password(password_stdin)
    with _auth(config, store) as auth:
        try:
            user = auth.create_user(name, secret, chosen)
        except ConfigError as exc:
            common.fail(str(exc))
    print(f"console user {user.name} created with the {user.role.value} role")


def password(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    password_stdin: StdinOption = False,
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Set a user's password; their sessions end."""
    from smsgate.errors import ConfigError

    secret = _read_password(password_stdin)
    with _auth(config, store) as auth:
        try:
            changed = auth.set_password(name, secret)
        except ConfigError as exc:
            common.fail(str(exc))
    if not changed:
        common.fail(f"no console user named {name!r} (smsgate users list shows them)")
    print(f"password of {name} changed; their sessions were ended")


def list_users(
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: common.JsonOption = False,
) -> None:
    """List console users."""
    from smsgate.outbox.store import to_datetime

    with _auth(config, store) as auth:
        users = auth.list_users()
    rows = [
        {
            "name": u.name,
            "role": u.role.value,
            "created_at": to_datetime(u.created_at).isoformat(),
            "last_login_at": None
            if u.last_login_at is None
            else to_datetime(u.last_login_at).isoformat(),
        }
        for u in users
    ]
    if as_json:
        common.print_json(rows)
        return
    if not rows:
        print("no console users (smsgate users create NAME --role admin makes one)")
    for row in rows:
        print(f"{row['name']}\t{row['role']}\tlast sign-in {row['last_login_at'] or 'never'}")


def delete(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Delete a console user; their sessions end."""
    with _auth(config, store) as auth:
        if not auth.delete_user(name):
            common.fail(f"no console user named {name!r}")
    print(f"console user {name} deleted")


def grant_key(
    key_id: Annotated[str, typer.Argument(help="The API key's id (smsgate keys list).")],
    role: RoleOption = "readonly",
    config: ConfigOption = None,
    store: StoreOption = None,
) -> None:
    """Let an API key sign in to the console with ROLE (the console scope)."""
    from smsgate.console.auth import parse_role
    from smsgate.errors import ConfigError

    try:
        chosen = parse_role(role)
    except ConfigError as exc:
        common.fail(str(exc))
    with _auth(config, store) as auth:
        if not auth.grant_key(key_id, chosen):
            common.fail(f"no live API key with id {key_id!r} (smsgate keys list shows them)")
    print(f"API key {key_id} may sign in to the console as {chosen.value}")
