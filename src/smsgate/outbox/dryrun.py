"""``smsgate bulk --dry-run``: what a CSV would send and cost, with nothing stored.

Each row is rendered and validated as ``smsgate bulk`` would (the same template, region,
sender, purpose and send time), then counted: encodings and segments per message and in total,
a breakdown per destination country, and an estimated cost from the config's ``[pricing]`` table
(the price of one segment through the provider the message's route would try first). Nothing is
written: no store is opened, no rejects file is created.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smsgate.errors import ConfigError, InvalidMessage, SmsgateError
from smsgate.message import Message, Purpose

if TYPE_CHECKING:
    from smsgate.config import Config
    from smsgate.outbox.bulk import BulkOptions
    from smsgate.routing import Router


@dataclass(slots=True)
class CountryTotals:
    """Messages, segments and estimated cost to one destination country."""

    messages: int = 0
    segments: int = 0
    cost: float = 0.0
    #: messages no price applies to (no [pricing] for their provider and prefix)
    unpriced: int = 0


@dataclass(slots=True)
class DryRunReport:
    """What a bulk file would send. ``cost`` covers the priced messages only."""

    total: int = 0
    accepted: int = 0
    refused: int = 0
    segments: int = 0
    cost: float = 0.0
    unpriced: int = 0
    currency: str = "USD"
    encodings: Counter[str] = field(default_factory=Counter)
    encoding_segments: Counter[str] = field(default_factory=Counter)
    #: how many messages need 1, 2, 3, ... segments
    per_message: Counter[int] = field(default_factory=Counter)
    countries: dict[str, CountryTotals] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "total": self.total,
            "accepted": self.accepted,
            "refused": self.refused,
            "segments": self.segments,
            "encodings": {
                name: {"messages": count, "segments": self.encoding_segments[name]}
                for name, count in sorted(self.encodings.items())
            },
            "segments_per_message": {str(k): v for k, v in sorted(self.per_message.items())},
            "countries": {
                region: {
                    "messages": totals.messages,
                    "segments": totals.segments,
                    "cost": round(totals.cost, 6),
                    "unpriced": totals.unpriced,
                }
                for region, totals in sorted(
                    self.countries.items(), key=lambda item: -item[1].messages
                )
            },
            "cost": round(self.cost, 6),
            "unpriced": self.unpriced,
            "currency": self.currency,
            "reasons": dict(self.reasons.most_common()),
        }


def estimate_csv(options: BulkOptions, config: Config) -> DryRunReport:
    """Count what ``options`` would submit, pricing it with ``config``'s ``[pricing]``."""
    from smsgate.outbox.bulk import _reason
    from smsgate.phone import normalize, region_of

    pricing = config.file.pricing if config.file is not None else None
    router = config.router() if config.routes else None
    report = DryRunReport(currency=pricing.currency if pricing else "USD")
    header = options.header
    to_index = header.index(options.to_column)
    fixed: dict[str, Any] = {"purpose": Purpose(options.purpose)}
    if options.sender is not None:
        fixed["sender"] = options.sender
    if options.send_at is not None:
        fixed["send_at"] = options.send_at
    with open(options.path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader)
        try:
            for values in reader:
                if not values or values == [""]:
                    continue
                report.total += 1
                if len(values) != len(header):
                    report.refused += 1
                    report.reasons[
                        f"csv: the line has {len(values)} fields, the header {len(header)}"
                    ] += 1
                    continue
                try:
                    to = values[to_index].strip()
                    if options.region is not None:
                        to = normalize(to, options.region, strict=False, field="to")
                    body = options.body.format_map(dict(zip(header, values, strict=True)))
                    message = Message(to=to, body=body, **fixed)
                except SmsgateError as exc:
                    report.refused += 1
                    # worded as the real run's rejects summary words it
                    report.reasons[_reason(exc.field, exc.message)] += 1
                    continue
                _count(report, message, region_of(message.to) or "unknown", pricing, router)
        except csv.Error as exc:
            raise InvalidMessage(
                f"{options.path} line {reader.line_num}: {exc}", field="file"
            ) from None
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"{options.path} is not UTF-8: {exc}", field="file") from None
    return report


def _count(
    report: DryRunReport, message: Message, region: str, pricing: Any, router: Router | None
) -> None:
    info = message.segments()
    report.accepted += 1
    report.segments += info.segments
    report.encodings[info.encoding] += 1
    report.encoding_segments[info.encoding] += info.segments
    report.per_message[info.segments] += 1
    totals = report.countries.setdefault(region, CountryTotals())
    totals.messages += 1
    totals.segments += info.segments
    price = None
    if pricing is not None and router is not None:
        try:
            provider = router.route_for(message).providers[0]
        except ConfigError:
            provider = None
        if provider is not None:
            price = pricing.price(provider, message.to)
    if price is None:
        totals.unpriced += 1
        report.unpriced += 1
    else:
        cost = price * info.segments
        totals.cost += cost
        report.cost += cost
