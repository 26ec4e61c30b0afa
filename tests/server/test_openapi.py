"""schemathesis against /openapi.json with every check: no 5xx for any generated input, answers
match the schema, the schema states every rule the server enforces (no schema-valid request
refused, no schema-violating one accepted), a 405 lists every method of its path.

Bounded: a few dozen examples per operation, one server for the whole module, well under a
minute. Requests carry a valid key (so the endpoints behind auth are exercised); the
``ignored_auth`` check also sends them without one and expects 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from smsgate.config import Config
from smsgate.outbox import Outbox
from smsgate.outbox.tables.server import ServerStore
from smsgate.server.app import create_app
from smsgate.server.auth import create_key
from smsgate.server.runner import ServerThread
from smsgate.server.settings import ServerSettings

TWILIO = "twilio://AC00000000000000000000000000000000:emulator-auth-token@+15005550006"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path: Path = tmp_path_factory.mktemp("schema") / "smsgate.db"
    config = Config.from_dict(
        {
            "store": f"sqlite:///{path}",
            "providers": {"twilio": {"url": TWILIO}},
            "verify": {"secret": "schemathesis-" + "v" * 32},
        }
    )
    outbox = Outbox(config.store)
    key = create_key(ServerStore.of(outbox.store), "schemathesis").key

    def make(url: str) -> Any:
        return create_app(config, settings=ServerSettings(public_url=url), outbox=outbox)

    thread = ServerThread(make)
    yield thread.url, key
    thread.stop()
    outbox.close()


CHECKS = [
    checks.positive_data_acceptance,
    checks.unsupported_method,
    checks.missing_required_header,
    checks.use_after_free,
    checks.ensure_resource_availability,
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.ignored_auth,
]


def test_no_server_errors_and_answers_match_the_schema(served: tuple[str, str]) -> None:
    url, key = served
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: dict[str, BaseException] = {}
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        try:
            _explore(operation, url, key, calls)
        except BaseException as exc:  # gather every operation's failure (an ExceptionGroup too)
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}: {exc}" for label, exc in failures.items())
    assert sum(calls.values()) >= 10 * len(operations), calls


def _explore(operation: Any, url: str, key: str, calls: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        calls[operation.label] = calls.get(operation.label, 0) + 1
        case.call_and_validate(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
        )

    check()
