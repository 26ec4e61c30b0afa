"""Fixtures of the framework integration tests: emulators on loopback, a Django project, stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smsgate.emulators.base import Callbacks, EmulatorThread
from smsgate.emulators.twilio import TwilioEmulator


@pytest.fixture
def twilio() -> Iterator[EmulatorThread]:
    """A Twilio emulator on loopback that sends no delivery callbacks of its own."""
    emulator = TwilioEmulator(callbacks=Callbacks(delay=3600))
    with emulator.run_in_thread() as thread:
        yield thread


def emulator_of(thread: EmulatorThread) -> Any:
    return thread.emulator


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sms.db'}"


@pytest.fixture(scope="session")
def django_project() -> Iterator[None]:
    """The project in tests/integrations/djangoproject, set up as Django's test runner does
    (``setup_test_environment``, a test database)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.djangoproject.settings")
    import django
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    django.setup()
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    yield
    teardown_databases(old, verbosity=0)
    teardown_test_environment()
