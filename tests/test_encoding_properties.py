"""Properties of the encoder that must hold for any text (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from smsgate import gsm7_tables
from smsgate.encoding import (
    SegmentInfo,
    decode_gsm7,
    decode_ucs2,
    encode_parts,
    encode_ucs2,
    encoding_and_segments,
    gsm7_septets,
    pack_septets,
    segments,
    unpack_septets,
)

DEFAULT_CHARS = [ch for ch in gsm7_tables.DEFAULT_LOCKING if ch != "\x1b"]
EXTENSION_CHARS = list(gsm7_tables.DEFAULT_SINGLE.values())
# Characters that exercise every rule: escapes, surrogate pairs, clusters, smart replacements,
# national tables, characters outside every table.
TRICKY = [
    *"😀🇫🇷\u200d\u0301\ufe0f🏽\r\n",
    *"жçş ıãáêè“”…\u00a0\u200b`\t",
    "👩",
    "💻",
]
# Characters that never join a cluster, for checking that the split is greedy.
PLAIN = [*DEFAULT_CHARS[:20], *"abc €[]ж😀😜çş“"]

TABLE_SETS = st.sampled_from(
    [(), ("turkish",), ("spanish",), ("portuguese",), ("turkish", "portuguese"),
     ("turkish", "spanish", "portuguese")]
)  # fmt: skip

any_text = st.text(max_size=400)
tricky_text = st.text(
    alphabet=st.sampled_from(DEFAULT_CHARS + EXTENSION_CHARS + TRICKY), max_size=500
)
plain_text = st.text(alphabet=st.sampled_from(PLAIN), max_size=500)


def _part_units(info: SegmentInfo, part: str, cedilla: bool) -> int:
    if info.encoding == "GSM-7":
        septets = gsm7_septets(
            part,
            locking_shift=info.locking_shift,
            single_shift=info.single_shift,
            gsm_c_cedilla=cedilla,
        )
        return len(septets)
    return len(encode_ucs2(part)) // 2


def _check(text: str, info: SegmentInfo, *, smart: bool, cedilla: bool) -> None:
    assert "".join(info.parts) == info.text
    if not smart or not info.replacements:
        assert info.text == text
    assert info.segments == len(info.parts) == len(info.part_units)
    assert sum(info.part_units) == info.units
    assert all(info.parts)
    for part, units in zip(info.parts, info.part_units, strict=True):
        assert _part_units(info, part, cedilla) == units
        assert units <= info.part_limit
    if info.segments == 1:
        limit = 160 if info.encoding == "GSM-7" else 70
        assert info.units <= limit
    if info.encoding == "GSM-7":
        # Encoding the parts one by one gives the septets of the whole text: no ESC pair split.
        whole = gsm7_septets(
            info.text,
            locking_shift=info.locking_shift,
            single_shift=info.single_shift,
            gsm_c_cedilla=cedilla,
        )
        assert len(whole) == info.units
        pieces = [
            gsm7_septets(
                p,
                locking_shift=info.locking_shift,
                single_shift=info.single_shift,
                gsm_c_cedilla=cedilla,
            )
            for p in info.parts
        ]
        assert b"".join(pieces) == whole
        assert not any(piece.endswith(b"\x1b") for piece in pieces)
        assert info.ucs2_chars == ()
    else:
        assert b"".join(encode_ucs2(p) for p in info.parts) == encode_ucs2(info.text)
        for part in info.parts:
            last_unit = int.from_bytes(encode_ucs2(part)[-2:], "big")
            assert not 0xD800 <= last_unit <= 0xDBFF  # no part ends inside a surrogate pair
        assert info.ucs2_chars
        assert len(set(info.ucs2_chars)) == len(info.ucs2_chars)
        assert all(ch in info.text for ch in info.ucs2_chars)


@given(any_text)
def test_any_text_default_options(text: str) -> None:
    _check(text, segments(text), smart=False, cedilla=False)
    if segments(text).encoding == "UCS-2":
        assert not set(segments(text).ucs2_chars) <= set(DEFAULT_CHARS + EXTENSION_CHARS)


@given(st.one_of(any_text, tricky_text))
def test_encoding_and_segments_is_what_segments_says(text: str) -> None:
    info = segments(text)
    assert encoding_and_segments(text) == (info.encoding, info.segments)


@given(tricky_text, st.booleans(), TABLE_SETS, st.booleans())
def test_tricky_text_any_options(
    text: str, smart: bool, tables: tuple[str, ...], cedilla: bool
) -> None:
    info = segments(text, smart=smart, shift_tables=tables, gsm_c_cedilla=cedilla)
    _check(text, info, smart=smart, cedilla=cedilla)
    assert set(info.shift_tables) <= set(tables)
    if info.replacements:
        assert smart and info.encoding == "GSM-7"
        plain = segments(text, shift_tables=tables, gsm_c_cedilla=cedilla)
        assert plain.encoding == "UCS-2" and info.segments <= plain.segments
    if info.shift_tables:
        # a table is used only when the default alphabet cannot carry the text
        assert segments(info.text, gsm_c_cedilla=cedilla).encoding == "UCS-2"


@given(plain_text)
def test_split_is_greedy_when_no_cluster_is_involved(text: str) -> None:
    info = segments(text)
    for part, following in zip(info.parts, info.parts[1:], strict=False):
        next_char = following[0]
        next_units = _part_units(info, next_char, False)
        assert _part_units(info, part, False) + next_units > info.part_limit


@given(st.lists(st.integers(0, 127), max_size=300), st.integers(0, 6))
def test_pack_unpack_round_trip(septets: list[int], fill_bits: int) -> None:
    packed = pack_septets(septets, fill_bits=fill_bits)
    expected_len = math.ceil((fill_bits + 7 * len(septets)) / 8) if septets else 0
    assert len(packed) == expected_len
    assert unpack_septets(packed, len(septets), fill_bits=fill_bits) == bytes(septets)
    if septets:
        assert packed[0] & ((1 << fill_bits) - 1) == 0  # fill bits are zero


@given(st.text(alphabet=st.sampled_from(DEFAULT_CHARS + EXTENSION_CHARS), max_size=400))
def test_gsm7_decode_encode_round_trip(text: str) -> None:
    septets = gsm7_septets(text)
    assert all(code < 128 for code in septets)
    assert decode_gsm7(septets) == text
    assert decode_gsm7(unpack_septets(pack_septets(septets), len(septets))) == text


LOCKINGS = [None, *gsm7_tables.LOCKING_TABLES]
SINGLES = [None, *gsm7_tables.SINGLE_TABLES]


@st.composite
def national_text(draw: st.DrawFn) -> tuple[str | None, str | None, str]:
    locking = draw(st.sampled_from(LOCKINGS))
    single = draw(st.sampled_from(SINGLES))
    lock_table = gsm7_tables.LOCKING_TABLES.get(locking or "", gsm7_tables.DEFAULT_LOCKING)
    single_table = gsm7_tables.SINGLE_TABLES.get(single or "", gsm7_tables.DEFAULT_SINGLE)
    chars = sorted({ch for ch in lock_table if ch != "\x1b"} | set(single_table.values()))
    return locking, single, draw(st.text(alphabet=st.sampled_from(chars), max_size=300))


@given(national_text())
def test_national_tables_round_trip(case: tuple[str | None, str | None, str]) -> None:
    locking, single, text = case
    septets = gsm7_septets(text, locking_shift=locking, single_shift=single)
    assert decode_gsm7(septets, locking_shift=locking, single_shift=single) == text


@settings(max_examples=50)
@given(tricky_text, TABLE_SETS)
def test_encode_parts_fit_and_decode(text: str, tables: tuple[str, ...]) -> None:
    info = segments(text, shift_tables=tables)
    datas = encode_parts(text, reference=7, shift_tables=tables)
    assert len(datas) == info.segments
    for data, part, units in zip(datas, info.parts, info.part_units, strict=True):
        assert len(data) <= 140
        header = data[: data[0] + 1] if (info.segments > 1 or info.shift_tables) else b""
        payload = data[len(header) :]
        if info.encoding == "GSM-7":
            fill = -len(header) * 8 % 7
            septets = unpack_septets(payload, units, fill_bits=fill)
            decoded = decode_gsm7(
                septets, locking_shift=info.locking_shift, single_shift=info.single_shift
            )
            assert decoded == part
            assert math.ceil(len(header) * 8 / 7) + units <= 160
        else:
            assert decode_ucs2(payload) == part
