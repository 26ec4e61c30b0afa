"""GSM-7 / UCS-2 encoding and segmentation: the rules of shared/encoding.md, example by example."""

# Look-alike characters (curly quotes, dashes, dotless i) are what these tests are about.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import smsgate
from smsgate.cli import app
from smsgate.encoding import (
    SMART_REPLACEMENTS,
    SegmentInfo,
    concat_udh,
    decode_gsm7,
    decode_ucs2,
    encode_parts,
    encode_ucs2,
    gsm7_septets,
    pack_septets,
    segments,
    smart_replace,
    unpack_septets,
)
from smsgate.errors import InvalidMessage

# Written out again from encoding.md rather than imported, so a typo in the module's table fails.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
             "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip
DIGITS = "1234567890"


def test_alphabet_literal_is_128_positions() -> None:
    assert len(DEFAULT_ALPHABET) == 128
    assert DEFAULT_ALPHABET.index("\x1b") == 0x1B
    assert len(EXTENSION) == 10


# --- the public examples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "count"),
    [
        ((DIGITS * 16)[:160], "GSM-7", 160, 1),
        ((DIGITS * 17)[:161], "GSM-7", 161, 2),
        ("€" + (DIGITS * 16)[:158], "GSM-7", 160, 1),
        ("€" + (DIGITS * 16)[:159], "GSM-7", 161, 2),
        ("ç" * 70, "UCS-2", 70, 1),
        ("😜" + (DIGITS * 7)[:68], "UCS-2", 70, 1),
        ("😜" + (DIGITS * 14)[:133], "UCS-2", 135, 3),
    ],
)
def test_encoding_md_examples(text: str, encoding: str, units: int, count: int) -> None:
    info = segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, count)
    assert "".join(info.parts) == text


def test_design_md_example_and_lazy_export() -> None:
    info = smsgate.segments("Hello €")
    assert isinstance(info, smsgate.SegmentInfo)
    assert (info.encoding, info.units, info.segments, info.parts) == ("GSM-7", 8, 1, ("Hello €",))


# --- alphabets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [c for c in range(128) if c != 0x1B])
def test_every_default_position_is_one_septet(code: int) -> None:
    ch = DEFAULT_ALPHABET[code]
    info = segments(ch)
    assert (info.encoding, info.units, info.segments) == ("GSM-7", 1, 1)
    assert gsm7_septets(ch) == bytes([code])
    assert decode_gsm7(bytes([code])) == ch


def test_escape_position_is_not_a_character() -> None:
    # 0x1B is the escape to the extension table; a literal ESC in a text cannot be sent as GSM-7.
    info = segments("\x1b")
    assert info.encoding == "UCS-2"
    assert info.ucs2_chars == ("\x1b",)
    with pytest.raises(InvalidMessage):
        gsm7_septets("\x1b")


@pytest.mark.parametrize(("ch", "code"), sorted(EXTENSION.items()))
def test_extension_characters_cost_two_septets_but_one_ucs2_unit(ch: str, code: int) -> None:
    info = segments(ch)
    assert (info.encoding, info.units) == ("GSM-7", 2)
    assert gsm7_septets(ch) == bytes([0x1B, code])
    assert decode_gsm7(bytes([0x1B, code])) == ch
    mixed = segments(ch + "ж")
    assert (mixed.encoding, mixed.units) == ("UCS-2", 2)


@pytest.mark.parametrize("ch", ["`", "\t", "ç", "á", "ж", "\x00", "\x7f", "\xa0"])
def test_characters_outside_gsm7(ch: str) -> None:
    info = segments("abc" + ch + "def" + ch)
    assert info.encoding == "UCS-2"
    assert info.ucs2_chars == (ch,)


def test_ucs2_chars_are_distinct_in_order_of_first_appearance() -> None:
    assert segments("Ça va? ça 😀 va ç 😀 ж").ucs2_chars == ("ç", "😀", "ж")
    long_cyrillic = "Привет, мир! " * 40
    assert segments(long_cyrillic).ucs2_chars == tuple(dict.fromkeys("Приветмир"))


def test_lowercase_c_cedilla_option() -> None:
    assert segments("ç").encoding == "UCS-2"
    info = segments("ça", gsm_c_cedilla=True)
    assert (info.encoding, info.units) == ("GSM-7", 2)
    assert gsm7_septets("ç", gsm_c_cedilla=True) == b"\x09"
    assert decode_gsm7(b"\x09") == "Ç"


