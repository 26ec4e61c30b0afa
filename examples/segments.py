"""How a text will be encoded and split before you pay for it (no provider needed).

    python examples/segments.py

Counting characters is not counting segments: "€" costs two GSM-7 units, one emoji switches the
whole message to UCS-2 (70 characters a part instead of 160), and a split message loses a few
characters per part to its header.
"""

from __future__ import annotations

import smsgate

TEXTS = [
    "Your code is 481902",
    "Total: 12 € (incl. VAT)",
    "Great news 🎉 your order shipped",
    "“Smart” quotes and dashes – here…",  # noqa: RUF001 - the point of the example
    "x" * 161,
]


def main() -> int:
    for text in TEXTS:
        info = smsgate.segments(text)
        smart = smsgate.segments(text, smart=True)
        shown = text if len(text) <= 36 else text[:33] + "..."
        line = f"{shown:<38} {info.encoding:<6} {info.units:>4} units {info.segments} segment(s)"
        if smart.encoding != info.encoding:
            line += f"; smart: {smart.encoding}, {smart.segments} segment(s)"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
