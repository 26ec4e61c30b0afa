"""The list requests reconcile makes, checked against the providers' own declarations.

``specs/list_lookups.json`` keeps, for Sinch, Plivo and Infobip, the query parameters their
official SDKs declare for the list endpoint reconcile reads (sources and commits in the file and
in ``specs/README.md``), with their bounds. A lookup over several pages against each emulator
must ask with those parameters only, within those bounds, and with dates in the declared form.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from smsgate.emulators.base import Emulator
from smsgate.emulators.infobip import InfobipEmulator
from smsgate.emulators.plivo import PlivoEmulator
from smsgate.emulators.sinch import SinchEmulator
from smsgate.message import Message
from tests.providers.reconcile_contract import OTHER, TO, reconcile, send

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parent / "specs" / "list_lookups.json").read_text(encoding="utf-8")
)
#: how each provider writes the dates of its list filters
DATE_FORMATS = {
    "sinch": "%Y-%m-%dT%H:%M:%S%z",
    "plivo": "%Y-%m-%d %H:%M:%S",
    "infobip": "%Y-%m-%dT%H:%M:%S.%f%z",  # yyyy-MM-dd'T'HH:mm:ss.SSSZ
}


def within(value: str, bounds: dict[str, int], name: str) -> None:
    if "maxLength" in bounds:
        assert len(value) <= bounds["maxLength"], f"{name} is longer than {bounds['maxLength']}"
        return
    number = int(value)
    assert bounds.get("minimum", number) <= number <= bounds.get("maximum", number), (
        f"{name}={value} is outside {bounds}"
    )


@pytest.mark.parametrize("emulator_cls", [SinchEmulator, PlivoEmulator, InfobipEmulator])
def test_reconcile_lists_with_declared_parameters_only(emulator_cls: type[Emulator]) -> None:
    emulator = emulator_cls()
    emulator.max_page_size = 2
    declared = SPEC[emulator.name]
    with emulator.run_in_thread():
        url = emulator.provider_url()
        message = Message(to=TO, body="never sent")
        since = time.time()
        send(url, [Message(id=message.id, to=OTHER, body="x") for _ in range(3)])
        for sent in emulator.messages:  # distinct milliseconds, for Infobip's paging by time
            sent.created_at -= 0.01 * emulator.messages.index(sent)
        assert reconcile(url, message, since, reconcile_page_size=2) is None
    assert len(emulator.list_queries) >= 2
    for query in emulator.list_queries:
        assert set(query) <= set(declared["query"]), set(query) - set(declared["query"])
        for name, value in query.items():
            if isinstance(declared.get(name), dict):
                within(value, declared[name], name)
            if isinstance(declared.get(name), list):
                assert value in declared[name], f"{name}={value!r}"
            if name in declared["dates"]:
                datetime.strptime(value.replace("Z", "+0000"), DATE_FORMATS[emulator.name])
