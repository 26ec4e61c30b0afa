"""SMS character encoding: GSM-7 and UCS-2, segmentation, national shift tables, smart encoding.

:func:`segments` tells what a body costs: the encoding, the units (septets for GSM-7, UTF-16 code
units for UCS-2), and the exact text of every part, following 3GPP TS 23.038 and TS 23.040 (see
``shared/encoding.md``). The byte-level functions below it build what goes on the wire: septets,
their 7-bit packing after a user data header, UTF-16BE, and the concatenation header.

Rules worth knowing:

- A character of the default alphabet costs one septet; one of the extension table (``^ { } \\
  [ ~ ] |``, ``€`` and form feed) costs two (ESC + code). In a UCS-2 message every BMP character
  costs one unit and a character outside the BMP (most emoji) two.
- Lowercase ``ç`` is not in the default alphabet (0x09 is ``Ç``); ``gsm_c_cedilla=True`` sends it
  as 0x09, as many handsets display it. The ESC character itself (U+001B) in a text is not
  encodable: sent as 0x1B it would turn the next character into an extension code.
- A part never ends between ESC and its character or inside a surrogate pair, and a grapheme
  cluster (a flag, a ZWJ emoji sequence, an emoji with its variation selector or skin tone, a base
  letter with its combining marks, CR LF) is kept in one part when it fits in one. So a part can
  hold a unit or more fewer than the maximum, and ``ceil(units / 153)`` is not the part count.
- National language shift tables (Turkish, Spanish, Portuguese) are opt-in and used only when the
  default alphabet cannot carry the text. Each table costs a 3-octet header element.

Speed: the common case (a text in the default alphabet) is answered by C code only: an ASCII
byte ``translate`` or one regular-expression scan, then plain slicing. There is no cache keyed by
text; a call costs what it costs.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from smsgate import gsm7_tables as _tables
from smsgate.errors import InvalidMessage
from smsgate.slots import slot_setter

__all__ = [
    "GSM7",
    "PART_SEPTETS",
    "PART_UNITS",
    "SHIFT_TABLES",
    "SINGLE_SEPTETS",
    "SINGLE_UNITS",
    "SMART_REPLACEMENTS",
    "UCS2",
    "SegmentInfo",
    "concat_udh",
    "decode_gsm7",
    "decode_ucs2",
    "encode_parts",
    "encode_ucs2",
    "gsm7_septets",
    "pack_septets",
    "segments",
    "smart_replace",
    "unpack_septets",
]

Encoding = Literal["GSM-7", "UCS-2"]
GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

#: national language tables that can be enabled, by name
SHIFT_TABLES: Final = ("turkish", "spanish", "portuguese")

#: units in one message / in each part of a concatenated message, with no shift tables
SINGLE_SEPTETS: Final = 160
PART_SEPTETS: Final = 153
SINGLE_UNITS: Final = 70
PART_UNITS: Final = 67

_USER_DATA_OCTETS = 140
_CONCAT_IE_OCTETS = 5  # IEI 0x00, length 3, reference, total, sequence
_SHIFT_IE_OCTETS = 3  # IEI 0x24 or 0x25, length 1, language id
_IEI_CONCAT_8BIT = 0x00
_IEI_SINGLE_SHIFT = 0x24
_IEI_LOCKING_SHIFT = 0x25
_ESC = _tables.ESC
_ZWJ = "\u200d"


def _septet_capacity(tables: int, *, concatenated: bool) -> int:
    """Septets left in 140 octets once the header (its length octet included) is paid for."""
    header = _CONCAT_IE_OCTETS * concatenated + _SHIFT_IE_OCTETS * tables
    if header:
        header += 1
    return (_USER_DATA_OCTETS - header) * 8 // 7


def _char_class(chars: Iterable[str]) -> str:
    """The inside of a regex ``[...]`` matching exactly ``chars``, runs written as ranges."""
    codes = sorted({ord(ch) for ch in chars})
    items: list[str] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        # \U escapes keep every character literal inside [...], whatever it is.
        items.append(f"\\U{codes[i]:08x}" if i == j else f"\\U{codes[i]:08x}-\\U{codes[j]:08x}")
        i = j + 1
    return "".join(items)


def _body_type_error(text: object) -> InvalidMessage:
    return InvalidMessage(f"body must be text, got {type(text).__name__}", field="body")


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """What a body costs to send as SMS, and the text of each part.

    - ``encoding``: ``"GSM-7"`` or ``"UCS-2"``.
    - ``units``: septets for GSM-7, escape septets included (an extension or single-shift
      character counts 2); UTF-16 code units for UCS-2 (a character outside the BMP counts 2).
      Header octets are not included.
    - ``segments``: the number of parts, ``len(parts)``; 0 for an empty text.
    - ``parts``: the text of each part; ``"".join(parts) == text``.
    - ``part_units``: the units of each part (for GSM-7, the payload septets of its TP-UDL).
    - ``ucs2_chars``: the distinct characters that forced UCS-2, in order of first appearance:
      those in no enabled GSM table; if every character is in some table but no one pair of tables
      holds them all, those outside the default alphabet. Empty for GSM-7.
    - ``replacements``: what smart encoding replaced, ``(original, replacement)``, distinct, in
      order of first appearance (a removed character has ``""`` as replacement).
    - ``shift_tables``: the national languages whose tables the message uses (locking first);
      ``locking_shift`` and ``single_shift`` say which kind of table: a *locking shift* table
      replaces the default alphabet, a *single shift* table replaces the extension table.
    - ``text``: the text that was analysed, after smart replacement.
    """

    encoding: Encoding
    units: int
    segments: int
    parts: tuple[str, ...]
    part_units: tuple[int, ...]
    text: str
    ucs2_chars: tuple[str, ...] = ()
    replacements: tuple[tuple[str, str], ...] = ()
    shift_tables: tuple[str, ...] = ()
    locking_shift: str | None = None
    single_shift: str | None = None

    @property
    def part_limit(self) -> int:
        """Units a part can hold with this encoding and these tables (single or concatenated)."""
        concatenated = self.segments > 1
        if self.encoding == UCS2:
            return PART_UNITS if concatenated else SINGLE_UNITS
        tables = (self.locking_shift is not None) + (self.single_shift is not None)
        return _septet_capacity(tables, concatenated=concatenated)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (lists, not tuples) for APIs and the CLI."""
        return {
            "encoding": self.encoding,
            "units": self.units,
            "segments": self.segments,
            "parts": list(self.parts),
            "part_units": list(self.part_units),
            "ucs2_chars": list(self.ucs2_chars),
            "replacements": [list(pair) for pair in self.replacements],
            "shift_tables": list(self.shift_tables),
            "locking_shift": self.locking_shift,
            "single_shift": self.single_shift,
            "text": self.text,
        }


