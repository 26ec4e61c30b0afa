"""``json.loads`` for JSON text that holds an object, by json's C scanner alone.

``json.loads`` wraps the C scanner in Python (the type and encoding checks, the decoder's
white-space skips) that costs about a microsecond a call; the worker reads a stored payload for
every message and the transport a provider's answer for every request. :func:`loads` gives the
same value and raises the same kind of error (:class:`json.JSONDecodeError`) as ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: json's C scanner: reads one JSON value at an index, giving it and where it ended
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str) -> Any:
    """``json.loads(text)``: text that starts with an object is read by the scanner alone (then
    only white space may follow, as ``json.loads`` requires), anything else by ``json.loads``."""
    if not text.startswith("{"):
        return json.loads(text)
    try:
        value, end = _SCAN(text, 0)
    except StopIteration as stop:
        raise json.JSONDecodeError("Expecting value", text, stop.value) from None
    if text[end:].strip(" \t\n\r"):
        raise json.JSONDecodeError("Extra data", text, end)
    return value
