"""Carrier email-to-SMS gateways as data, and the contacts that say which carrier a number is on.

The registry (``data/carriers.json``) keeps, for each gateway, its domains, how the number is
written before the ``@``, a ``status`` (active, deprecated, dead, unknown), the date of the newest
source that confirms it and the source itself. Most of the gateways the seed tutorials list are
gone: a dead one is refused with what happened and when, unless the caller forces it; a deprecated
one warns. ``smsgate carriers`` prints the table.

>>> carrier = registry().require("googlefi")
>>> carrier.address("+15555550100")
'5555550100@msg.fi.google.com'
"""

from __future__ import annotations

import enum
import json
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from smsgate.errors import ConfigError, InvalidMessage, UnsupportedFeature

logger = logging.getLogger("smsgate.carriers")

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_&.-]*$")
_DAY = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


class CarrierStatus(enum.StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    DEAD = "dead"
    UNKNOWN = "unknown"


class NumberFormat(enum.StrEnum):
    """What goes before the ``@``."""

    #: national significant digits: ``5555550100`` for +1 555 555 0100
    NATIONAL = "national"
    #: country code and national digits without ``+``: ``4917612345678``
    INTERNATIONAL = "international"
    #: E.164 with its ``+``: ``+48601234567``
    E164 = "e164"


class CarrierDeprecatedWarning(UserWarning):
    """A message went through a gateway its carrier has deprecated or that is known to be dead."""


def is_gateway_domain(domain: str) -> bool:
    """A plain lowercase DNS name: what may follow the ``@`` of a gateway address."""
    return isinstance(domain, str) and _DOMAIN.match(domain) is not None


@dataclass(frozen=True, slots=True)
class Carrier:
    key: str
    name: str
    #: ISO 3166 region whose numbers this gateway serves (US gateways take any +1 number)
    country: str
    sms_domain: str
    mms_domain: str | None
    status: CarrierStatus
    #: date of the newest dated source confirming ``status`` (YYYY-MM-DD), if any
    last_verified: str | None
    source: str
    #: what happened and when, in one sentence
    note: str
    number_format: NumberFormat = NumberFormat.NATIONAL
    #: when the status began (YYYY-MM or YYYY-MM-DD), for dead gateways
    since: str | None = None
    #: an announced shutdown date; past it the gateway counts as dead
    sunset: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    # -- status -------------------------------------------------------------------------------

    def status_on(self, day: date) -> CarrierStatus:
        if self.sunset and day >= date.fromisoformat(self.sunset):
            return CarrierStatus.DEAD
        return self.status

    def refusal(self) -> str:
        """Why a dead gateway is refused: the note plus what to do."""
        return f"{self.note}; use an API provider (or force=true to try anyway)"

    # -- addressing ---------------------------------------------------------------------------

    def serves(self, e164: str) -> bool:
        """Whether the number's country code is the one this gateway's country uses."""
        return split_number(e164)[0] == _country_code(self.country)

    def local_part(self, e164: str) -> str:
        country_code, national = split_number(e164)
        if self.number_format is NumberFormat.NATIONAL:
            return national
        if self.number_format is NumberFormat.INTERNATIONAL:
            return f"{country_code}{national}"
        return f"+{country_code}{national}"

    def domain(self, *, mms: bool = False) -> str | None:
        """The gateway domain for a text, or for media (None: this carrier takes no MMS)."""
        return self.mms_domain if mms else self.sms_domain

    def address(self, e164: str, *, mms: bool = False) -> str:
        domain = self.domain(mms=mms)
        if domain is None:
            raise UnsupportedFeature(
                f"{self.name} has no email-to-MMS gateway; drop the media or use an API provider",
                field="media",
            )
        return f"{self.local_part(e164)}@{domain}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "country": self.country,
            "sms_domain": self.sms_domain,
            "mms_domain": self.mms_domain,
            "number_format": self.number_format.value,
            "status": self.status.value,
            "since": self.since,
            "sunset": self.sunset,
            "last_verified": self.last_verified,
            "source": self.source,
            "note": self.note,
            "aliases": list(self.aliases),
        }


@lru_cache(maxsize=4096)
def split_number(e164: str) -> tuple[int, str]:
    """(country code, national significant digits) of a number; cached, it runs per send."""
    import phonenumbers

    from smsgate.phone import parse

    number = parse(e164, strict=False)
    # national_significant_number keeps leading zeros (Italy) that national_number drops.
    return int(number.country_code or 0), phonenumbers.national_significant_number(number)


@lru_cache(maxsize=256)
def _country_code(region: str) -> int:
    import phonenumbers

    return int(phonenumbers.country_code_for_region(region))


