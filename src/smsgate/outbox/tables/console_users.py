"""The console's sign-in tables (migration 0005): users, API keys granted the console, sessions
and failed sign-ins.

Rows only: hashing, roles and the lockout policy are :mod:`smsgate.console.auth`'s. Roles are
stored and returned as their names.
"""

from __future__ import annotations

from typing import NamedTuple

from smsgate.outbox.tables.base import Table


class UserRow(NamedTuple):
    name: str
    role: str
    created_at: float
    last_login_at: float | None


class KeyLogin(NamedTuple):
    """What signing in with an API key needs to know about the key."""

    secret_hash: str
    revoked_at: float | None
    #: the role the key was granted in the console (None: never granted)
    role: str | None


class SessionRow(NamedTuple):
    principal: str
    role: str
    csrf_token: str
    expires_at: float
    #: for a key's session: when the key was revoked, and its console role now
    key_revoked_at: float | None
    key_role: str | None


class ConsoleUserTable(Table):
    needs = "the console"

    # -- users --------------------------------------------------------------------------------

    def add_user(self, name: str, password_hash: str, role: str, now: float) -> bool:
        """False when a user of that name exists (nothing changes then)."""
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_console_users (name, password_hash, role, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, password_hash, role, now),
            )
        return bool(rows)

    def set_password(self, name: str, password_hash: str) -> bool:
        """Replace the user's password hash and end every session of the old password."""
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "UPDATE smsgate_console_users SET password_hash = ? WHERE name = ? RETURNING name",
                (password_hash, name),
            )
            if rows:
                tx.execute(
                    "DELETE FROM smsgate_console_sessions WHERE principal = ?", (f"user:{name}",)
                )
        return bool(rows)

    def delete_user(self, name: str) -> bool:
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "DELETE FROM smsgate_console_users WHERE name = ? RETURNING name", (name,)
            )
            tx.execute(
                "DELETE FROM smsgate_console_sessions WHERE principal = ?", (f"user:{name}",)
            )
        return bool(rows)

    def users(self) -> list[UserRow]:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT name, role, created_at, last_login_at FROM smsgate_console_users "
                "ORDER BY name"
            )
        return [UserRow(row[0], row[1], float(row[2]), row[3]) for row in rows]

    def password_of(self, name: str) -> tuple[str, str] | None:
        """The user's password hash and role."""
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT password_hash, role FROM smsgate_console_users WHERE name = ?", (name,)
            )
        return (rows[0][0], rows[0][1]) if rows else None

    def signed_in(self, name: str, now: float) -> None:
        """Clear the user's failed sign-ins and note when they signed in."""
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_failures WHERE name = ?", (name,))
            tx.execute(
                "UPDATE smsgate_console_users SET last_login_at = ? WHERE name = ?", (now, name)
            )

    # -- API keys with the console scope ------------------------------------------------------

    def grant_key(self, key_id: str, role: str) -> bool:
        """Let a live API key sign in with ``role``; False when there is no such live key."""
        with self._store.write_transaction() as tx:
            live = tx.execute(
                "SELECT 1 FROM smsgate_api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)
            )
            if not live:
                return False
            tx.execute(
                "INSERT INTO smsgate_console_keys (key_id, role) VALUES (?, ?) "
                "ON CONFLICT (key_id) DO UPDATE SET role = excluded.role",
                (key_id, role),
            )
        return True

    def key_roles(self) -> dict[str, str]:
        with self._store.read_transaction() as tx:
            rows = tx.execute("SELECT key_id, role FROM smsgate_console_keys")
        return {row[0]: row[1] for row in rows}

    def key_login(self, key_id: str) -> KeyLogin | None:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT k.secret_hash, k.revoked_at, c.role FROM smsgate_api_keys k "
                "LEFT JOIN smsgate_console_keys c ON c.key_id = k.id WHERE k.id = ?",
                (key_id,),
            )
        return KeyLogin(*rows[0]) if rows else None

    # -- failed sign-ins ----------------------------------------------------------------------

    def locked_until(self, name: str) -> float | None:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT locked_until FROM smsgate_console_failures WHERE name = ?", (name,)
            )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def clear_failures(self, name: str) -> None:
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_failures WHERE name = ?", (name,))

    def count_failure(self, name: str, limit: int, lock_until: float) -> bool:
        """Count a failed sign-in of ``name`` (a count that ended in a lock starts again at
        one); at ``limit`` in a row lock the name until ``lock_until``. True when locked."""
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_console_failures (name, failures, locked_until) "
                "VALUES (?, 1, NULL) ON CONFLICT (name) DO UPDATE SET "
                "failures = CASE WHEN smsgate_console_failures.locked_until IS NOT NULL "
                "THEN 1 ELSE smsgate_console_failures.failures + 1 END, locked_until = NULL "
                "RETURNING failures",
                (name,),
            )
            if int(rows[0][0]) < limit:
                return False
            tx.execute(
                "UPDATE smsgate_console_failures SET locked_until = ? WHERE name = ?",
                (lock_until, name),
            )
        return True

    # -- sessions -----------------------------------------------------------------------------

    def open_session(
        self,
        token_hash: str,
        principal: str,
        role: str,
        csrf_token: str,
        now: float,
        expires_at: float,
    ) -> None:
        """Store a session (and drop the expired ones)."""
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_sessions WHERE expires_at <= ?", (now,))
            tx.execute(
                "INSERT INTO smsgate_console_sessions "
                "(token_hash, principal, role, csrf_token, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, principal, role, csrf_token, now, expires_at),
            )

    def session(self, token_hash: str) -> SessionRow | None:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT s.principal, s.role, s.csrf_token, s.expires_at, k.revoked_at, c.role "
                "FROM smsgate_console_sessions s "
                "LEFT JOIN smsgate_api_keys k ON s.principal = 'key:' || k.id "
                "LEFT JOIN smsgate_console_keys c ON c.key_id = k.id "
                "WHERE s.token_hash = ?",
                (token_hash,),
            )
        return SessionRow(*rows[0]) if rows else None

    def end_session(self, token_hash: str) -> None:
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_sessions WHERE token_hash = ?", (token_hash,))

    def end_sessions_of(self, principal: str) -> None:
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_sessions WHERE principal = ?", (principal,))
