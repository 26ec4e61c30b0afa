"""Every table belongs to the store layer (docs/architecture.md, *Layers*): outside it no module
imports the SQL engines, opens a transaction, writes a statement or asks which engine it runs on.

Read from the source, so a new module that reaches past the store layer fails here with the file,
the line and what to call instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import smsgate
from smsgate.errors import ConfigError
from smsgate.outbox.tables.base import Table
from smsgate.outbox.tables.console_users import ConsoleUserTable
from smsgate.outbox.tables.inbound_parts import InboundPartTable
from smsgate.outbox.tables.message_log import MessageLog
from smsgate.outbox.tables.pauses import ProviderPauses
from smsgate.outbox.tables.server import ServerStore

PACKAGE = Path(smsgate.__file__).parent
#: the engines: the only modules that may tell one engine from another
ENGINES = {"outbox/sql.py", "outbox/sqlite.py", "outbox/postgres.py"}
#: the store layer: the engines, the tables beside the messages, the migrations, the store
#: contract with its URL parser and engine registry, and the lease queue the tables share
STORE_LAYER = ENGINES | {"outbox/migrate.py", "outbox/store.py", "outbox/leasequeue.py"}
TABLES = "outbox/tables/"
ENGINE_MODULES = {"smsgate.outbox.sql", "smsgate.outbox.sqlite", "smsgate.outbox.postgres"}
ENGINE_NAMES = {"sqlite", "postgresql", "postgres"}
TRANSACTIONS = {"write_transaction", "read_transaction", "executemany"}
#: a string that is an SQL statement (or the start of one)
STATEMENT = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"CREATE\s+(TABLE|INDEX)\s|SAVEPOINT\s|ROLLBACK\s+TO\s|RELEASE\s+SAVEPOINT\s)",
    re.IGNORECASE | re.DOTALL,
)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        yield name, ast.parse(path.read_text(encoding="utf-8"), filename=name)


def in_store_layer(name: str) -> bool:
    return name in STORE_LAYER or name.startswith(TABLES)


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def breaches(name: str, tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if not in_store_layer(name):
            yield from (f"{where} {what}" for what in _sql_breaches(node))
        if name not in ENGINES and name != "outbox/store.py":
            yield from (f"{where} {what}" for what in _engine_breaches(node))


def _sql_breaches(node: ast.AST) -> Iterator[str]:
    """What only the store layer may do: the engines, transactions, statements."""
    for module in imported(node):
        if module in ENGINE_MODULES:
            yield f"imports {module}: use a table of smsgate.outbox.tables"
    if isinstance(node, ast.Attribute) and node.attr in TRANSACTIONS:
        yield f"opens a transaction ({node.attr}): add a method to a table module"
    call = node if isinstance(node, ast.Call) else None
    if call and isinstance(call.func, ast.Attribute) and call.func.attr == "execute":
        yield "runs a statement: add a method to a table module"
    if _is_text(node) and STATEMENT.match(node.value):  # type: ignore[attr-defined]
        yield f"writes SQL ({node.value[:40]!r}): it belongs in a table module"  # type: ignore[attr-defined]


def _engine_breaches(node: ast.AST) -> Iterator[str]:
    """What only the engines may do: tell one engine from another."""
    if isinstance(node, ast.Compare) and any(
        _is_text(side) and side.value in ENGINE_NAMES  # type: ignore[attr-defined]
        for side in [node.left, *node.comparators]
    ):
        yield "branches on the engine's name: ask the store instead"
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
        return
    if node.func.id == "getattr" and "store" in ast.unparse(node.args[0]):
        yield "probes the store with getattr: give the Store protocol a method"
    if node.func.id == "isinstance" and re.search(
        r"\b(Sql|Sqlite|Postgres)Store\b", ast.unparse(node.args[-1])
    ):
        yield "checks the store's class: use smsgate.outbox.sql.sql_store"


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_only_the_store_layer_touches_tables_and_engines() -> None:
    found = [breach for name, tree in modules() for breach in breaches(name, tree)]
    assert found == [], "\n".join(found)


def test_the_check_sees_a_module_that_reaches_past_the_store_layer() -> None:
    source = (
        "from smsgate.outbox.sql import SqlStore\n"
        "def f(store):\n"
        "    if store.engine == 'postgresql' or isinstance(store, SqlStore):\n"
        "        with store.write_transaction() as tx:\n"
        "            tx.execute('DELETE FROM smsgate_messages WHERE id = ?', ('x',))\n"
        "    return getattr(store, 'skip_locked', '')\n"
    )
    found = list(breaches("server/example.py", ast.parse(source)))
    kinds = " ".join(found)
    for words in (
        "imports smsgate.outbox.sql",
        "opens a transaction",
        "runs a statement",
        "writes SQL",
        "branches on the engine's name",
        "probes the store with getattr",
        "checks the store's class",
    ):
        assert words in kinds, (words, found)
    # a table module may use the engines' transactions, but not tell the engines apart
    in_tables = " ".join(breaches("outbox/tables/example.py", ast.parse(source)))
    assert "branches on the engine's name" in in_tables and "writes SQL" not in in_tables
    assert list(breaches("outbox/sql.py", ast.parse(source))) == []


class _NoTables:
    """A store of an engine without SQL tables (a third-party engine could be one)."""


@pytest.mark.parametrize(
    ("table", "needs"),
    [
        (ServerStore, "the server"),
        (InboundPartTable, "the server"),
        (ConsoleUserTable, "the console"),
        (MessageLog, "the console"),
        (ProviderPauses, "pausing providers"),
    ],
)
def test_a_store_without_tables_is_refused_with_what_needs_them(
    table: type[Table], needs: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{needs} needs a SQL store") as caught:
        table.of(_NoTables())  # type: ignore[arg-type]
    assert caught.value.field == "store"


def test_without_tables_nothing_is_paused() -> None:
    assert ProviderPauses.maybe(_NoTables()) is None  # type: ignore[arg-type]