def test_astral_characters_are_two_units() -> None:
    assert segments("😀").units == 2
    assert segments("😀ж").units == 3
    assert segments("\U00020000").units == 2  # CJK extension B


# --- segmentation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "count"), [(0, 0), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)]
)
def test_gsm7_boundaries(length: int, count: int) -> None:
    info = segments("a" * length)
    assert (info.encoding, info.units, info.segments) == ("GSM-7", length, count)
    if count > 1:
        assert all(units == 153 for units in info.part_units[:-1])


@pytest.mark.parametrize(("length", "count"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_boundaries(length: int, count: int) -> None:
    info = segments("ж" * length)
    assert (info.encoding, info.units, info.segments) == ("UCS-2", length, count)
    if count > 1:
        assert all(units == 67 for units in info.part_units[:-1])


def test_escape_pair_never_straddles_parts() -> None:
    info = segments("€" * 153)
    assert info.units == 306
    assert math.ceil(info.units / 153) == 2  # the naive count ...
    assert info.segments == 3  # ... is wrong: each part holds 76 euro signs (152 septets)
    assert info.part_units == (152, 152, 2)
    edge = segments("a" * 152 + "€" + "a" * 10)
    assert edge.parts[0] == "a" * 152
    assert edge.part_units[0] == 152


def test_emoji_straddling_the_67_unit_boundary() -> None:
    text = "a" * 66 + "😜" + "ж" * 10
    info = segments(text)
    assert info.parts == ("a" * 66, "😜" + "ж" * 10)
    assert info.part_units == (66, 12)


@pytest.mark.parametrize(
    "cluster",
    [
        "🇫🇷",  # flag: regional indicator pair
        "👩\u200d👩\u200d👧\u200d👦",  # family ZWJ sequence
        "❤\ufe0f",  # emoji + variation selector
        "👍🏽",  # emoji + skin tone
        "👩🏽\u200d💻",  # skin tone inside a ZWJ sequence
        "e\u0301\u0323",  # base + combining marks
        "1\ufe0f\u20e3",  # keycap
        "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # tag sequence
        "\r\n",
    ],
)
def test_grapheme_clusters_stay_in_one_part(cluster: str) -> None:
    units = len(cluster.encode("utf-16-le")) // 2
    for lead in range(68 - units, 67):  # every start at which the cluster would cross unit 67
        text = "ж" * lead + cluster + "ж" * 20
        info = segments(text)
        assert info.encoding == "UCS-2"
        assert info.parts[0] == "ж" * lead, (lead, info.parts)
        assert info.parts[1].startswith(cluster)
        assert "".join(info.parts) == text


def test_flags_pair_from_the_left() -> None:
    # 33 flags are 132 units. The first indicator of the 17th flag would still fit in the first
    # part (66 units), but that would split the flag, so the part ends after 16 flags.
    info = segments("🇫🇷" * 33)
    assert all(len(part) % 2 == 0 for part in info.parts)
    assert info.parts[0] == "🇫🇷" * 16
    # Indicators pair from the left (UAX #29): after a lone 🇫, "🇫🇷" reads as 🇫🇫 + 🇷, and the
    # part may end between the pairs.
    assert segments("ж" * 62 + "🇫" + "🇫🇷" + "ж" * 10).parts[0] == "ж" * 62 + "🇫🇫"
    assert segments("ж" * 64 + "🇫🇷🇩🇪").parts == ("ж" * 64, "🇫🇷🇩🇪")


def test_cluster_longer_than_a_part_is_split_at_a_code_point() -> None:
    text = "e" + "\u0301" * 100 + "ж"
    info = segments(text)
    assert info.part_units == (67, 35)
    assert "".join(info.parts) == text


def test_empty_text_has_no_parts() -> None:
    info = segments("")
    assert (info.encoding, info.units, info.segments, info.parts) == ("GSM-7", 0, 0, ())
    assert encode_parts("") == []


# --- smart encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "replacements"),
    [
        ("“Hi” „there”", '"Hi" "there"', [("“", '"'), ("”", '"'), ("„", '"')]),
        ("it’s ‘ok’", "it's 'ok'", [("’", "'"), ("‘", "'")]),
        ("a – b — c ― d", "a - b - c - d", [("–", "-"), ("—", "-"), ("―", "-")]),
        ("wait…", "wait...", [("…", "...")]),
        ("10\u00a0€\u202fok", "10 € ok", [("\u00a0", " "), ("\u202f", " ")]),
        ("zero\u200bwidth\ufeff", "zerowidth", [("\u200b", ""), ("\ufeff", "")]),
        ("«Salut»", '"Salut"', [("«", '"'), ("»", '"')]),
    ],
)
def test_smart_replacements(text: str, expected: str, replacements: list[tuple[str, str]]) -> None:
    assert segments(text).encoding == "UCS-2"
    info = segments(text, smart=True)
    assert info.encoding == "GSM-7"
    assert info.text == expected
    assert "".join(info.parts) == expected
    assert list(info.replacements) == replacements


def test_smart_keeps_a_text_that_needs_ucs2_anyway() -> None:
    text = "“Hi” 😀"
    info = segments(text, smart=True)
    assert (info.encoding, info.text, info.replacements) == ("UCS-2", text, ())


def test_smart_does_not_replace_when_it_adds_parts() -> None:
    text = "…" * 60  # 60 UCS-2 units in one part; "..." x 60 is 180 septets, two parts
    info = segments(text, smart=True)
    assert (info.encoding, info.segments, info.replacements) == ("UCS-2", 1, ())


def test_smart_keeps_zwj_inside_emoji_sequences() -> None:
    family = "👩\u200d👩\u200d👧"
    assert smart_replace(family) == (family, ())
    assert smart_replace("a\u200db") == ("ab", (("\u200d", ""),))
    replaced, applied = smart_replace("x\u200d " + family)
    assert replaced == "x " + family
    assert applied == (("\u200d", ""),)


def test_smart_removes_a_lone_zwj_and_reports_it() -> None:
    info = segments("ab\u200dc", smart=True)
    assert (info.encoding, info.text, info.replacements) == ("GSM-7", "abc", (("\u200d", ""),))


def test_smart_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        SMART_REPLACEMENTS["x"] = "y"  # type: ignore[index]


def test_smart_never_replaces_a_gsm_character() -> None:
    gsm = set(DEFAULT_ALPHABET) | set(EXTENSION)
    assert not gsm & set(SMART_REPLACEMENTS)
    for table in ("turkish", "spanish", "portuguese"):
        for ch in SMART_REPLACEMENTS:
            assert segments(ch, shift_tables=[table]).encoding == "UCS-2", (table, ch)
    assert segments("plain text", smart=True).replacements == ()


# --- national language shift tables -------------------------------------------------------------

TURKISH = "Şişli'de güzel bir gün; ılık hava, dağ yolu, Ğ ve İ harfleri."


def test_turkish_text_needs_the_turkish_table() -> None:
    plain = segments(TURKISH)
    assert plain.encoding == "UCS-2"
    assert set(plain.ucs2_chars) == {"Ş", "ş", "ğ", "ı", "Ğ", "İ"}
    info = segments(TURKISH, shift_tables=("turkish",))
    assert info.encoding == "GSM-7"
    assert info.units == len(TURKISH)  # every letter is in the locking table: one septet each
    assert (info.shift_tables, info.locking_shift, info.single_shift) == (
        ("turkish",),
        "turkish",
        None,
    )
    septets = gsm7_septets(TURKISH, locking_shift="turkish")
    assert decode_gsm7(septets, locking_shift="turkish") == TURKISH


def test_tables_are_used_only_when_needed() -> None:
    info = segments("Hello [world]", shift_tables=("turkish", "spanish", "portuguese"))
    assert (info.encoding, info.shift_tables, info.locking_shift, info.single_shift) == (
        "GSM-7",
        (),
        None,
        None,
    )


@pytest.mark.parametrize(("filler", "count"), [(153, 1), (154, 2)])
def test_one_table_capacity_155_single_149_per_part(filler: int, count: int) -> None:
    text = "á" + "a" * filler  # Spanish single shift: á is ESC + 0x61, two septets
    info = segments(text, shift_tables=["spanish"])
    assert (info.encoding, info.units, info.segments) == ("GSM-7", filler + 2, count)
    assert info.single_shift == "spanish"
    assert info.part_limit == (155 if count == 1 else 149)
    if count > 1:
        assert info.part_units[0] == 149


@pytest.mark.parametrize(("filler", "count"), [(149, 1), (150, 2)])
def test_two_tables_capacity_152_single_146_per_part(filler: int, count: int) -> None:
    # ı is only Turkish and ã only Portuguese: one table must lock, the other shift.
    text = "ıã" + "a" * filler
    info = segments(text, shift_tables=["turkish", "portuguese"])
    assert (info.encoding, info.units, info.segments) == ("GSM-7", filler + 3, count)
    assert {info.locking_shift, info.single_shift} == {"turkish", "portuguese"}
    assert info.part_limit == (152 if count == 1 else 146)
    if count > 1:
        assert info.part_units[0] == 146


def test_table_choice_prefers_fewer_parts_then_fewer_tables() -> None:
    # ê is one septet in the Portuguese locking table, two through its single shift table.
    text = "ê" * 100
    info = segments(text, shift_tables=["portuguese"])
    assert (info.segments, info.units, info.locking_shift, info.single_shift) == (
        1,
        100,
        "portuguese",
        None,
    )
    # è is not in the Portuguese locking table, so only the single shift table can carry ê.
    mixed = segments("è" + "ê" * 10, shift_tables=["portuguese"])
    assert (mixed.units, mixed.locking_shift, mixed.single_shift) == (21, None, "portuguese")


def test_unknown_shift_table() -> None:
    with pytest.raises(InvalidMessage) as caught:
        segments("x", shift_tables=["klingon"])
    assert caught.value.field == "shift_tables"
    assert "klingon" in caught.value.message
    assert "turkish, spanish, portuguese" in caught.value.message
    assert segments("ş", shift_tables="Turkish").encoding == "GSM-7"
    for bad in ([None], [["turkish"]], 3):
        with pytest.raises(InvalidMessage) as caught:
            segments("x", shift_tables=bad)  # type: ignore[arg-type]
        assert caught.value.field == "shift_tables"
    with pytest.raises(InvalidMessage):
        gsm7_septets("x", locking_shift="spanish")  # Spanish has no locking shift table


def test_body_must_be_text() -> None:
    for bad in (None, b"bytes", 42, ["a"]):
        with pytest.raises(InvalidMessage) as caught:
            segments(bad)  # type: ignore[arg-type]
        assert caught.value.field == "body"


# --- SegmentInfo ---------------------------------------------------------------------------------


def test_segment_info_is_a_frozen_dataclass_equal_to_one_built_normally() -> None:
    info = segments("hi €")
    built = SegmentInfo(
        encoding="GSM-7", units=5, segments=1, parts=("hi €",), part_units=(5,), text="hi €"
    )
    assert info == built
    assert hash(info) == hash(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.units = 1  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


def test_to_dict_is_json_safe() -> None:
    info = segments("“Hi” 😀 ж" * 10, smart=True)
    data = info.to_dict()
    assert {"encoding", "units", "segments", "parts", "ucs2_chars", "replacements"} <= set(data)
    assert json.loads(json.dumps(data)) == data
    assert data["parts"] == list(info.parts)
    assert data["ucs2_chars"] == ["“", "”", "😀", "ж"]


# --- bytes on the wire --------------------------------------------------------------------------


def test_pack_known_vector() -> None:
    # TS 23.038's classic example: "hello" packs to E8 32 9B FD 06.
    assert pack_septets(gsm7_septets("hello")) == bytes.fromhex("e8329bfd06")
    assert unpack_septets(bytes.fromhex("e8329bfd06"), 5) == gsm7_septets("hello")


def test_pack_with_fill_bits() -> None:
    packed = pack_septets([0x7F], fill_bits=1)
    assert packed == bytes([0xFE])
    assert unpack_septets(packed, 1, fill_bits=1) == b"\x7f"
    assert pack_septets([]) == b""
    with pytest.raises(ValueError):
        pack_septets([0x80])
    with pytest.raises(ValueError):
        pack_septets([1], fill_bits=7)
    with pytest.raises(ValueError):
        unpack_septets(b"\x01", 2)


def test_decode_odd_escapes() -> None:
    # An unknown extension code shows the default character; ESC ESC shows a space.
    assert decode_gsm7(bytes([0x1B, ord("A")])) == "A"
    assert decode_gsm7(bytes([0x1B, 0x1B, ord("A")])) == " A"
    assert decode_gsm7(bytes([ord("A"), 0x1B])) == "A"
    with pytest.raises(ValueError):
        decode_gsm7(b"\x80")


def test_ucs2_bytes() -> None:
    assert encode_ucs2("ж😀") == bytes.fromhex("0436d83dde00")
    assert decode_ucs2(encode_ucs2("ж😀")) == "ж😀"


def test_concat_udh() -> None:
    assert concat_udh(0x42, 3, 1) == bytes.fromhex("050003420301")
    for args in ((256, 1, 1), (1, 0, 1), (1, 2, 3), (1, 2, 0)):
        with pytest.raises(ValueError):
            concat_udh(*args)


def test_encode_parts_gsm7_concatenated() -> None:
    text = "€" + "x" * 200
    info = segments(text)
    parts = encode_parts(text, reference=9)
    assert len(parts) == info.segments == 2
    for sequence, (data, part, units) in enumerate(
        zip(parts, info.parts, info.part_units, strict=True), 1
    ):
        assert data[:6] == concat_udh(9, 2, sequence)
        assert len(data) <= 140
        septets = unpack_septets(data[6:], units, fill_bits=1)
        assert decode_gsm7(septets) == part
    assert len(parts[0]) == 140  # 6 header octets + 153 septets with 1 fill bit


def test_encode_parts_single_and_ucs2() -> None:
    assert encode_parts("hello") == [bytes.fromhex("e8329bfd06")]
    assert encode_parts("ж") == [b"\x04\x36"]
    text = "ж" * 100
    parts = encode_parts(text, reference=1)
    assert [len(p) for p in parts] == [6 + 134, 6 + 66]
    assert "".join(decode_ucs2(p[6:]) for p in parts) == text
    random_ref = encode_parts("a" * 200)
    assert random_ref[0][3] == random_ref[1][3]  # one reference for all parts


def test_encode_parts_with_shift_tables() -> None:
    # One table, one part: UDHL 3 then the locking shift element (IEI 0x25, length 1, Turkish).
    [data] = encode_parts("ş", shift_tables=["turkish"])
    assert data[:4] == bytes([3, 0x25, 1, 1])
    fill = -4 * 8 % 7
    assert decode_gsm7(unpack_septets(data[4:], 1, fill_bits=fill), locking_shift="turkish") == "ş"
    # Two tables, concatenated: 5 + 3 + 3 octets of elements, 146 septets per part.
    text = "ıã" + "a" * 200
    info = segments(text, shift_tables=["turkish", "portuguese"])
    parts = encode_parts(text, reference=5, shift_tables=["turkish", "portuguese"])
    for data, part, units in zip(parts, info.parts, info.part_units, strict=True):
        assert data[0] == 11
        assert data[1:4] == bytes([0, 3, 5])
        assert len(data) <= 140
        header = data[:12]
        assert bytes([0x25, 1]) in header and bytes([0x24, 1]) in header
        septets = unpack_septets(data[12:], units, fill_bits=-12 * 8 % 7)
        decoded = decode_gsm7(
            septets, locking_shift=info.locking_shift, single_shift=info.single_shift
        )
        assert decoded == part
    assert len(parts[0]) == 140


def test_encode_parts_rejects_more_than_255_parts() -> None:
    with pytest.raises(InvalidMessage):
        encode_parts("a" * 153 * 256)


# --- CLI ----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_json() -> None:
    result = runner.invoke(app, ["segments", "Hello €", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["encoding"] == "GSM-7"
    assert (data["units"], data["segments"], data["parts"]) == (8, 1, ["Hello €"])
    assert data["ucs2_chars"] == [] and data["replacements"] == []


def test_cli_options() -> None:
    result = runner.invoke(app, ["segments", "“ş”", "--smart", "--shift", "turkish", "--json"])
    data = json.loads(result.stdout)
    assert data["parts"] == ['"ş"']
    assert data["shift_tables"] == ["turkish"]
    assert data["replacements"] == [["“", '"'], ["”", '"']]
    piped = runner.invoke(app, ["segments", "-", "--json"], input="ж\n")
    assert json.loads(piped.stdout)["parts"] == ["ж"]


def test_cli_c_cedilla() -> None:
    plain = json.loads(runner.invoke(app, ["segments", "ça", "--json"]).stdout)
    option = runner.invoke(app, ["segments", "ça", "--gsm-c-cedilla", "--json"])
    assert plain["encoding"] == "UCS-2" and plain["ucs2_chars"] == ["ç"]
    assert json.loads(option.stdout)["encoding"] == "GSM-7"


def test_cli_table_shows_text_verbatim() -> None:
    result = runner.invoke(app, ["segments", "[bold]x[/bold] 😀"])
    assert result.exit_code == 0
    assert "[bold]x[/bold]" in result.stdout
    assert "UCS-2" in result.stdout and "U+1F600" in result.stdout


def test_cli_unknown_shift_is_one_line_on_stderr() -> None:
    result = runner.invoke(app, ["segments", "x", "--shift", "klingon"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "klingon" in result.stderr and "turkish" in result.stderr
    assert "Traceback" not in result.stderr


def test_installed_console_script() -> None:
    script = Path(sys.executable).with_name("smsgate")
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    done = subprocess.run(
        [str(script), "segments", "Hello €", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["units"] == 8
