"""Codes: derived under the secret, stored as a MAC, compared after normalization."""

from __future__ import annotations

import pytest

from smsgate.verify import codes

SECRET = b"k" * 32


@pytest.mark.parametrize(
    "typed",
    [
        "123456",
        " 123 456 ",
        "123-456",
        "123\u2013456",  # en dash
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width
        "\uff11\uff12\uff13\u3000\uff14\uff15\uff16",  # full-width, ideographic space
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "123.456",
    ],
)
def test_what_people_type_is_normalized(typed: str) -> None:
    assert codes.normalize_code(typed) == "123456"
    stored = codes.code_hash(SECRET, "ver_1", "123456")
    assert codes.matches(SECRET, "ver_1", typed, stored)


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "abcdef", "123456\x00"])
def test_anything_else_is_wrong_never_an_error(typed: str) -> None:
    stored = codes.code_hash(SECRET, "ver_1", "123456")
    assert not codes.matches(SECRET, "ver_1", typed, stored)


def test_codes_are_bound_to_the_secret_and_the_verification() -> None:
    salt = codes.new_salt()
    code = codes.derive_code(SECRET, "ver_1", salt, 6)
    assert len(code) == 6 and code.isdigit()
    assert code == codes.derive_code(SECRET, "ver_1", salt, 6)  # resend: the same code
    others = {codes.derive_code(SECRET, f"ver_{n}", salt, 6) for n in range(50)}
    assert len(others) > 40
    assert codes.code_hash(SECRET, "ver_1", code) != codes.code_hash(SECRET, "ver_2", code)
    assert codes.code_hash(SECRET, "ver_1", code) != codes.code_hash(b"o" * 32, "ver_1", code)
    assert len(codes.derive_code(SECRET, "ver_1", salt, 10)) == 10
    with pytest.raises(ValueError):
        codes.derive_code(SECRET, "ver_1", salt, 3)


def test_codes_are_spread_over_every_digit() -> None:
    seen = [codes.derive_code(SECRET, "ver_x", codes.new_salt(), 4) for _ in range(4000)]
    first_digits = {code[0] for code in seen}
    assert first_digits == set("0123456789")
    assert len(set(seen)) > 3000


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        codes.check_secret("short")
    assert codes.check_secret("s" * 32) == b"s" * 32