# Built slot by slot (smsgate.slots says why): half the cost of the whole fast path otherwise.
_set_encoding = slot_setter(SegmentInfo, "encoding")
_set_units = slot_setter(SegmentInfo, "units")
_set_segments = slot_setter(SegmentInfo, "segments")
_set_parts = slot_setter(SegmentInfo, "parts")
_set_part_units = slot_setter(SegmentInfo, "part_units")
_set_text = slot_setter(SegmentInfo, "text")
_set_ucs2_chars = slot_setter(SegmentInfo, "ucs2_chars")
_set_replacements = slot_setter(SegmentInfo, "replacements")
_set_shift_tables = slot_setter(SegmentInfo, "shift_tables")
_set_locking_shift = slot_setter(SegmentInfo, "locking_shift")
_set_single_shift = slot_setter(SegmentInfo, "single_shift")
_new_object = object.__new__


def _new_info(
    encoding: Encoding,
    units: int,
    parts: tuple[str, ...],
    part_units: tuple[int, ...],
    text: str,
    ucs2_chars: tuple[str, ...],
    replacements: tuple[tuple[str, str], ...],
    alphabet: _Alphabet | None,
) -> SegmentInfo:
    info: SegmentInfo = _new_object(SegmentInfo)
    _set_encoding(info, encoding)
    _set_units(info, units)
    _set_segments(info, len(parts))
    _set_parts(info, parts)
    _set_part_units(info, part_units)
    _set_text(info, text)
    _set_ucs2_chars(info, ucs2_chars)
    _set_replacements(info, replacements)
    if alphabet is None:
        _set_shift_tables(info, ())
        _set_locking_shift(info, None)
        _set_single_shift(info, None)
    else:
        _set_shift_tables(info, alphabet.names)
        _set_locking_shift(info, alphabet.locking)
        _set_single_shift(info, alphabet.single)
    return info


# --- GSM-7 alphabets ---------------------------------------------------------------------------


