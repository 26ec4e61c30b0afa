from __future__ import annotations

from smsgate.emulators.twilio import TwilioEmulator
from tests.providers.contract import ProviderContract


class TestTwilioContract(ProviderContract):
    emulator_cls = TwilioEmulator
    wrong_credentials = "AC00000000000000000000000000000000:not-the-token"
