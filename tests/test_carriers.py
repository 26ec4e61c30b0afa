"""The carrier registry as data: what it says, how it is checked, and ``smsgate carriers``."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from smsgate.carriers import (
    Carrier,
    CarrierDeprecatedWarning,
    CarrierRegistry,
    CarrierStatus,
    Contacts,
    NumberFormat,
    check_usable,
    is_gateway_domain,
    registry,
)
from smsgate.errors import ConfigError, InvalidMessage, UnsupportedFeature

DATA = Path(__file__).resolve().parents[1] / "src" / "smsgate" / "data" / "carriers.json"

#: The seeds' ten carriers and their status per shared/providers.md (2025-26).
SEEDS = {
    "att": ("txt.att.net", "mms.att.net", CarrierStatus.DEAD),
    "tmobile": ("tmomail.net", "tmomail.net", CarrierStatus.DEAD),
    "verizon": ("vtext.com", "vzwpix.com", CarrierStatus.DEPRECATED),
    "sprint": ("messaging.sprintpcs.com", "pm.sprint.com", CarrierStatus.DEAD),
    "googlefi": ("msg.fi.google.com", "msg.fi.google.com", CarrierStatus.ACTIVE),
    "uscellular": ("email.uscc.net", "mms.uscc.net", CarrierStatus.UNKNOWN),
    "boost": ("sms.myboostmobile.com", "myboostmobile.com", CarrierStatus.UNKNOWN),
    "cricket": ("sms.cricketwireless.net", "mms.cricketwireless.net", CarrierStatus.DEAD),
    "metropcs": ("mymetropcs.com", "mymetropcs.com", CarrierStatus.UNKNOWN),
    "virgin": ("vmobl.com", "vmpix.com", CarrierStatus.DEAD),
}
BEFORE_SUNSET = date(2026, 11, 1)


def test_the_seeds_ten_carriers_with_their_status() -> None:
    carriers = registry()
    for key, (sms, mms, status) in SEEDS.items():
        carrier = carriers.require(key)
        assert (carrier.sms_domain, carrier.mms_domain) == (sms, mms), key
        assert carrier.status_on(BEFORE_SUNSET) is status, key
        assert carrier.country == "US" and carrier.number_format is NumberFormat.NATIONAL


def test_international_gateways_are_listed_with_sources() -> None:
    countries = {c.country for c in registry()}
    assert {"CA", "DE", "NZ", "ZA", "PL"} <= countries
    assert len(registry()) >= 30


def test_every_entry_is_complete_and_sourced() -> None:
    for carrier in registry():
        assert carrier.source.startswith(("https://", "http://")), carrier.key
        assert carrier.note and carrier.name, carrier.key
        assert is_gateway_domain(carrier.sms_domain), carrier.key
        assert carrier.mms_domain is None or is_gateway_domain(carrier.mms_domain), carrier.key
        assert carrier.country in phonenumbers.SUPPORTED_REGIONS
        if carrier.last_verified is not None:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", carrier.last_verified)
            assert date.fromisoformat(carrier.last_verified) <= date(2026, 11, 22)
        if carrier.status is CarrierStatus.DEAD:
            # What happened and when: the refusal quotes the note.
            assert carrier.since and re.search(r"\d{4}", carrier.note), carrier.key
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    assert [c["key"] for c in raw["carriers"]] == [c.key for c in registry()]


def test_the_att_refusal_says_what_happened_and_when() -> None:
    with pytest.raises(UnsupportedFeature) as info:
        check_usable(registry().require("att"), force=False, today=BEFORE_SUNSET)
    assert str(info.value).startswith(
        "AT&T closed its email-to-text gateway on 2025-06-17; use an API provider"
    )
    assert info.value.code == "carrier_dead" and info.value.failover


def test_dead_gateways_are_refused_unless_forced() -> None:
    for carrier in registry():
        if carrier.status_on(BEFORE_SUNSET) is not CarrierStatus.DEAD:
            continue
        with pytest.raises(UnsupportedFeature):
            check_usable(carrier, force=False, today=BEFORE_SUNSET)
        with pytest.warns(CarrierDeprecatedWarning):
            check_usable(carrier, force=True, today=BEFORE_SUNSET)


def test_deprecated_warns_and_logs_unknown_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smsgate.carriers")
    with pytest.warns(CarrierDeprecatedWarning, match="2027-03-31"):
        check_usable(registry().require("verizon"), force=False, today=BEFORE_SUNSET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_usable(registry().require("boost"), force=False, today=BEFORE_SUNSET)
        check_usable(registry().require("googlefi"), force=False, today=BEFORE_SUNSET)
    assert "deprecated" in caplog.text and "boost gateway status is unknown" in caplog.text


def test_verizon_counts_as_dead_from_its_sunset() -> None:
    verizon = registry().require("verizon")
    assert verizon.status_on(date(2027, 3, 30)) is CarrierStatus.DEPRECATED
    assert verizon.status_on(date(2027, 3, 31)) is CarrierStatus.DEAD
    with pytest.raises(UnsupportedFeature, match="2027-03-31"):
        check_usable(verizon, force=False, today=date(2027, 3, 31))


def test_lookup_by_key_alias_and_domain() -> None:
    carriers = registry()
    assert carriers.require("T-Mobile").key == "tmobile"
    assert carriers.require("AT&T").key == "att"
    assert carriers.require("fi").key == "googlefi"
    assert "VERIZON" in carriers and "nope" not in carriers
    assert [c.key for c in carriers.by_domain("msg.telus.com")] == ["telus_ca", "koodo_ca"]
    assert [c.key for c in carriers.by_domain("vzwpix.com")] == ["verizon"]
    with pytest.raises(InvalidMessage, match="did you mean 'sprint'"):
        carriers.require("sprnt")


@pytest.mark.parametrize(
    ("key", "number", "address"),
    [
        ("googlefi", "+15555550100", "5555550100@msg.fi.google.com"),
        ("bell_ca", "+14165550123", "4165550123@txt.bell.ca"),
        ("claro_pr", "+17872345678", "7872345678@vtexto.com"),
        ("vodafone_de", "+4915123456789", "4915123456789@vodafone-sms.de"),
        ("plus_pl", "+48601234567", "+48601234567@text.plusgsm.pl"),
    ],
)
def test_addresses_by_number_format(key: str, number: str, address: str) -> None:
    carrier = registry().require(key)
    assert carrier.address(number) == address
    assert carrier.serves(number)


def test_a_gateway_serves_only_its_countrys_numbers() -> None:
    assert registry().require("verizon").serves("+17872345678")  # PR shares +1 with the US
    assert not registry().require("verizon").serves("+447700900123")
    assert not registry().require("vodafone_de").serves("+15555550100")


def test_mms_address_and_carriers_without_mms() -> None:
    assert (
        registry().require("verizon").address("+15555550100", mms=True) == "5555550100@vzwpix.com"
    )
    with pytest.raises(UnsupportedFeature, match="no email-to-MMS gateway"):
        registry().require("cspire").address("+15555550100", mms=True)


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))["carriers"][0]
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"sms_domain": "txt.att.net\r\nBcc: x"}, "expected printable text"),
        ({"mms_domain": "mms.att.net bcc"}, "not a lowercase DNS name"),
        ({"sms_domain": "TXT.ATT.NET"}, "not a lowercase DNS name"),
        ({"status": "gone"}, "'gone' is not a valid CarrierStatus"),
        ({"country": "XX"}, "not an ISO 3166 region"),
        ({"last_verified": "June 2025"}, "YYYY-MM-DD"),
        ({"sunset": "2027-03"}, "full date"),
        ({"number_format": "weird"}, "NumberFormat"),
        ({"note": ""}, "printable text"),
        ({"key": "Has Space"}, "lowercase"),
        ({"aliases": ["ok", 3]}, "aliases"),
    ],
)
def test_bad_registry_data_is_refused_with_the_field_named(
    changes: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        CarrierRegistry.from_data({"carriers": [_entry(**changes)]}, origin="test.json")
    assert words in info.value.message and "test.json: carriers[0]" in info.value.message


def test_duplicate_keys_and_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        CarrierRegistry.from_data({"carriers": [_entry(), _entry()]})
    with pytest.raises(ConfigError, match="used by both"):
        CarrierRegistry.from_data({"carriers": [_entry(), _entry(key="other", aliases=["att"])]})
    path = tmp_path / "carriers.json"
    path.write_text(json.dumps({"carriers": [_entry(key="mine", aliases=[])]}))
    assert [c.key for c in CarrierRegistry.load(path)] == ["mine"]
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        CarrierRegistry.load(path)


def test_a_carrier_is_plain_data() -> None:
    carrier = Carrier(
        key="x",
        name="X",
        country="US",
        sms_domain="sms.x.example",
        mms_domain=None,
        status=CarrierStatus.ACTIVE,
        last_verified=None,
        source="https://x.example",
        note="n",
    )
    assert carrier.to_dict()["status"] == "active"
    assert json.loads(json.dumps(carrier.to_dict()))["mms_domain"] is None


# -- contacts --------------------------------------------------------------------------------


def test_contacts_from_seed_000s_shape() -> None:
    contacts = Contacts.from_data({"me": {"carrier": "verizon", "number": "1234567890"}})
    assert contacts.number("me") == "+11234567890"
    contact = contacts.by_number("+11234567890")
    assert contact is not None and contact.carrier.key == "verizon"
    with pytest.raises(ConfigError, match="no contact named 'you'"):
        contacts.number("you")


def test_contacts_toml_with_a_contacts_table(tmp_path: Path) -> None:
    path = tmp_path / "people.toml"
    path.write_text('[contacts.ana]\nnumber = "+4915123456789"\ncarrier = "vodafone_de"\n')
    contacts = Contacts.load(path)
    assert [c.name for c in contacts] == ["ana"] and len(contacts) == 1
    assert contacts.number("ana") == "+4915123456789"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"me": {"number": "1234567890"}}, "missing carrier"),
        ({"me": {"number": "1234567890", "carrier": "nope"}}, "not in the registry"),
        ({"me": {"number": "12", "carrier": "verizon"}}, "too short"),
        ({"me": {"number": "555\r\nBcc: x", "carrier": "verizon"}}, "not a phone number"),
        ({"me\r\nBcc": {"number": "5555550100", "carrier": "verizon"}}, "printable"),
        (["me"], "expected a table"),
    ],
)
def test_bad_contacts_are_refused_at_load(data: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Contacts.from_data(data, origin="contacts.json")
    assert words in info.value.message


def test_unreadable_contacts_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Contacts.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.toml"
    bad.write_text("[me\n")
    with pytest.raises(ConfigError, match="does not parse"):
        Contacts.load(bad)


# -- the command -----------------------------------------------------------------------------


def _smsgate() -> list[str]:
    beside = Path(sys.executable).with_name("smsgate")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("smsgate")
    assert found, "the smsgate console script is not installed (pip install -e .)"
    return [found]


def test_smsgate_carriers_json() -> None:
    out = subprocess.run(
        [*_smsgate(), "carriers", "--json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["count"] == len(registry())
    att = next(c for c in data["carriers"] if c["key"] == "att")
    assert att["status"] == "dead" and att["source"].startswith("https://")
    assert att["note"] == "AT&T closed its email-to-text gateway on 2025-06-17"


def test_smsgate_carriers_table_and_filters() -> None:
    out = subprocess.run(
        [*_smsgate(), "carriers", "--country", "us", "--status", "dead"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "250", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    for key in ("att", "tmobile", "sprint", "cricket", "virgin"):
        assert re.search(rf"^{key}\s", out.stdout, re.M), key
    assert "googlefi" not in out.stdout and "bell_ca" not in out.stdout
    bad = subprocess.run(
        [*_smsgate(), "carriers", "--status", "gone"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--status 'gone'" in bad.stderr