class _Alphabet:
    """A locking table plus a single shift table (both default when no language is named)."""

    __slots__ = (
        "ascii_basic",
        "ascii_ext",
        "basic",
        "chars",
        "decode_basic",
        "decode_single",
        "encode_map",
        "ext",
        "lock_table",
        "locking",
        "n_tables",
        "names",
        "non_basic",
        "non_gsm",
        "not_ascii_ext",
        "part_limit",
        "single",
        "single_limit",
        "wide_ext",
    )

    def __init__(self, locking: str | None, single: str | None, cedilla: bool) -> None:
        self.locking = locking
        self.single = single
        self.names: tuple[str, ...] = tuple(dict.fromkeys(n for n in (locking, single) if n))
        self.n_tables = (locking is not None) + (single is not None)
        self.single_limit = _septet_capacity(self.n_tables, concatenated=False)
        self.part_limit = _septet_capacity(self.n_tables, concatenated=True)
        lock_table = _tables.DEFAULT_LOCKING if locking is None else _tables.LOCKING_TABLES[locking]
        single_table = _tables.DEFAULT_SINGLE if single is None else _tables.SINGLE_TABLES[single]
        self.lock_table = lock_table
        basic = {ch: code for code, ch in enumerate(lock_table) if code != _ESC}
        if cedilla:
            basic.setdefault("ç", lock_table.index("Ç"))
        # A character in both tables is sent from the locking table: one septet, not two.
        ext = {ch: code for code, ch in single_table.items() if ch not in basic}
        self.basic = frozenset(basic)
        self.ext = frozenset(ext)
        self.chars = self.basic | self.ext
        self.ascii_basic = bytes(sorted(ord(ch) for ch in basic if ord(ch) < 0x80))
        self.ascii_ext = bytes(sorted(ord(ch) for ch in ext if ord(ch) < 0x80))
        self.not_ascii_ext = bytes(b for b in range(256) if b not in self.ascii_ext)
        self.wide_ext = tuple(sorted(ch for ch in ext if ord(ch) >= 0x80))
        self.non_basic = re.compile(f"[^{_char_class(basic)}]")
        self.non_gsm = re.compile(f"[^{_char_class([*basic, *ext])}]")
        self.encode_map: dict[int, str] = {ord(ch): chr(code) for ch, code in basic.items()}
        self.encode_map.update({ord(ch): f"\x1b{chr(code)}" for ch, code in ext.items()})
        self.decode_basic: dict[int, str] = {
            code: ch for code, ch in enumerate(lock_table) if code != _ESC
        }
        self.decode_single: dict[int, str] = dict(single_table)

    def septets(self, text: str) -> int:
        """Septets needed for ``text``, or -1 when some character is not in this alphabet."""
        if text.isascii():
            rest = text.encode("ascii").translate(None, self.ascii_basic)
            if not rest:
                return len(text)
            if rest.translate(None, self.ascii_ext):
                return -1
            return len(text) + len(rest)
        match = self.non_basic.search(text)
        if match is None:
            return len(text)
        start = match.start()
        if self.non_gsm.search(text, start) is not None:
            return -1
        return self.cost(text)

    def cost(self, text: str) -> int:
        """Septets of a text already known to be in this alphabet."""
        # In UTF-8 an ASCII byte only ever stands for itself, so deleting every other byte counts
        # the ASCII escaped characters in one C call; the few others (€, ...) are counted apart.
        escaped = len(text.encode("utf-8").translate(None, self.not_ascii_ext))
        for ch in self.wide_ext:
            escaped += text.count(ch)
        return len(text) + escaped

    def split(self, text: str, units: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
        if not text:
            return (), ()
        if units <= self.single_limit:
            return (text,), (units,)
        limit = self.part_limit
        if units == len(text):
            parts = tuple([text[i : i + limit] for i in range(0, len(text), limit)])
            return parts, tuple(map(len, parts))
        return _split(text, limit, _slice_weigh(text, self.cost), clusters=False)

    def escape_to_char(self, token: str) -> str:
        """Decode an ESC token (ESC alone at the end, or ESC + one septet)."""
        if len(token) == 1:
            return ""
        code = ord(token[1])
        if code == _ESC:
            # TS 23.038 6.2.1.1: ESC ESC is reserved for a further table; show a space.
            return " "
        # A code the extension table lacks is shown as the default-table character (6.2.1.1).
        return self.decode_single.get(code) or self.lock_table[code]


_ALPHABETS: dict[tuple[str | None, str | None, bool], _Alphabet] = {}


def _alphabet(locking: str | None, single: str | None, cedilla: bool) -> _Alphabet:
    key = (locking, single, cedilla)
    alphabet = _ALPHABETS.get(key)
    if alphabet is None:
        alphabet = _ALPHABETS[key] = _Alphabet(locking, single, cedilla)
    return alphabet


class _Profile:
    """The alphabets a set of options allows: the default first, then every table combination."""

    __slots__ = ("alternatives", "default", "gsm_chars", "non_gsm")

    def __init__(self, tables: tuple[str, ...], cedilla: bool) -> None:
        self.default = _alphabet(None, None, cedilla)
        lockings = [None, *(t for t in tables if t in _tables.LOCKING_TABLES)]
        singles = [None, *tables]
        combos = [(lock, single) for lock in lockings for single in singles]
        self.alternatives = tuple(_alphabet(lock, single, cedilla) for lock, single in combos[1:])
        chars = set(self.default.chars)
        for alphabet in self.alternatives:
            chars |= alphabet.chars
        self.gsm_chars = frozenset(chars)
        self.non_gsm = re.compile(f"[^{_char_class(chars)}]")


_PROFILES: dict[tuple[tuple[str, ...], bool], _Profile] = {}


def _profile(shift_tables: Iterable[str] | str, cedilla: bool) -> _Profile:
    tables = _table_names(shift_tables)
    key = (tables, bool(cedilla))
    profile = _PROFILES.get(key)
    if profile is None:
        profile = _PROFILES[key] = _Profile(tables, bool(cedilla))
    return profile


def _unknown_table(name: object) -> InvalidMessage:
    return InvalidMessage(
        f"unknown shift table {name!r}; valid names are {', '.join(SHIFT_TABLES)}",
        field="shift_tables",
    )


def _table_names(shift_tables: Iterable[str] | str) -> tuple[str, ...]:
    """Validated, de-duplicated names in canonical order (so equal options share a profile)."""
    if isinstance(shift_tables, str):
        shift_tables = (shift_tables,)
    try:
        names = list(shift_tables)
    except TypeError:
        raise _unknown_table(shift_tables) from None
    found = set()
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else None
        if key not in _tables.LANGUAGE_IDS:
            raise _unknown_table(name)
        found.add(key)
    return tuple(name for name in SHIFT_TABLES if name in found)


def _named_alphabet(locking: str | None, single: str | None, cedilla: bool) -> _Alphabet:
    if locking is not None and locking not in _tables.LOCKING_TABLES:
        raise InvalidMessage(
            f"no locking shift table {locking!r}; valid names are "
            f"{', '.join(_tables.LOCKING_TABLES)} (Spanish has a single shift table only)",
            field="shift_tables",
        )
    if single is not None and single not in _tables.SINGLE_TABLES:
        raise _unknown_table(single)
    return _alphabet(locking, single, bool(cedilla))


_DEFAULT = _alphabet(None, None, False)
_DEFAULT_PROFILE = _profile((), False)


# --- segmentation ------------------------------------------------------------------------------

_MARK_CATEGORIES = frozenset({"Mn", "Mc", "Me"})  # variation selectors are Mn too
# Close to Unicode's Extended_Pictographic: what may follow a ZWJ inside an emoji sequence.
_PICTOGRAPHIC = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2190-\u2bff\u3030\u303d\u3297\u3299"
    "\U0001f000-\U0001faff\U0001fc00-\U0001fffd"
)
_PICTOGRAPHIC_RE = re.compile(f"[{_PICTOGRAPHIC}]")
_category = unicodedata.category


