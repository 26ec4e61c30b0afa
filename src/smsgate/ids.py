"""Message ids: unique, URL-safe, and sortable by creation time (so they make good cursors)."""

from __future__ import annotations

import os
import re
import threading
import time

#: the longest id accepted anywhere (a message id given by the caller, a cursor, a path)
MAX_ID = 100
#: what any id of ours looks like, and what a caller's own message id must look like: checked
#: before any query, so a malformed id is "not found" without reaching the store
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"
_ID = re.compile("[A-Za-z0-9_.:\\-]{1,100}")


def good_id(value: str) -> bool:
    """Whether ``value`` has the form of an id (see :data:`ID_PATTERN`)."""
    return _ID.fullmatch(value) is not None


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
#: the random bits of an id made for a given time (``now_ms``)
_RANDOM_BITS = 80
#: the last two characters of an id count within one millisecond (ULID's monotonic mode)
_COUNTER_BITS = 10
_COUNTER_SIZE = 1 << _COUNTER_BITS


#: every 10-bit value as its two characters (also the counter's characters)
_PAIRS = [_ALPHABET[n >> 5] + _ALPHABET[n & 31] for n in range(1024)]


def _base32(value: int, width: int) -> str:
    """The low ``5 * width`` bits of ``value`` as ``width`` characters, most significant first;
    two characters a step (a new stem each millisecond is a visible part of an id's cost at
    ten thousand ids a second)."""
    chars = []
    if width & 1:
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    for _ in range(width >> 1):
        chars.append(_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(chars))


_COUNTER = _PAIRS
_lock = threading.Lock()
#: the millisecond of the last id, its random bits above the counter, the next counter value,
#: and the 24 characters those make
_ms = -1
_high = 0
_count = _COUNTER_SIZE
_stem = ""


def _forget() -> None:
    """Start a new sequence, as a new process does. A forked child inherits its parent's: left
    as it is, both would go on counting from the same bits and make the same ids in the
    parent's last millisecond."""
    global _lock, _ms, _high, _count, _stem
    _lock = threading.Lock()  # another thread of the parent may have held it when it forked
    _ms, _high, _count, _stem = -1, 0, _COUNTER_SIZE, ""


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget)


def new_id(prefix: str = "msg", *, now_ms: int | None = None) -> str:
    """``msg_`` + 26 characters (Crockford base32, ULID's layout): 48 bits of milliseconds, then
    70 bits set at random in each new millisecond (69 random bits under a zero: room to count
    up), then a 10-bit counter within the millisecond.

    Within one process ids are strictly increasing: in the millisecond of the previous id (or
    after the clock stepped back) the counter counts up (and, once it is spent, the 70 bits
    above it), so sorting by id is sorting by creation even at thousands of ids per
    millisecond, and an id costs a string concatenation. A forked child starts a sequence of
    its own. ``now_ms`` makes one id for that time with 80 random bits, outside that sequence.
    """
    global _ms, _high, _count, _stem
    if now_ms is not None:
        random = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
        return f"{prefix}_{_base32((now_ms << _RANDOM_BITS) | random, 26)}"
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms > _ms or _count >= _COUNTER_SIZE:
            if ms > _ms:
                _ms = ms
                # one bit short of the 70 above the counter: room to count up from here
                _high = int.from_bytes(os.urandom(9), "big") >> 3
            else:
                _high += 1  # still above every id made so far
            _count = 0
            _stem = _base32(_ms, 10) + _base32(_high, 14)
        count = _count
        _count = count + 1
        stem = _stem
    return f"{prefix}_{stem}{_COUNTER[count]}"
