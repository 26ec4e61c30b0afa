"""Console sign-in: users with scrypt-hashed passwords, API keys with the console scope,
server-side sessions, CSRF tokens and lockout after repeated failures.

Why our own code: the pieces are small and the standard library has them (``hashlib.scrypt``, a
memory-hard KDF; ``secrets``; ``hmac.compare_digest``); a session framework would bring a second
storage for sessions next to the store every smsgate process already shares.

- A password is kept as ``scrypt$N$r$p$salt$hash`` (N=2^15, r=8: 32 MiB per guess). The
  parameters travel with the hash, so they can be raised later without breaking old hashes.
- A session cookie holds 256 random bits; the store keeps only their SHA-256, the principal
  (``user:NAME`` or ``key:ID``), the role, the session's CSRF token and when it expires.
- Every failed sign-in counts against the name typed (a user's name, an unknown name, or
  ``key:ID``); after ``max_failures`` in a row the name is locked for ``lockout`` seconds on the
  clock, right password or not. A success resets the count.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smsgate.clock import SYSTEM_CLOCK, Clock
from smsgate.errors import ConfigError
from smsgate.server.auth import hash_secret, split_key

if TYPE_CHECKING:
    from smsgate.console.settings import ConsoleSettings
    from smsgate.outbox.sql import SqlStore

#: scrypt cost: 2^15 * 128 * r bytes = 32 MiB of memory per hash, ~0.1 s on a laptop core
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD = 10


class Role(enum.StrEnum):
    #: sees every page, changes nothing
    READONLY = "readonly"
    #: may also cancel, resend, compose, pause, and manage keys, suppressions and webhooks
    ADMIN = "admin"


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ConfigError(
            f"role {text!r} is not one of {', '.join(r.value for r in Role)}", field="role"
        ) from None


def hash_password(
    password: str, *, n: int | None = None, r: int | None = None, p: int | None = None
) -> str:
    """``scrypt$N$r$p$salt$hash``; the cost defaults to the module's SCRYPT_* (read per call)."""
    n, r, p = n or SCRYPT_N, r or SCRYPT_R, p or SCRYPT_P
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return "$".join(
        ["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)],
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest + "==")
        found = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt + "=="),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so an unknown name costs the same time (made
    on first use: hashing costs a noticeable fraction of a second at import)."""
    return hash_password("no such user, no such password")


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise ConfigError(f"user name {name!r}: use 1-64 letters, digits and . _ - @", field="name")
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(
            f"the password must be at least {MIN_PASSWORD} characters", field="password"
        )
    if len(password) > 1024:
        raise ConfigError("the password must be at most 1024 characters", field="password")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created_at: float
    last_login_at: float | None


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    role: Role
    csrf_token: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def who(self) -> str:
        """The principal as people read it: the user's name, or ``key ID``."""
        kind, _, name = self.principal.partition(":")
        return name if kind == "user" else f"key {name}"


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of a sign-in attempt: a cookie token, or why not."""

    token: str | None = None
    session: Session | None = None
    error: str | None = None
    locked_for: float = 0.0


class ConsoleAuth:
    """Users, keys with the console scope, sessions and lockout, in ``store``'s tables."""

    def __init__(
        self, store: SqlStore, settings: ConsoleSettings, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self.settings = settings
        self.clock = clock

    # -- users --------------------------------------------------------------------------------

    def create_user(self, name: str, password: str, role: Role) -> User:
        name = check_name(name)
        check_password(password)
        now = self.clock.time()
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_console_users (name, password_hash, role, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, hash_password(password), role.value, now),
            )
        if not rows:
            raise ConfigError(
                f"a console user named {name!r} exists; pick another name or use "
                "smsgate users password to change the password",
                field="name",
            )
        return User(name, role, now, None)

    def set_password(self, name: str, password: str) -> bool:
        check_password(password)
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "UPDATE smsgate_console_users SET password_hash = ? WHERE name = ? RETURNING name",
                (hash_password(password), name),
            )
            if rows:  # a new password ends every session of the old one
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

    def list_users(self) -> list[User]:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT name, role, created_at, last_login_at FROM smsgate_console_users "
                "ORDER BY name"
            )
        return [User(row[0], Role(row[1]), float(row[2]), row[3]) for row in rows]

    # -- API keys with the console scope ------------------------------------------------------

    def grant_key(self, key_id: str, role: Role) -> bool:
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
                (key_id, role.value),
            )
        return True

    def key_roles(self) -> dict[str, Role]:
        with self._store.read_transaction() as tx:
            rows = tx.execute("SELECT key_id, role FROM smsgate_console_keys")
        return {row[0]: Role(row[1]) for row in rows}

    def end_key_sessions(self, key_id: str) -> None:
        with self._store.write_transaction() as tx:
            tx.execute(
                "DELETE FROM smsgate_console_sessions WHERE principal = ?", (f"key:{key_id}",)
            )

    # -- sign-in ------------------------------------------------------------------------------

    def sign_in(self, name: str, password: str) -> SignIn:
        """Check a user's name and password, or (``name`` empty) an API key in ``password``."""
        now = self.clock.time()
        if not name.strip():
            return self._sign_in_key(password.strip(), now)
        name = name.strip()[:64]
        locked = self._locked_for(name, now)
        if locked > 0:
            return SignIn(error="locked", locked_for=locked)
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT password_hash, role FROM smsgate_console_users WHERE name = ?", (name,)
            )
        ok = verify_password(password, rows[0][0] if rows else _dummy_hash()) and bool(rows)
        if not ok:
            return self._failed(name, now)
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_failures WHERE name = ?", (name,))
            tx.execute(
                "UPDATE smsgate_console_users SET last_login_at = ? WHERE name = ?", (now, name)
            )
        return self._open_session(f"user:{name}", Role(rows[0][1]), now)

    def _sign_in_key(self, key: str, now: float) -> SignIn:
        parts = split_key(key)
        if parts is None:
            return SignIn(error="invalid")
        key_id, secret = parts
        counted = f"key:{key_id}"
        locked = self._locked_for(counted, now)
        if locked > 0:
            return SignIn(error="locked", locked_for=locked)
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT k.secret_hash, k.revoked_at, c.role FROM smsgate_api_keys k "
                "LEFT JOIN smsgate_console_keys c ON c.key_id = k.id WHERE k.id = ?",
                (key_id,),
            )
        expected = rows[0][0] if rows else hash_secret("no such key")
        if not hmac.compare_digest(expected, hash_secret(secret)) or not rows:
            return self._failed(counted, now)
        if rows[0][1] is not None:
            return self._failed(counted, now)
        if rows[0][2] is None:
            return SignIn(error="no_scope")
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_failures WHERE name = ?", (counted,))
        return self._open_session(counted, Role(rows[0][2]), now)

    def _locked_for(self, name: str, now: float) -> float:
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT locked_until FROM smsgate_console_failures WHERE name = ?", (name,)
            )
        if rows and rows[0][0] is not None and rows[0][0] > now:
            return float(rows[0][0]) - now
        return 0.0

    def _failed(self, name: str, now: float) -> SignIn:
        limit = self.settings.max_failures
        with self._store.write_transaction() as tx:
            rows = tx.execute(
                "INSERT INTO smsgate_console_failures (name, failures, locked_until) "
                "VALUES (?, 1, NULL) ON CONFLICT (name) DO UPDATE SET "
                "failures = CASE WHEN smsgate_console_failures.locked_until IS NOT NULL "
                "THEN 1 ELSE smsgate_console_failures.failures + 1 END, locked_until = NULL "
                "RETURNING failures",
                (name,),
            )
            failures = int(rows[0][0])
            if failures >= limit:
                until = now + self.settings.lockout
                tx.execute(
                    "UPDATE smsgate_console_failures SET locked_until = ? WHERE name = ?",
                    (until, name),
                )
                return SignIn(error="locked", locked_for=self.settings.lockout)
        return SignIn(error="invalid")

    def _open_session(self, principal: str, role: Role, now: float) -> SignIn:
        token = secrets.token_urlsafe(32)
        session = Session(
            principal, role, secrets.token_urlsafe(32), now + self.settings.session_ttl
        )
        with self._store.write_transaction() as tx:
            tx.execute("DELETE FROM smsgate_console_sessions WHERE expires_at <= ?", (now,))
            tx.execute(
                "INSERT INTO smsgate_console_sessions "
                "(token_hash, principal, role, csrf_token, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    hash_secret(token),
                    principal,
                    role.value,
                    session.csrf_token,
                    now,
                    session.expires_at,
                ),
            )
        return SignIn(token=token, session=session)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie token (None when unknown, expired, or its key revoked)."""
        if not token or len(token) > 100:
            return None
        now = self.clock.time()
        with self._store.read_transaction() as tx:
            rows = tx.execute(
                "SELECT s.principal, s.role, s.csrf_token, s.expires_at, k.revoked_at, c.role "
                "FROM smsgate_console_sessions s "
                "LEFT JOIN smsgate_api_keys k ON s.principal = 'key:' || k.id "
                "LEFT JOIN smsgate_console_keys c ON c.key_id = k.id "
                "WHERE s.token_hash = ?",
                (hash_secret(token),),
            )
        if not rows:
            return None
        principal, role, csrf, expires_at, revoked_at, key_role = rows[0]
        if expires_at <= now:
            return None
        if principal.startswith("key:") and (revoked_at is not None or key_role is None):
            return None
        return Session(principal, Role(role), csrf, float(expires_at))

    def sign_out(self, token: str) -> None:
        with self._store.write_transaction() as tx:
            tx.execute(
                "DELETE FROM smsgate_console_sessions WHERE token_hash = ?", (hash_secret(token),)
            )


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