def _is_regional(code: int) -> bool:
    return 0x1F1E6 <= code <= 0x1F1FF


def _is_break(text: str, i: int) -> bool:
    """Whether a part may end before ``text[i]`` (a simplified UAX #29 grapheme rule)."""
    ch = text[i]
    code = ord(ch)
    if code < 0xA9:  # nothing this low continues a cluster, except LF after CR
        return not (code == 0x0A and text[i - 1] == "\r")
    category = _category(ch)
    if category in _MARK_CATEGORIES:
        return False
    if category == "Cf" and (code == 0x200D or 0xE0020 <= code <= 0xE007F):  # ZWJ, emoji tags
        return False
    if category == "Sk" and 0x1F3FB <= code <= 0x1F3FF:  # skin tone modifiers
        return False
    prev = ord(text[i - 1])
    if prev == 0x200D:
        return _PICTOGRAPHIC_RE.match(ch) is None
    if _is_regional(code) and _is_regional(prev):
        # Flags pair regional indicators from the left: break only after an even run.
        k = i - 1
        while k > 0 and _is_regional(ord(text[k - 1])):
            k -= 1
        return (i - k) % 2 == 0
    return True


_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"  # native, for memoryview
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) >> 1


# Below this many characters outside the BMP, their positions and a binary search price a part
# faster than re-encoding it; above, finding the positions (a match object each) costs more.
_FEW_ASTRAL = 16
Weigh = Callable[[int, int], int]


