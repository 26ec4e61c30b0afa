"""Message ids: unique, URL-safe, and sortable by creation time (so they make good cursors)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0


def new_id(prefix: str = "msg", *, now_ms: int | None = None) -> str:
    """``msg_`` + 26 characters: 48 bits of milliseconds then 80 random bits (a ULID).

    Within one process ids are strictly increasing: an id made in the same millisecond as the
    previous one (or after the clock stepped back) is the previous one plus one, so sorting by id
    is sorting by creation even at thousands of ids per millisecond.
    """
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
    with _lock:
        if value <= _last and now_ms is None:
            value = _last + 1
        _last = max(_last, value)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
