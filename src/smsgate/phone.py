"""E.164 at the edge: parse, normalize and describe phone numbers with libphonenumber.

``normalize`` is the one door every number goes through. It accepts what people type (spaces,
dashes, dots, parentheses, ``+`` or ``00`` international prefixes, national numbers with a region)
and either returns E.164 or raises :class:`~smsgate.errors.InvalidRecipient` naming the rule that
failed. ``strict=False`` asks only for a *possible* number so fictional test ranges
(+1 555 01xx, +44 7700 900xxx) pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from smsgate.errors import InvalidRecipient

if TYPE_CHECKING:
    import phonenumbers

_ALLOWED = re.compile(r"^[\s\d+().\-/]*$")
_E164 = re.compile(r"\+[1-9][0-9]{3,15}")
_FIELD = "to"


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """What libphonenumber knows offline about a number."""

    e164: str
    region: str | None
    country_code: int
    national_number: str
    type: str
    valid: bool
    possible: bool
    carrier: str | None
    time_zones: tuple[str, ...]
    location: str | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe values."""
        return {
            "e164": self.e164,
            "region": self.region,
            "country_code": self.country_code,
            "national_number": self.national_number,
            "type": self.type,
            "valid": self.valid,
            "possible": self.possible,
            "carrier": self.carrier,
            "time_zones": list(self.time_zones),
            "location": self.location,
        }


def _fail(text: str, reason: str, fix: str, field: str) -> InvalidRecipient:
    return InvalidRecipient(f"{field} {text!r}: {reason}; {fix}", field=field, code=None)


def parse(
    text: str, region: str | None = None, *, strict: bool = True, field: str = _FIELD
) -> phonenumbers.PhoneNumber:
    """Parse ``text`` into a libphonenumber ``PhoneNumber`` or raise ``InvalidRecipient``."""
    import phonenumbers
    from phonenumbers import NumberParseException

    if not isinstance(text, str):
        raise InvalidRecipient(f"{field} must be a string, got {type(text).__name__}", field=field)
    raw = text.strip()
    if not raw:
        raise _fail(text, "empty", "give a number in E.164 form such as +15555550100", field)
    if not _ALLOWED.match(raw):
        raise _fail(
            text,
            "not a phone number (letters or symbols)",
            "use digits, with + and the country code",
            field,
        )
    region = region.upper() if region else None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidRecipient(
            f"region {region!r} is not a known ISO 3166 region code", field="region"
        )
    compact = re.sub(r"[\s().\-/]", "", raw)
    if compact.startswith("00") and (region is None or not _is_idd(compact, region)):
        compact = "+" + compact[2:]
    if not compact.startswith("+") and region is None:
        raise _fail(
            text,
            "no country code",
            "start with + and the country code (E.164), or give a default region such as region='US'",
            field,
        )
    try:
        number = phonenumbers.parse(compact, region)
    except NumberParseException as exc:
        reasons = {
            NumberParseException.INVALID_COUNTRY_CODE: (
                "unknown country code",
                "check the digits after +",
            ),
            NumberParseException.NOT_A_NUMBER: (
                "not a phone number",
                "use digits, with + and the country code",
            ),
            NumberParseException.TOO_SHORT_AFTER_IDD: (
                "too short after the international prefix",
                "check the digits",
            ),
            NumberParseException.TOO_SHORT_NSN: ("too short", "check for missing digits"),
            NumberParseException.TOO_LONG: ("too long", "check for extra digits"),
        }
        reason, fix = reasons.get(
            exc.error_type, ("not a phone number", "use E.164 such as +15555550100")
        )
        raise _fail(text, reason, fix, field) from None
    _check_possible(number, text, field)
    if strict and not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise _fail(
            text,
            f"not a valid number for {where}",
            "check the digits, or pass strict=False to accept any possible number (test ranges)",
            field,
        )
    return number


def _is_idd(compact: str, region: str) -> bool:
    import phonenumbers

    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.international_prefix if metadata else None
    if not prefix or not compact.startswith("00"):
        return False
    return re.match(prefix, compact) is not None


def _check_possible(number: phonenumbers.PhoneNumber, text: str, field: str) -> None:
    import phonenumbers
    from phonenumbers import ValidationResult

    if phonenumbers.region_code_for_country_code(number.country_code or 0) == "ZZ":
        raise _fail(
            text, f"unknown country code +{number.country_code}", "check the digits after +", field
        )
    result = phonenumbers.is_possible_number_with_reason(number)
    if result in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        if result == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
            raise _fail(
                text, "too short (a local number without its area code)", "add the area code", field
            )
        return
    messages = {
        ValidationResult.INVALID_COUNTRY_CODE: ("unknown country code", "check the digits after +"),
        ValidationResult.TOO_SHORT: ("too short", "check for missing digits"),
        ValidationResult.TOO_LONG: ("too long", "check for extra digits"),
        ValidationResult.INVALID_LENGTH: ("wrong length for that country", "check the digits"),
    }
    reason, fix = messages.get(result, ("not a possible number", "check the digits"))
    raise _fail(text, reason, fix, field)


