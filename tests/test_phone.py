"""Phone numbers: what people type in, E.164 out, or an error that names the rule that failed."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smsgate
from smsgate.errors import InvalidRecipient
from smsgate.phone import fast_e164, parse

PNF = phonenumbers.PhoneNumberFormat

# (what a person types, the default region or None, the E.164 we expect)
FORMS: list[tuple[str, str | None, str]] = [
    # United States
    ("(415) 555-2671", "US", "+14155552671"),
    ("415.555.2671", "US", "+14155552671"),
    ("415-555-2671", "US", "+14155552671"),
    ("1 415 555 2671", "US", "+14155552671"),
    ("+1 (415) 555-2671", None, "+14155552671"),
    ("+1.415.555.2671", None, "+14155552671"),
    ("001 415 555 2671", None, "+14155552671"),
    ("001 415 555 2671", "GB", "+14155552671"),
    ("011 44 20 7946 0958", "US", "+442079460958"),  # the US international prefix
    # United Kingdom
    ("020 7946 0958", "GB", "+442079460958"),
    ("(020) 7946-0958", "GB", "+442079460958"),
    ("07400 123456", "GB", "+447400123456"),
    ("+44 7400 123456", None, "+447400123456"),
    ("+44 (0)7400 123456", None, "+447400123456"),
    ("0044 7400 123456", None, "+447400123456"),
    ("0044 7400 123456", "GB", "+447400123456"),
    ("+44.20.7946.0958", None, "+442079460958"),
    # Germany
    ("030 123456", "DE", "+4930123456"),
    ("0151 23456789", "DE", "+4915123456789"),
    ("0151-234 567 89", "DE", "+4915123456789"),
    ("+49 151 23456789", None, "+4915123456789"),
    ("+49 (0)151 23456789", None, "+4915123456789"),
    ("0049 30 123456", None, "+4930123456"),
    ("0049 30 123456", "DE", "+4930123456"),
    # France
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("06.12.34.56.78", "FR", "+33612345678"),
    ("06-12-34-56-78", "FR", "+33612345678"),
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("+33 (0)6 12 34 56 78", None, "+33612345678"),
    ("0033 6 12 34 56 78", None, "+33612345678"),
    # India
    ("098765 43210", "IN", "+919876543210"),
    ("98765-43210", "IN", "+919876543210"),
    ("+91 98765 43210", None, "+919876543210"),
    ("0091 98765 43210", None, "+919876543210"),
    # Brazil
    ("(11) 91234-5678", "BR", "+5511912345678"),
    ("11 91234 5678", "BR", "+5511912345678"),
    ("+55 11 91234-5678", None, "+5511912345678"),
    ("+55 (11) 91234-5678", None, "+5511912345678"),
    ("0055 11 91234 5678", None, "+5511912345678"),
    # Estonia (seed 002 sends to +37256789045)
    ("+37256789045", None, "+37256789045"),
    ("+372 5678 9045", None, "+37256789045"),
    ("5678 9045", "EE", "+37256789045"),
    ("5678-9045", "EE", "+37256789045"),
    ("00372 5678 9045", None, "+37256789045"),
    ("612 3456", "EE", "+3726123456"),
    # whitespace around, lower-case region
    ("  +1 415 555 2671\n", None, "+14155552671"),
    ("415 555 2671", "us", "+14155552671"),
]


@pytest.mark.parametrize(("text", "region", "expected"), FORMS)
def test_national_and_international_forms(text: str, region: str | None, expected: str) -> None:
    assert smsgate.normalize(text, region) == expected
    # A valid number is also possible: the lenient mode gives the same answer.
    assert smsgate.normalize(text, region, strict=False) == expected


def test_every_country_in_the_brief_is_covered() -> None:
    covered = {
        phonenumbers.region_code_for_number(phonenumbers.parse(e164)) for _, _, e164 in FORMS
    }
    assert {"US", "GB", "DE", "FR", "IN", "BR", "EE"} <= covered


@pytest.mark.parametrize(
    "text",
    [
        "+15555550100",
        "+1 555 555 0199",
        "(555) 555-0123",
        "+447700900123",
        "+44 7700 900 999",
        "07700 900000",
    ],
)
def test_fictional_test_ranges_need_strict_false(text: str) -> None:
    region = None if text.startswith("+") else ("US" if text.startswith("(") else "GB")
    with pytest.raises(InvalidRecipient) as info:
        smsgate.normalize(text, region)
    assert "not a valid number for" in str(info.value)
    assert "strict=False" in str(info.value)  # the error says how to accept test ranges
    e164 = smsgate.normalize(text, region, strict=False)
    assert e164 == "+" + "".join(ch for ch in e164 if ch.isdigit())
    assert e164.startswith(("+1555", "+447700900"))


@pytest.mark.parametrize(
    ("text", "region", "reason"),
    [
        ("+999 1234567", None, "unknown country code"),
        ("+0 123 4567", None, "unknown country code"),
        ("+1 415 555", None, "too short"),
        ("+372 5123", None, "too short"),
        ("911", "US", "too short"),
        ("+1 415 555 26711234", None, "too long"),
        ("+44 20 7946 0958 1234567", None, "too long"),
        ("+55 11 91234-56789", None, "too long"),
        ("+33 6 12 34 56 78 9", None, "too long"),
        ("+49 1234", None, "not a valid number for DE"),
        ("+372 1234 5678", None, "not a valid number for EE"),
        ("+91 98765 432101", None, "not a valid number for IN"),
        ("call me", None, "letters"),
        ("1-800-FLOWERS", "US", "letters"),
        ("+44 7400 12345a", None, "letters"),
        ("+1 415 555 2671 ext 5", None, "letters"),
        ("4155552671", None, "no country code"),
        ("020 7946 0958", None, "no country code"),
        ("", None, "empty"),
        ("   ", None, "empty"),
    ],
)
def test_invalid_input_names_the_rule(text: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidRecipient) as info:
        smsgate.normalize(text, region)
    error = info.value
    assert reason in str(error)
    assert error.field == "to"
    assert not error.retryable and not error.failover
    if text.strip():
        assert repr(text) in str(error)  # the input is quoted back


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("+999 1234567", "unknown country code"),
        ("+1 415 555", "too short"),
        ("+1 415 555 26711234", "too long"),
        ("call me", "letters"),
        ("4155552671", "no country code"),
    ],
)
def test_lenient_mode_still_refuses_impossible_numbers(text: str, reason: str) -> None:
    with pytest.raises(InvalidRecipient, match=reason):
        smsgate.normalize(text, strict=False)


def test_no_country_code_error_suggests_a_region() -> None:
    with pytest.raises(InvalidRecipient) as info:
        smsgate.normalize("4155552671")
    assert "region=" in str(info.value) and "+" in str(info.value)


def test_unknown_region_is_refused_naming_the_region() -> None:
    with pytest.raises(InvalidRecipient) as info:
        smsgate.normalize("415 555 2671", "XX")
    assert info.value.field == "region"
    assert "'XX'" in str(info.value)


@pytest.mark.parametrize("value", [4155552671, None, b"+14155552671"])
def test_non_text_is_refused(value: object) -> None:
    with pytest.raises(InvalidRecipient, match="must be a string"):
        smsgate.normalize(value)  # type: ignore[arg-type]


def test_field_name_is_configurable_for_other_inputs() -> None:
    from smsgate.phone import normalize

    with pytest.raises(InvalidRecipient) as info:
        normalize("nope", field="sender")
    assert info.value.field == "sender"
    assert str(info.value).startswith("sender ")


def test_a_region_does_not_override_an_explicit_country_code() -> None:
    assert smsgate.normalize("+44 20 7946 0958", "US") == "+442079460958"
    assert smsgate.normalize("+372 5678 9045", "DE") == "+37256789045"


# -- every region libphonenumber knows: its own example numbers in each written form ----------


def _examples() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append((region, number))
    return found


EXAMPLES = _examples()


def test_example_numbers_of_every_region_round_trip() -> None:
    assert len(EXAMPLES) > 400
    failures = []
    for region, number in EXAMPLES:
        e164 = phonenumbers.format_number(number, PNF.E164)
        forms = [
            (phonenumbers.format_number(number, PNF.NATIONAL), region),
            (phonenumbers.format_number(number, PNF.INTERNATIONAL), None),
            ("00" + e164[1:], None),
            (e164, None),
        ]
        for text, default in forms:
            try:
                got = smsgate.normalize(text, default)
            except InvalidRecipient as exc:
                failures.append(f"{region} {text!r}: {exc}")
                continue
            if got != e164:
                failures.append(f"{region} {text!r}: {got} != {e164}")
    assert failures == []


@settings(max_examples=300, deadline=None)
@given(
    example=st.sampled_from(EXAMPLES),
    separators=st.lists(st.sampled_from(["", "", " ", "-", ".", "  "]), min_size=20, max_size=20),
    prefix=st.sampled_from(["+", "00", "+ "]),
    parens=st.booleans(),
)
def test_separators_anywhere_do_not_change_the_number(
    example: tuple[str, phonenumbers.PhoneNumber], separators: list[str], prefix: str, parens: bool
) -> None:
    _, number = example
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    digits = e164[1:]
    country = str(number.country_code)
    national = digits[len(country) :]
    if parens and len(national) > 3:
        national = f"({national[:2]}){national[2:]}"
    written = (
        prefix
        + country
        + " "
        + "".join(ch + separators[i % len(separators)] for i, ch in enumerate(national))
    )
    assert smsgate.normalize(written) == e164


# -- lookup ----------------------------------------------------------------------------------


def test_lookup_mobile_with_carrier_and_time_zone() -> None:
    info = smsgate.lookup("+49 151 23456789")
    assert info.e164 == "+4915123456789"
    assert info.type == "mobile"
    assert info.region == "DE"
    assert info.country_code == 49
    assert info.national_number == "15123456789"
    assert info.carrier == "T-Mobile"
    assert info.time_zones == ("Europe/Berlin",)
    assert info.valid and info.possible


def test_lookup_fixed_line_with_location() -> None:
    info = smsgate.lookup("020 7946 0958", "GB")
    assert info.e164 == "+442079460958"
    assert info.type == "fixed_line"
    assert info.region == "GB"
    assert info.carrier is None  # carriers are known for mobiles only
    assert info.time_zones == ("Europe/London",)
    assert info.location == "London"


def test_lookup_toll_free() -> None:
    info = smsgate.lookup("+1 800 234 5678")
    assert info.type == "toll_free"
    assert info.region == "US"
    assert "America/New_York" in info.time_zones and "America/Los_Angeles" in info.time_zones


def test_lookup_gb_and_ee_mobiles_name_their_carriers() -> None:
    gb = smsgate.lookup("+447400123456")
    assert (gb.type, gb.region, gb.carrier) == ("mobile", "GB", "Three")
    assert "Europe/London" in gb.time_zones
    ee = smsgate.lookup("+37256789045")
    assert (ee.type, ee.region) == ("mobile", "EE")
    assert ee.carrier


def test_lookup_of_a_fictional_number_is_possible_but_not_valid() -> None:
    info = smsgate.lookup("+15555550100")
    assert info.possible and not info.valid
    assert info.region == "US"  # from the country code; the 555 range has no region of its own
    assert info.type == "unknown"
    assert info.time_zones == ()
    assert info.carrier is None


def test_lookup_refuses_what_normalize_refuses() -> None:
    with pytest.raises(InvalidRecipient, match="unknown country code"):
        smsgate.lookup("+999 1234567")
    with pytest.raises(InvalidRecipient, match="no country code"):
        smsgate.lookup("4155552671")


def test_lookup_to_dict_is_json_safe() -> None:
    import json

    data = smsgate.lookup("+4915123456789").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["time_zones"] == ["Europe/Berlin"]
    assert {"e164", "region", "type", "valid", "carrier", "time_zones"} <= set(data)


# -- the E.164 fast path ------------------------------------------------------------------


def _libphonenumber_e164(text: str) -> str | None:
    """The exact, slow answer: libphonenumber's parse and possibility check, no fast path."""
    try:
        number = parse(text, strict=False)
    except InvalidRecipient:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789", min_size=3, max_size=16))
def test_the_fast_path_never_disagrees_with_libphonenumber(digits: str) -> None:
    text = "+" + digits
    fast = fast_e164(text)
    if fast is not None:
        assert fast == _libphonenumber_e164(text) == text


def test_the_fast_path_takes_common_numbers_and_leaves_the_rest() -> None:
    assert fast_e164("+15555550100") == "+15555550100"
    assert fast_e164("+447700900123") == "+447700900123"
    assert fast_e164("+390612345678") == _libphonenumber_e164("+390612345678")
    for undecided in ("+1555", "+4407700900123", "15555550100", "+1 555 555 0100", "+999123456"):
        assert fast_e164(undecided) is None
