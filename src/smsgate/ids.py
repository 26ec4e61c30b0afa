"""Message ids: unique, URL-safe, and sortable by creation time (so they make good cursors)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def new_id(prefix: str = "msg", *, now_ms: int | None = None) -> str:
    """``msg_`` + 26 characters: 48 bits of milliseconds then 80 random bits (a ULID)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