def _positions_weigh(doubles: list[int]) -> Weigh:
    """Price ``text[start:end]`` from the sorted positions of its two-unit characters."""

    def weigh(start: int, end: int) -> int:
        return end - start + bisect_left(doubles, end) - bisect_left(doubles, start)

    return weigh


def _slice_weigh(text: str, cost: Callable[[str], int]) -> Weigh:
    def weigh(start: int, end: int) -> int:
        return cost(text[start:end])

    return weigh


def _count_weigh(start: int, end: int) -> int:
    return end - start


def _split(
    text: str, limit: int, weigh: Weigh, *, clusters: bool
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Greedy split of ``text`` into parts of at most ``limit`` units.

    ``weigh(start, end)`` gives the units of ``text[start:end]``. Cutting at code points never
    splits a surrogate pair, and an escaped GSM character weighs two septets, so an ESC pair never
    straddles parts either. Each loop handles one part, not one character.
    """
    parts: list[str] = []
    sizes: list[int] = []
    n = len(text)
    start = 0
    while start < n:
        end = min(start + limit, n)
        size = weigh(start, end)
        while size > limit:
            # Every character costs 1 or 2 units, so dropping half the excess (rounded up) never
            # drops a character that fits; the loop settles on the longest prefix that fits.
            end -= (size - limit + 1) // 2
            size = weigh(start, end)
        # Below U+00A9 only LF (after CR) can continue a cluster, so most boundaries skip the call.
        if clusters and end < n and (text[end] >= "\xa9" or text[end] == "\n"):
            cut = end
            while cut > start and not _is_break(text, cut):
                cut -= 1
            if start < cut < end:
                end = cut
                size = weigh(start, end)
            # cut == start: the cluster is longer than a part, so it is split at a code point.
        parts.append(text[start:end])
        sizes.append(size)
        start = end
    return tuple(parts), tuple(sizes)


def _forcing_chars(text: str, profile: _Profile) -> tuple[str, ...]:
    pattern, allowed = profile.non_gsm, profile.gsm_chars
    match = pattern.search(text)
    if match is None:
        # Every character is in some enabled table, but no one pair of tables holds them all.
        pattern, allowed = profile.default.non_gsm, profile.default.chars
        match = pattern.search(text)
        if match is None:
            return ()
    start = match.start()
    # A sample tells a mostly-GSM text with a few odd characters (typical: one emoji) from a text
    # in another script; each gets the cheaper of two ways to list the distinct characters.
    if len(pattern.findall(text, start, start + 64)) < 16:
        return tuple(dict.fromkeys(pattern.findall(text, start)))
    # Mostly non-GSM text (Cyrillic, Greek, CJK): collecting distinct code points in one C pass
    # costs a fraction of a regex match object per character.
    codes = set(memoryview(text[start:].encode(_UTF32, "surrogatepass")).cast("I"))
    found = [ch for ch in map(chr, codes) if ch not in allowed]
    found.sort(key=lambda ch: text.index(ch, start))
    return tuple(found)


def _ucs2_info(
    text: str, profile: _Profile, replacements: tuple[tuple[str, str], ...]
) -> SegmentInfo:
    units = _utf16_units(text)
    if units <= SINGLE_UNITS:
        parts: tuple[str, ...] = (text,)
        sizes: tuple[int, ...] = (units,)
    else:
        astral = units - len(text)
        weigh: Weigh
        if astral == 0:
            weigh = _count_weigh
        elif astral <= _FEW_ASTRAL:
            weigh = _positions_weigh([m.start() for m in _ASTRAL.finditer(text)])
        else:
            weigh = _slice_weigh(text, _utf16_units)
        parts, sizes = _split(text, PART_UNITS, weigh, clusters=True)
    chars = _forcing_chars(text, profile)
    return _new_info(UCS2, units, parts, sizes, text, chars, replacements, None)


def _analyse(
    text: str, profile: _Profile, replacements: tuple[tuple[str, str], ...]
) -> SegmentInfo:
    default = profile.default
    units = default.septets(text)
    if units >= 0:
        parts, sizes = default.split(text, units)
        return _new_info(GSM7, units, parts, sizes, text, (), replacements, default)
    best: tuple[tuple[int, int, int], _Alphabet, tuple[str, ...], tuple[int, ...]] | None = None
    for alphabet in profile.alternatives:
        units = alphabet.septets(text)
        if units < 0:
            continue
        parts, sizes = alphabet.split(text, units)
        rank = (len(parts), alphabet.n_tables, units)
        if best is None or rank < best[0]:
            best = (rank, alphabet, parts, sizes)
    if best is not None:
        (_, _, units), alphabet, parts, sizes = best
        return _new_info(GSM7, units, parts, sizes, text, (), replacements, alphabet)
    return _ucs2_info(text, profile, replacements)


def segments(
    text: str,
    *,
    smart: bool = False,
    shift_tables: Iterable[str] = (),
    gsm_c_cedilla: bool = False,
) -> SegmentInfo:
    """Encoding, units and parts of an SMS body.

    ``smart=True`` replaces look-alike characters (curly quotes, dashes, unusual spaces, invisible
    characters; see :func:`smart_replace`) when that lets the text go as GSM-7 in no more parts.
    ``shift_tables`` enables national language tables (``"turkish"``, ``"spanish"``,
    ``"portuguese"``); they are used only when the default alphabet cannot carry the text, and
    then the combination with the fewest parts wins (ties: fewest tables, then fewest septets).
    ``gsm_c_cedilla=True`` sends lowercase ``ç`` as 0x09.

    Raises :class:`~smsgate.errors.InvalidMessage` (field ``body``) when ``text`` is not a string,
    and (field ``shift_tables``) for an unknown table name.
    """
    if not isinstance(text, str):
        raise _body_type_error(text)
    if smart or shift_tables or gsm_c_cedilla:
        return _segments_with_options(text, smart, shift_tables, gsm_c_cedilla)
    units = _DEFAULT.septets(text)
    if units < 0:
        return _ucs2_info(text, _DEFAULT_PROFILE, ())
    if 0 < units <= SINGLE_SEPTETS:
        return _new_info(GSM7, units, (text,), (units,), text, (), (), _DEFAULT)
    parts, sizes = _DEFAULT.split(text, units)
    return _new_info(GSM7, units, parts, sizes, text, (), (), _DEFAULT)


def encoding_and_segments(text: str) -> tuple[Encoding, int]:
    """``segments(text)``'s encoding and number of parts: what a send result records.

    A single GSM-7 part (most messages) is told from the septet count alone, without building
    the :class:`SegmentInfo` nobody reads; anything else is :func:`segments`' answer.
    """
    if text.__class__ is str:
        units = _DEFAULT.septets(text)
        if 0 < units <= SINGLE_SEPTETS:
            return GSM7, 1
    info = segments(text)
    return info.encoding, info.segments


def _segments_with_options(
    text: str, smart: bool, shift_tables: Iterable[str], cedilla: bool
) -> SegmentInfo:
    profile = _profile(shift_tables, cedilla)
    if smart:
        replaced, replacements = smart_replace(text)
        if replacements:
            candidate = _analyse(replaced, profile, replacements)
            if candidate.encoding == GSM7:
                original = _analyse(text, profile, ())
                # In UCS-2 a look-alike costs no more than its replacement ("…" is 1 unit, "..."
                # is 3), so replacing only pays when it brings the text into GSM-7, and only if
                # that does not add parts.
                if original.encoding == UCS2 and candidate.segments <= original.segments:
                    return candidate
                return original
    return _analyse(text, profile, ())


# --- smart encoding ----------------------------------------------------------------------------

#: look-alike characters and their GSM-7 replacement ("" removes the character)
SMART_REPLACEMENTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # double quotes
        "\u201c": '"',  # “
        "\u201d": '"',  # ”
        "\u201e": '"',  # „
        "\u201f": '"',  # ‟
        "\u2033": '"',  # ″ double prime
        "\u00ab": '"',  # «
        "\u00bb": '"',  # »
        "\u301d": '"',  # 〝
        "\u301e": '"',  # 〞
        "\uff02": '"',  # fullwidth quotation mark
        # single quotes and apostrophes
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark
        "\u201a": "'",  # single low-9 quotation mark
        "\u201b": "'",  # single high-reversed-9 quotation mark
        "\u2032": "'",  # prime
        "\u2039": "'",  # single left-pointing angle quotation mark
        "\u203a": "'",  # single right-pointing angle quotation mark
        "\u02bc": "'",  # modifier letter apostrophe
        "\uff07": "'",  # fullwidth apostrophe
        # dashes and minus
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2015": "-",  # horizontal bar
        "\u2212": "-",  # minus sign
        "\ufe58": "-",  # small em dash
        "\ufe63": "-",  # small hyphen-minus
        "\uff0d": "-",  # fullwidth hyphen-minus
        "\u2026": "...",  # ellipsis
        # spaces
        "\t": " ",
        "\u00a0": " ",  # no-break space
        "\u1680": " ",  # ogham space mark
        **{chr(code): " " for code in range(0x2000, 0x200B)},  # en quad ... hair space
        "\u202f": " ",  # narrow no-break space
        "\u205f": " ",  # medium mathematical space
        "\u3000": " ",  # ideographic space
        "\u2028": "\n",  # line separator
        "\u2029": "\n",  # paragraph separator
        # invisible characters
        "\u00ad": "",  # soft hyphen
        "\u200b": "",  # zero-width space
        "\u200c": "",  # zero-width non-joiner
        "\u200d": "",  # zero-width joiner, but not inside an emoji ZWJ sequence
        "\u2060": "",  # word joiner
        "\ufeff": "",  # zero-width no-break space (byte order mark)
    }
)

_SMART_RE = re.compile(f"[{_char_class(SMART_REPLACEMENTS)}]")
_SMART_TABLE = {ord(ch): rep for ch, rep in SMART_REPLACEMENTS.items() if ch != _ZWJ}
_EMOJI_BEFORE_ZWJ = f"{_PICTOGRAPHIC}\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
_LONE_ZWJ = re.compile(f"(?<![{_EMOJI_BEFORE_ZWJ}])\u200d|\u200d(?![{_PICTOGRAPHIC}])")


def smart_replace(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Replace look-alikes with GSM-7 characters (see :data:`SMART_REPLACEMENTS`).

    Returns the new text and the ``(original, replacement)`` pairs applied, distinct, in order of
    first appearance. A zero-width joiner between emoji (👩‍💻) is kept: it is part of the
    picture. This always replaces; :func:`segments` with ``smart=True`` decides whether the
    replaced text is worth sending.
    """
    if not isinstance(text, str):
        raise _body_type_error(text)
    if _SMART_RE.search(text) is None:
        return text, ()
    replaced = text.translate(_SMART_TABLE)
    applied: list[tuple[str, str]] = []
    for ch in dict.fromkeys(_SMART_RE.findall(text)):
        if ch == _ZWJ:
            stripped = _LONE_ZWJ.sub("", replaced)
            if len(stripped) == len(replaced):
                continue
            replaced = stripped
        applied.append((ch, SMART_REPLACEMENTS[ch]))
    return replaced, tuple(applied)


# --- bytes on the wire -------------------------------------------------------------------------

_ESCAPE_TOKEN = re.compile("(\x1b[\x00-\x7f]?)")


def gsm7_septets(
    text: str,
    *,
    locking_shift: str | None = None,
    single_shift: str | None = None,
    gsm_c_cedilla: bool = False,
) -> bytes:
    """Unpacked septet codes of ``text`` (one per byte, 0-127), ESC 0x1B before extension codes.

    ``locking_shift`` / ``single_shift`` name the national tables to encode with (as reported by
    :func:`segments`). Raises :class:`~smsgate.errors.InvalidMessage` when a character is not in
    the alphabet.
    """
    if not isinstance(text, str):
        raise _body_type_error(text)
    alphabet = _named_alphabet(locking_shift, single_shift, gsm_c_cedilla)
    bad = alphabet.non_gsm.search(text)
    if bad is not None:
        ch = bad.group()
        raise InvalidMessage(
            f"character {ch!r} (U+{ord(ch):04X}) at position {bad.start()} is not in the GSM-7 "
            "alphabet; send the text as UCS-2 or replace the character",
            field="body",
        )
    return text.translate(alphabet.encode_map).encode("latin-1")


def decode_gsm7(
    septets: bytes | bytearray | Iterable[int],
    *,
    locking_shift: str | None = None,
    single_shift: str | None = None,
) -> str:
    """Text of unpacked septet codes, the inverse of :func:`gsm7_septets`.

    ``ç`` sent as 0x09 under ``gsm_c_cedilla`` comes back as ``Ç``, as the table says.
    """
    data = bytes(septets)
    if data and max(data) > 0x7F:
        raise ValueError("septet codes must be 0-127")
    alphabet = _named_alphabet(locking_shift, single_shift, False)
    raw = data.decode("latin-1")
    if "\x1b" not in raw:
        return raw.translate(alphabet.decode_basic)
    pieces = _ESCAPE_TOKEN.split(raw)
    # split() with a capturing group alternates plain runs (even) and ESC tokens (odd).
    return "".join(
        alphabet.escape_to_char(piece) if i % 2 else piece.translate(alphabet.decode_basic)
        for i, piece in enumerate(pieces)
    )


def pack_septets(septets: bytes | bytearray | Iterable[int], *, fill_bits: int = 0) -> bytes:
    """Pack septets 7 bits each, least significant bit first (TS 23.038 6.1.2.1.1).

    ``fill_bits`` (0-6) zero bits come first, so the first septet starts on a septet boundary
    after a user data header (see :func:`encode_parts`).
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0-6")
    value = 0
    shift = fill_bits
    for septet in septets:
        if not 0 <= septet <= 0x7F:
            raise ValueError(f"septet {septet!r} is outside 0-127")
        value |= septet << shift
        shift += 7
    if shift == fill_bits:
        return b""
    return value.to_bytes((shift + 7) // 8, "little")


def unpack_septets(data: bytes | bytearray, count: int, *, fill_bits: int = 0) -> bytes:
    """The ``count`` septets packed in ``data`` after ``fill_bits`` fill bits, one per byte.

    ``count`` comes from the TP-UDL: the octet count alone cannot tell whether the last 7 bits
    hold a septet or padding.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0-6")
    if count < 0:
        raise ValueError("count must not be negative")
    if count == 0:
        return b""
    needed = (fill_bits + 7 * count + 7) // 8
    if len(data) < needed:
        raise ValueError(f"{count} septets need {needed} octets, got {len(data)}")
    value = int.from_bytes(bytes(data[:needed]), "little") >> fill_bits
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))


