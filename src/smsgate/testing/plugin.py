"""The pytest plugin (entry point ``smsgate``): the ``sms_outbox`` fixture.

Registered for every pytest run in an environment where smsgate is installed, so it imports
nothing at load time and changes nothing until a test asks for ``sms_outbox``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from smsgate.testing.outbox import SmsOutbox


@pytest.fixture
def sms_outbox() -> Iterator[SmsOutbox]:
    """Every message any smsgate Gateway or outbox worker sends during the test, captured
    instead of sent (see :class:`smsgate.testing.SmsOutbox`)."""
    from smsgate.testing.outbox import SmsOutbox

    outbox = SmsOutbox()
    outbox.install()
    try:
        yield outbox
    finally:
        outbox.uninstall()