def fast_e164(text: str) -> str | None:
    """``text`` when it is already an E.164 number of a possible length, else None.

    None means "not decided here", never "invalid": :func:`normalize` then asks libphonenumber,
    which gives the precise error. This keeps the common case (already E.164) at a regex and a
    table look-up, which matters when a million recipients are submitted.
    """
    if not _E164.fullmatch(text):
        return None
    for size in (2, 3, 4):
        rule = _country(text[1:size])
        if rule is not None:
            prefix, lengths = rule
            national = text[size:]
            if len(national) not in lengths or (prefix is not None and prefix.match(national)):
                return None
            return text
    return None


@lru_cache(maxsize=1024)
def _country(code: str) -> tuple[re.Pattern[str] | None, frozenset[int]] | None:
    """For a country calling code: the national-prefix pattern (where libphonenumber would strip
    a prefix we let it decide) and the possible lengths of national numbers; None when ``code``
    is no country calling code."""
    import phonenumbers
    from phonenumbers import PhoneMetadata

    region = phonenumbers.region_code_for_country_code(int(code))
    if region == "ZZ":
        return None
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(int(code), region)
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    # libphonenumber's is_possible_number (type UNKNOWN) compares the length of the national
    # significant number with the general description's possible lengths; local-only lengths are
    # disjoint from those and rejected by smsgate.phone.
    general = metadata.general_desc
    if general is None:
        return None
    lengths = frozenset(general.possible_length)
    return (re.compile(prefix) if prefix else None), lengths


@lru_cache(maxsize=1)
def e164_pattern() -> str:
    """A regular expression (JSON Schema and Python alike) for exactly the strings
    :func:`fast_e164` accepts: ``+``, a country calling code, then a national number of a
    possible length for it that does not start with its national prefix.

    The HTTP API states its recipients with it, so its schema says which numbers it takes; every
    string it matches :func:`normalize` returns unchanged.
    """
    import phonenumbers

    alternatives = []
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        rule = _country(str(code))
        if rule is None:
            continue
        prefix, lengths = rule
        digits = len(str(code))
        # fast_e164 takes 4-16 digits in all
        sizes = sorted(n for n in lengths if 4 <= digits + n <= 16)
        if not sizes:
            continue
        counts = "|".join(f"[0-9]{{{n}}}" for n in sizes)
        guard = f"(?!{prefix.pattern})" if prefix is not None else ""
        alternatives.append(f"{code}{guard}(?:{counts})")
    return r"^\+(?:" + "|".join(alternatives) + r")$"


@lru_cache(maxsize=65536)
def _normalize_cached(text: str, region: str | None, strict: bool, field: str) -> str:
    import phonenumbers

    number = parse(text, region, strict=strict, field=field)
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize(
    text: str, region: str | None = None, *, strict: bool = True, field: str = _FIELD
) -> str:
    """Return ``text`` as E.164 (``+15555550100``) or raise :class:`InvalidRecipient`.

    ``region`` is the ISO 3166 code used for national numbers (``"US"``, ``"GB"``). With
    ``strict=True`` the number must be valid in libphonenumber's metadata; with ``strict=False`` it
    need only be possible (right length for its country), which admits fictional test ranges.
    """
    if not isinstance(text, str):
        raise InvalidRecipient(f"{field} must be a string, got {type(text).__name__}", field=field)
    if not strict and (e164 := fast_e164(text)) is not None:
        return e164
    return _normalize_cached(text, region.upper() if region else None, strict, field)


def lookup(text: str, region: str | None = None) -> NumberInfo:
    """Describe a number from libphonenumber's offline data (type, region, carrier, time zones)."""
    import phonenumbers
    from phonenumbers import carrier, geocoder, timezone

    number = parse(text, region, strict=False)
    type_names = {
        phonenumbers.PhoneNumberType.MOBILE: "mobile",
        phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
        phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free",
        phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium_rate",
        phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
        phonenumbers.PhoneNumberType.VOIP: "voip",
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER: "personal_number",
        phonenumbers.PhoneNumberType.PAGER: "pager",
        phonenumbers.PhoneNumberType.UAN: "uan",
        phonenumbers.PhoneNumberType.VOICEMAIL: "voicemail",
    }
    zones = tuple(z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    return NumberInfo(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=_region(number),
        country_code=number.country_code or 0,
        national_number=str(number.national_number),
        type=type_names.get(phonenumbers.number_type(number), "unknown"),
        valid=phonenumbers.is_valid_number(number),
        possible=phonenumbers.is_possible_number(number),
        carrier=carrier.name_for_number(number, "en") or None,
        time_zones=zones,
        location=geocoder.description_for_number(number, "en") or None,
    )


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 number (for email-to-SMS local parts)."""
    return str(parse(e164, strict=False).national_number)


def region_of(e164: str) -> str | None:
    """The ISO region of an E.164 number, or None when the country code has no single region."""
    return _region(parse(e164, strict=False))


def _region(number: phonenumbers.PhoneNumber) -> str | None:
    # A fictional number (+1 555 01xx) has no region of its own; fall back to its country code's.
    import phonenumbers

    region = phonenumbers.region_code_for_number(
        number
    ) or phonenumbers.region_code_for_country_code(number.country_code or 0)
    return None if region in (None, "ZZ", "001") else str(region)
