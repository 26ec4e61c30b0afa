"""GSM 7-bit character tables from 3GPP TS 23.038 (data only).

A *locking shift* table replaces the whole default alphabet for a message; a *single shift* table
replaces the extension table reached through ESC (0x1B), so each of its characters costs two
septets. Locking tables are 128-character strings indexed by septet code, with ``ESC`` at 0x1B
standing for the escape code rather than a character. Single shift tables map septet code to
character; position 0x1B is reserved in every one of them and so is absent.
"""

from __future__ import annotations

from typing import Final

ESC: Final = 0x1B

#: 6.2.1, the GSM 7-bit default alphabet.
DEFAULT_LOCKING: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: 6.2.1.1, the default alphabet extension table.
DEFAULT_SINGLE: Final[dict[int, str]] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

#: A.3.1, Turkish national language locking shift table.
TURKISH_LOCKING: Final = (
    "@£$¥€éùıòÇ\nĞğ\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "İABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "çabcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: A.2.1, Turkish national language single shift table.
TURKISH_SINGLE: Final[dict[int, str]] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x47: "Ğ",
    0x49: "İ",
    0x53: "Ş",
    0x63: "ç",
    0x65: "€",
    0x67: "ğ",
    0x69: "\u0131",  # dotless i
    0x73: "ş",
}

#: A.2.2, Spanish national language single shift table (Spanish has no locking shift table).
SPANISH_SINGLE: Final[dict[int, str]] = {
    0x09: "ç",
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x41: "Á",
    0x49: "Í",
    0x4F: "Ó",
    0x55: "Ú",
    0x61: "á",
    0x65: "€",
    0x69: "í",
    0x6F: "ó",
    0x75: "ú",
}

#: A.3.3, Portuguese national language locking shift table.
PORTUGUESE_LOCKING: Final = (
    "@£$¥êéúíóç\nÔô\rÁá"
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"
    " !\"#º%&'()*+,-./"
    "0123456789:;<=>?"
    "ÍABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÃÕÚÜ§"
    "~abcdefghijklmno"
    "pqrstuvwxyzãõ`üà"
)

#: A.2.3, Portuguese national language single shift table.
PORTUGUESE_SINGLE: Final[dict[int, str]] = {
    0x05: "ê",
    0x09: "ç",
    0x0A: "\f",
    0x0B: "Ô",
    0x0C: "ô",
    0x0E: "Á",
    0x0F: "á",
    0x12: "Φ",
    0x13: "Γ",
    0x14: "^",
    0x15: "Ω",
    0x16: "Π",
    0x17: "Ψ",
    0x18: "Σ",
    0x19: "Θ",
    0x1F: "Ê",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x41: "À",
    0x49: "Í",
    0x4F: "Ó",
    0x55: "Ú",
    0x5B: "Ã",
    0x5C: "Õ",
    0x61: "Â",
    0x65: "€",
    0x69: "í",
    0x6F: "ó",
    0x75: "ú",
    0x7B: "ã",
    0x7C: "õ",
    0x7F: "â",
}

#: National language identifiers (TS 23.038 6.2.1.2.4) used in the UDH shift-table elements.
LANGUAGE_IDS: Final[dict[str, int]] = {"turkish": 1, "spanish": 2, "portuguese": 3}

LOCKING_TABLES: Final[dict[str, str]] = {
    "turkish": TURKISH_LOCKING,
    "portuguese": PORTUGUESE_LOCKING,
}

SINGLE_TABLES: Final[dict[str, dict[int, str]]] = {
    "turkish": TURKISH_SINGLE,
    "spanish": SPANISH_SINGLE,
    "portuguese": PORTUGUESE_SINGLE,
}
