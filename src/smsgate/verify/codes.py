"""One-time codes: derived from a random salt under the server secret, checked by HMAC.

Why derived and not stored: a resend inside the window may send *the same code* (Twilio's
policy, and the least confusing for a user whose first text arrives late), yet the store must
never hold a code. So each verification gets a random salt (:mod:`secrets`); its code is
``HMAC-SHA256(secret, "code" | id | salt)`` reduced to the code's digits, which only a holder of
the server secret can recompute. What the store keeps for checking is another HMAC,
``HMAC-SHA256(secret, "check" | id | code)``: a copy of the database alone reveals no code and
allows no offline guessing, and the id in the MAC makes every verification's hashes unrelated.

What a user types is normalized before it is compared (:func:`normalize_code`): NFKC turns
full-width and other compatibility digits into ASCII ones (U+FF11 is 1), and spaces, dashes and
dots people type or paste (``123 456``, ``123-456``) are dropped. Anything else that is not a
digit makes the guess wrong, never an error, and the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata

#: the byte length of a salt; 128 bits so salts never repeat
_SALT_BYTES = 16
#: separators people put inside a code; Unicode dashes and spaces are matched by category
_SEPARATORS = frozenset(".·_/")
MIN_LENGTH = 4
MAX_LENGTH = 10
MIN_SECRET = 32


def new_salt() -> str:
    return secrets.token_hex(_SALT_BYTES)


def derive_code(secret: bytes, verification_id: str, salt: str, length: int) -> str:
    """The code of a verification: ``length`` decimal digits from its salt under ``secret``.

    Eight bytes of MAC reduced modulo 10**10 at most: the bias is below 1e-9, far under what a
    guesser with five tries could use.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"code length must be {MIN_LENGTH} to {MAX_LENGTH} digits")
    mac = hmac.new(secret, f"code|{verification_id}|{salt}".encode(), hashlib.sha256).digest()
    return str(int.from_bytes(mac[:8], "big") % 10**length).zfill(length)


def code_hash(secret: bytes, verification_id: str, code: str) -> str:
    """What the store keeps to check a code of this verification."""
    return hmac.new(secret, f"check|{verification_id}|{code}".encode(), hashlib.sha256).hexdigest()


def normalize_code(text: str) -> str:
    """``text`` as the digits a user meant: NFKC (full-width and other compatibility digits become
    ASCII), separators dropped. What remains may still not be digits: then no code matches it."""
    folded = unicodedata.normalize("NFKC", text)
    kept = []
    for char in folded:
        if char in _SEPARATORS or char.isspace():
            continue
        if unicodedata.category(char) == "Pd":  # hyphen-minus, en dash, em dash, ...
            continue
        if char.isdigit() and not char.isascii():
            # a digit NFKC left alone (Arabic-Indic, Devanagari ...): its decimal value
            value = unicodedata.decimal(char, None)
            kept.append(str(value) if value is not None else char)
            continue
        kept.append(char)
    return "".join(kept)


def matches(secret: bytes, verification_id: str, typed: str, stored_hash: str) -> bool:
    """Whether ``typed`` (normalized) is the code whose hash is ``stored_hash``.

    The MAC is always computed and compared in constant time, whatever was typed, so the time
    taken says nothing about how close a guess was or whether it was even digits.
    """
    candidate = normalize_code(typed)
    if not (candidate.isascii() and candidate.isdigit()):
        candidate = "not a code"
    return hmac.compare_digest(code_hash(secret, verification_id, candidate), stored_hash)


def check_secret(secret: str | bytes, field: str = "verify.secret") -> bytes:
    """The secret as bytes, refused (ValueError naming ``field``) when too short to be one."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET:
        raise ValueError(
            f"{field}: the server secret must be at least {MIN_SECRET} characters; generate one "
            'with python -c "import secrets; print(secrets.token_urlsafe(32))" and pass it '
            'through the environment (secret = "${SMSGATE_VERIFY_SECRET}")'
        )
    return raw
