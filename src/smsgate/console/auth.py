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
from smsgate.outbox.tables.console_users import ConsoleUserTable
from smsgate.server.auth import hash_secret, split_key

if TYPE_CHECKING:
    from smsgate.console.settings import ConsoleSettings
    from smsgate.outbox.store import Store

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
        self, store: Store, settings: ConsoleSettings, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._table = ConsoleUserTable.of(store)
        self.settings = settings
        self.clock = clock

    # -- users --------------------------------------------------------------------------------

    def create_user(self, name: str, password: str, role: Role) -> User:
        name = check_name(name)
        check_password(password)
        now = self.clock.time()
        if not self._table.add_user(name, hash_password(password), role.value, now):
            raise ConfigError(
                f"a console user named {name!r} exists; pick another name or use "
                "smsgate users password to change the password",
                field="name",
            )
        return User(name, role, now, None)

    def set_password(self, name: str, password: str) -> bool:
        check_password(password)
        # a new password ends every session of the old one
        return self._table.set_password(name, hash_password(password))

    def delete_user(self, name: str) -> bool:
        return self._table.delete_user(name)

    def list_users(self) -> list[User]:
        return [
            User(row.name, Role(row.role), row.created_at, row.last_login_at)
            for row in self._table.users()
        ]

    # -- API keys with the console scope ------------------------------------------------------

    def grant_key(self, key_id: str, role: Role) -> bool:
        """Let a live API key sign in with ``role``; False when there is no such live key."""
        return self._table.grant_key(key_id, role.value)

    def key_roles(self) -> dict[str, Role]:
        return {key_id: Role(role) for key_id, role in self._table.key_roles().items()}

    def end_key_sessions(self, key_id: str) -> None:
        self._table.end_sessions_of(f"key:{key_id}")

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
        found = self._table.password_of(name)
        ok = verify_password(password, found[0] if found else _dummy_hash()) and bool(found)
        if not ok or found is None:
            return self._failed(name, now)
        self._table.signed_in(name, now)
        return self._open_session(f"user:{name}", Role(found[1]), now)

    def _sign_in_key(self, key: str, now: float) -> SignIn:
        parts = split_key(key)
        if parts is None:
            return SignIn(error="invalid")
        key_id, secret = parts
        counted = f"key:{key_id}"
        locked = self._locked_for(counted, now)
        if locked > 0:
            return SignIn(error="locked", locked_for=locked)
        login = self._table.key_login(key_id)
        expected = login.secret_hash if login else hash_secret("no such key")
        if not hmac.compare_digest(expected, hash_secret(secret)) or login is None:
            return self._failed(counted, now)
        if login.revoked_at is not None:
            return self._failed(counted, now)
        if login.role is None:
            return SignIn(error="no_scope")
        self._table.clear_failures(counted)
        return self._open_session(counted, Role(login.role), now)

    def _locked_for(self, name: str, now: float) -> float:
        until = self._table.locked_until(name)
        return until - now if until is not None and until > now else 0.0

    def _failed(self, name: str, now: float) -> SignIn:
        if self._table.count_failure(name, self.settings.max_failures, now + self.settings.lockout):
            return SignIn(error="locked", locked_for=self.settings.lockout)
        return SignIn(error="invalid")

    def _open_session(self, principal: str, role: Role, now: float) -> SignIn:
        token = secrets.token_urlsafe(32)
        session = Session(
            principal, role, secrets.token_urlsafe(32), now + self.settings.session_ttl
        )
        self._table.open_session(
            hash_secret(token), principal, role.value, session.csrf_token, now, session.expires_at
        )
        return SignIn(token=token, session=session)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie token (None when unknown, expired, or its key revoked)."""
        if not token or len(token) > 100:
            return None
        now = self.clock.time()
        row = self._table.session(hash_secret(token))
        if row is None or row.expires_at <= now:
            return None
        if row.principal.startswith("key:") and (
            row.key_revoked_at is not None or row.key_role is None
        ):
            return None
        return Session(row.principal, Role(row.role), row.csrf_token, float(row.expires_at))

    def sign_out(self, token: str) -> None:
        self._table.end_session(hash_secret(token))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
