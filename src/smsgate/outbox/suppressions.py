"""The suppression list as submit sees it: recipients who opted out (STOP) are refused.

A suppression row names a recipient and one number of ours (the number they wrote STOP to), or
``*`` for all of them (STOPALL). A message from ``sender`` is refused when its recipient has a row
for that sender or for ``*``; a message without a sender (the provider's default number) when
the recipient opted out of any number of ours. Senders are compared as :func:`number_key` writes
them, so ``+1 501 712 2661`` and ``+15017122661`` are one number.

Only messages about to be stored are refused: one whose idempotency key (or id) is stored
already is that message, so sending it again returns it even after its recipient opted out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from smsgate.errors import OptedOut, SmsgateError
from smsgate.message import Purpose
from smsgate.outbox.store import ALL_NUMBERS, NewMessageRow, Suppressed
from smsgate.phone import normalize

__all__ = ["ALL_NUMBERS", "OptOutScreen", "number_key", "opted_out", "refuse_opted_out"]

# Rows may be plain tuples (from a bulk loader's other process): index, don't name.
_PURPOSE = NewMessageRow._fields.index("purpose")
_TO = NewMessageRow._fields.index("to_number")
_SENDER = NewMessageRow._fields.index("sender")
_OTP = Purpose.OTP.value


def number_key(text: str) -> str:
    """How a number is written in the suppression list: E.164 for phone numbers, short codes and
    alphanumeric sender ids as they are (so ``+1 501 712 2661`` and ``+15017122661`` match)."""
    text = text.strip()
    if text == ALL_NUMBERS or not (text.startswith("+") or text.replace(" ", "").isdigit()):
        return text
    try:
        return normalize(text, strict=False)
    except SmsgateError:
        return text


def opted_out(to: str, sender: str | None) -> OptedOut:
    of = f"from {sender}" if sender else "from our numbers"
    return OptedOut(
        f"to {to!r}: opted out of messages {of} (replied STOP); "
        "they can reply START to opt in again, or the suppression can be removed",
        field="to",
    )


def refuse_opted_out(
    suppressed: Suppressed,
    rows: Sequence[Sequence[Any]],
    positions: Iterable[int],
    *,
    include_otp: bool,
) -> dict[int, OptedOut]:
    """Those of ``rows`` at ``positions`` whose recipient opted out of their sender, with the
    refusal, as ``suppressed`` reads the suppression list.

    ``include_otp`` False lets otp messages through (marketing and transactional never are).
    One look-up per distinct sender, however many rows.
    """
    keys: dict[str, str] = {}
    by_sender: dict[str | None, list[int]] = {}
    for index in positions:
        row = rows[index]
        if not include_otp and row[_PURPOSE] == _OTP:
            continue
        sender = row[_SENDER]
        if sender is not None:
            key = keys.get(sender)
            if key is None:
                key = keys[sender] = number_key(sender)
            sender = key
        group = by_sender.get(sender)
        if group is None:
            by_sender[sender] = [index]
        else:
            group.append(index)
    refused: dict[int, OptedOut] = {}
    for sender, indexes in by_sender.items():
        blocked = suppressed([rows[i][_TO] for i in indexes], sender)
        for index in indexes if blocked else ():
            to = rows[index][_TO]
            if to in blocked:
                refused[index] = opted_out(to, sender)
    return refused


class OptOutScreen:
    """The :data:`~smsgate.outbox.store.Screen` of an insert of ``rows`` that refuses recipients
    who opted out. After the insert, ``refused`` holds the refusals by position in ``rows``:
    look up those the insert returned None for (it may have screened a row that then turned
    out to repeat an earlier one of the batch)."""

    __slots__ = ("include_otp", "refused", "rows")

    def __init__(self, rows: Sequence[Sequence[Any]], *, include_otp: bool) -> None:
        self.rows = rows
        self.include_otp = include_otp
        self.refused: dict[int, OptedOut] = {}

    def __call__(self, positions: Sequence[int], suppressed: Suppressed) -> dict[int, OptedOut]:
        self.refused = refuse_opted_out(
            suppressed, self.rows, positions, include_otp=self.include_otp
        )
        return self.refused