def encode_ucs2(text: str) -> bytes:
    """UTF-16BE, as networks carry "UCS-2" (a character outside the BMP is a surrogate pair)."""
    if not isinstance(text, str):
        raise _body_type_error(text)
    return text.encode("utf-16-be", "surrogatepass")


def decode_ucs2(data: bytes | bytearray) -> str:
    """Text of UTF-16BE user data, the inverse of :func:`encode_ucs2`."""
    return bytes(data).decode("utf-16-be", "surrogatepass")


def concat_udh(reference: int, total: int, sequence: int) -> bytes:
    """The 6-octet concatenation header with an 8-bit reference: ``05 00 03 ref total seq``."""
    return bytes([_CONCAT_IE_OCTETS]) + _concat_ie(reference, total, sequence)


def _concat_ie(reference: int, total: int, sequence: int) -> bytes:
    if not 0 <= reference <= 0xFF:
        raise ValueError("reference must be 0-255")
    if not 1 <= total <= 0xFF:
        raise ValueError("total must be 1-255")
    if not 1 <= sequence <= total:
        raise ValueError(f"sequence must be 1-{total}")
    return bytes([_IEI_CONCAT_8BIT, 3, reference, total, sequence])


def encode_parts(
    text: str,
    *,
    reference: int | None = None,
    smart: bool = False,
    shift_tables: Iterable[str] = (),
    gsm_c_cedilla: bool = False,
) -> list[bytes]:
    """The user data (TP-UD) of each part: header, if any, then the payload.

    A concatenated message starts each part with the concatenation element (``reference`` is
    0-255; None picks one at random, and messages to one recipient should not share one in
    flight); national language tables add their shift elements. GSM-7 septets are packed with
    the fill bits that put the first septet on a septet boundary after the header, so the TP-UDL
    of part *i* is ``ceil(8 * header_octets / 7) + segments(text).part_units[i]``. Empty text
    gives no parts.
    """
    info = segments(text, smart=smart, shift_tables=shift_tables, gsm_c_cedilla=gsm_c_cedilla)
    total = info.segments
    if total > 0xFF:
        raise InvalidMessage(
            f"body needs {total} parts; a concatenated message has at most 255", field="body"
        )
    shift_ies = b""
    if info.locking_shift is not None:
        shift_ies += bytes([_IEI_LOCKING_SHIFT, 1, _tables.LANGUAGE_IDS[info.locking_shift]])
    if info.single_shift is not None:
        shift_ies += bytes([_IEI_SINGLE_SHIFT, 1, _tables.LANGUAGE_IDS[info.single_shift]])
    ref = os.urandom(1)[0] if reference is None else reference
    out: list[bytes] = []
    for sequence, part in enumerate(info.parts, start=1):
        ies = shift_ies
        if total > 1:
            ies = _concat_ie(ref, total, sequence) + shift_ies
        header = bytes([len(ies)]) + ies if ies else b""
        if info.encoding == GSM7:
            septets = gsm7_septets(
                part,
                locking_shift=info.locking_shift,
                single_shift=info.single_shift,
                gsm_c_cedilla=gsm_c_cedilla,
            )
            fill = -len(header) * 8 % 7
            out.append(header + pack_septets(septets, fill_bits=fill))
        else:
            out.append(header + encode_ucs2(part))
    return out
