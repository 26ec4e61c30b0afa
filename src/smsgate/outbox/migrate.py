"""Versioned schema migrations, one SQL file per version and engine.

``migrations/NNNN_name.<engine>.sql`` holds version ``NNNN`` for ``sqlite`` or ``postgresql``.
Applied versions are rows of ``smsgate_schema_version``; a store is usable only at the version
this smsgate was built for (:data:`LATEST`). ``smsgate db upgrade`` applies the missing ones, each
in its own transaction, under a lock so that concurrent upgrades are safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from smsgate.errors import ConfigError

ENGINES = ("sqlite", "postgresql")
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<engine>sqlite|postgresql)\.sql$")
VERSION_TABLE = "smsgate_schema_version"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    engine: str
    sql: str

    def statements(self) -> list[str]:
        """The file split into statements (our files keep one statement per ``;`` line end)."""
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [part.strip() for part in re.split(r";\s*(?:\n|$)", text) if part.strip()]


@cache
def migrations(engine: str) -> tuple[Migration, ...]:
    """Every migration for ``engine``, in version order (checked to be 1..N without gaps)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    found: list[Migration] = []
    folder = resources.files("smsgate.outbox").joinpath("migrations")
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None or match["engine"] != engine:
            continue
        found.append(
            Migration(int(match["version"]), match["name"], engine, entry.read_text("utf-8"))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{engine} migrations are not numbered 1..N: {versions}")
    return tuple(found)


def latest(engine: str = "sqlite") -> int:
    return len(migrations(engine))


LATEST = latest()


class SchemaVersionError(ConfigError):
    """The store's schema is not the one this smsgate needs; the message says what to run."""

    kind = "schema_version"

    def __init__(self, message: str, *, found: int, needed: int) -> None:
        super().__init__(message, field="store")
        self.found = found
        self.needed = needed


def check_version(found: int, url: str) -> None:
    """Refuse a store whose schema is older or newer than :data:`LATEST`."""
    if found == LATEST:
        return
    if found < LATEST:
        what = "has no smsgate schema" if found == 0 else f"is at schema version {found}"
        raise SchemaVersionError(
            f"the store {url} {what}; this smsgate needs version {LATEST}. "
            f"Run: smsgate db upgrade --store '{url}' (stop older workers first)",
            found=found,
            needed=LATEST,
        )
    raise SchemaVersionError(
        f"the store {url} is at schema version {found}, newer than this smsgate understands "
        f"({LATEST}); upgrade smsgate on this host",
        found=found,
        needed=LATEST,
    )