def check_usable(
    carrier: Carrier, *, force: bool, today: date, provider: str | None = None
) -> None:
    """Refuse a dead gateway (unless forced) and warn about a deprecated one.

    A dead gateway raises :class:`UnsupportedFeature`: the recipient is fine and an API provider
    later in the chain can still reach them, so the gateway fails over without counting against
    the SMTP server's circuit breaker.
    """
    status = carrier.status_on(today)
    if status is CarrierStatus.DEAD:
        if not force:
            raise UnsupportedFeature(
                carrier.refusal(), provider=provider, code="carrier_dead", field="carrier"
            )
        _warn(f"sending through a dead gateway because force is set: {carrier.note}")
    elif status is CarrierStatus.DEPRECATED:
        _warn(carrier.note)
    elif status is CarrierStatus.UNKNOWN:
        logger.info("%s gateway status is unknown: %s", carrier.key, carrier.note)


def _warn(text: str) -> None:
    logger.warning("%s", text)
    warnings.warn(text, CarrierDeprecatedWarning, stacklevel=3)


class CarrierRegistry:
    """Carriers by key (case-insensitive, with aliases) and by gateway domain."""

    def __init__(self, carriers: Iterable[Carrier]) -> None:
        self._carriers: dict[str, Carrier] = {}
        self._names: dict[str, Carrier] = {}
        self._domains: dict[str, list[Carrier]] = {}
        for carrier in carriers:
            if carrier.key in self._carriers:
                raise ConfigError(f"carrier {carrier.key!r} is listed twice", field="carriers")
            self._carriers[carrier.key] = carrier
            for name in (carrier.key, *carrier.aliases):
                other = self._names.setdefault(name.lower(), carrier)
                if other is not carrier:
                    raise ConfigError(
                        f"carrier name {name!r} is used by both {other.key} and {carrier.key}",
                        field="carriers",
                    )
            for domain in {carrier.sms_domain, carrier.mms_domain} - {None}:
                assert domain is not None
                self._domains.setdefault(domain, []).append(carrier)

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], *, origin: str = "carriers.json"
    ) -> CarrierRegistry:
        items = data.get("carriers")
        if not isinstance(items, list):
            raise ConfigError(f"{origin}: expected a 'carriers' list", field="carriers")
        return cls(_carrier_from(item, f"{origin}: carriers[{i}]") for i, item in enumerate(items))

    @classmethod
    def load(cls, path: str | Path | None = None) -> CarrierRegistry:
        """The packaged registry, or one read from ``path`` (same JSON shape)."""
        if path is None:
            from importlib.resources import files

            text = files("smsgate").joinpath("data/carriers.json").read_text(encoding="utf-8")
            origin = "smsgate/data/carriers.json"
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read carrier registry {path}: {exc.strerror}", field="carriers"
                ) from None
            origin = str(path)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{origin} is not valid JSON: {exc}", field="carriers") from None
        return cls.from_data(data, origin=origin)

    def __iter__(self) -> Iterator[Carrier]:
        return iter(self._carriers.values())

    def __len__(self) -> int:
        return len(self._carriers)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._names

    def get(self, key: str) -> Carrier | None:
        return self._names.get(key.lower()) if isinstance(key, str) else None

    def require(self, key: str, *, field: str = "carrier") -> Carrier:
        """The carrier for ``key``, or :class:`InvalidMessage` listing the known keys."""
        carrier = self.get(key)
        if carrier is None:
            import difflib

            close = difflib.get_close_matches(str(key).lower(), list(self._names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidMessage(
                f"carrier {key!r} is not in the registry; {hint}known: {', '.join(self._carriers)} "
                "(run `smsgate carriers`)",
                field=field,
            )
        return carrier

    def by_domain(self, domain: str) -> list[Carrier]:
        """Carriers whose SMS or MMS gateway is ``domain`` (brands may share one)."""
        return list(self._domains.get(domain.lower(), ()))


def _carrier_from(item: Any, where: str) -> Carrier:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected an object", field="carriers")

    def text(name: str, *, optional: bool = False) -> str | None:
        value = item.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or not value.isprintable():
            raise ConfigError(
                f"{where}.{name}: expected printable text, got {value!r}", field="carriers"
            )
        return value

    key = text("key")
    assert key is not None
    if not _KEY.match(key):
        raise ConfigError(
            f"{where}.key {key!r}: use lowercase letters, digits and _", field="carriers"
        )
    domains = {"sms_domain": text("sms_domain"), "mms_domain": text("mms_domain", optional=True)}
    for name, domain in domains.items():
        if domain is not None and not is_gateway_domain(domain):
            raise ConfigError(
                f"{where}.{name} {domain!r} is not a lowercase DNS name", field="carriers"
            )
    days = {name: text(name, optional=True) for name in ("last_verified", "since", "sunset")}
    for name, day in days.items():
        if day is not None and not _DAY.match(day):
            raise ConfigError(
                f"{where}.{name} {day!r}: expected YYYY-MM-DD or YYYY-MM", field="carriers"
            )
    sunset = days["sunset"]
    if sunset is not None and len(sunset) != 10:
        raise ConfigError(f"{where}.sunset {sunset!r}: expected a full date", field="carriers")
    country = text("country")
    assert country is not None
    import phonenumbers

    if country not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"{where}.country {country!r} is not an ISO 3166 region", field="carriers"
        )
    try:
        status = CarrierStatus(str(item.get("status")))
        number_format = NumberFormat(item.get("number_format", "national"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}", field="carriers") from None
    aliases = item.get("aliases") or []
    if not isinstance(aliases, list) or not all(
        isinstance(a, str) and _KEY.match(a) for a in aliases
    ):
        raise ConfigError(f"{where}.aliases: expected a list of lowercase keys", field="carriers")
    sms_domain = domains["sms_domain"]
    display = text("name")
    source = text("source")
    note = text("note")
    assert (
        sms_domain is not None and display is not None and source is not None and note is not None
    )
    return Carrier(
        key=key,
        name=display,
        country=country,
        sms_domain=sms_domain,
        mms_domain=domains["mms_domain"],
        status=status,
        last_verified=days["last_verified"],
        source=source,
        note=note,
        number_format=number_format,
        since=days["since"],
        sunset=days["sunset"],
        aliases=tuple(aliases),
    )


@lru_cache(maxsize=1)
def registry() -> CarrierRegistry:
    """The packaged carrier registry (read once)."""
    return CarrierRegistry.load()


def today_utc(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, UTC).date()


# -- contacts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    number: str
    carrier: Carrier


class Contacts:
    """Names to numbers and carriers, as seed 000 keeps them, read from a TOML or JSON file.

    ``{"me": {"number": "1234567890", "carrier": "verizon"}}`` (JSON), or in TOML a table per
    name, at the top level or under ``[contacts]``. A number without ``+`` is read in the
    carrier's country. Messages are addressed by number; :meth:`number` turns a name into one.
    """

    def __init__(self, contacts: Iterable[Contact]) -> None:
        self._by_name: dict[str, Contact] = {}
        self._by_number: dict[str, Contact] = {}
        for contact in contacts:
            self._by_name[contact.name] = contact
            self._by_number[contact.number] = contact

    @classmethod
    def load(cls, path: str | Path, carriers: CarrierRegistry | None = None) -> Contacts:
        carriers = carriers or registry()
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read contacts file {path}: {exc.strerror}", field="contacts"
            ) from None
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                data: Any = tomllib.loads(raw.decode("utf-8"))
            else:
                data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"contacts file {path} does not parse: {exc}", field="contacts"
            ) from None
        return cls.from_data(data, carriers, origin=str(path))

    @classmethod
    def from_data(
        cls, data: Any, carriers: CarrierRegistry | None = None, *, origin: str = "contacts"
    ) -> Contacts:
        from smsgate.errors import InvalidRecipient
        from smsgate.phone import normalize

        carriers = carriers or registry()
        if isinstance(data, Mapping) and isinstance(data.get("contacts"), Mapping):
            data = data["contacts"]
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{origin}: expected a table of name -> {{number, carrier}}", field="contacts"
            )
        contacts = []
        for name, entry in data.items():
            where = f"{origin}: {name!r}"
            if not isinstance(name, str) or not name or not name.isprintable():
                raise ConfigError(
                    f"{where}: a contact name must be printable text", field="contacts"
                )
            if not isinstance(entry, Mapping) or not isinstance(entry.get("number"), str | int):
                raise ConfigError(
                    f"{where}: expected {{number = ..., carrier = ...}}", field="contacts"
                )
            carrier_key = entry.get("carrier")
            if not isinstance(carrier_key, str):
                raise ConfigError(
                    f"{where}: missing carrier (run `smsgate carriers` for the keys)",
                    field="contacts",
                )
            try:
                carrier = carriers.require(carrier_key)
                number = normalize(str(entry["number"]), carrier.country, strict=False)
            except (InvalidMessage, InvalidRecipient) as exc:
                raise ConfigError(f"{where}: {exc.message}", field="contacts") from None
            contacts.append(Contact(name=name, number=number, carrier=carrier))
        return cls(contacts)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Contact]:
        return iter(self._by_name.values())

    def number(self, name: str) -> str:
        contact = self._by_name.get(name)
        if contact is None:
            raise ConfigError(
                f"no contact named {name!r}; known: {', '.join(self._by_name)}", field="contacts"
            )
        return contact.number

    def by_number(self, e164: str) -> Contact | None:
        return self._by_number.get(e164)
