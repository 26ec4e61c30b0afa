"""``GET /_emulator/codes``: every HTTP emulator shows the last code texted to a number."""

from __future__ import annotations

import pytest
import requests

import smsgate
from smsgate.emulators.smsroute import SmsrouteEmulator
from smsgate.emulators.twilio import TwilioEmulator
from smsgate.emulators.vonage import VonageEmulator

TO = "+14155552671"


@pytest.mark.parametrize("emulator_class", [TwilioEmulator, SmsrouteEmulator, VonageEmulator])
def test_last_code_per_number(emulator_class: type) -> None:
    emulator = emulator_class()
    with emulator.run_in_thread():
        gateway = smsgate.Gateway.from_url(emulator.provider_url())
        gateway.send(TO, "Your code is 111111. It expires in 10 minutes.", purpose="otp")
        gateway.send(TO, "Your code is 222222.\n@example.com #222222", purpose="otp")
        gateway.send("+447400123456", "Your code is 333333.", purpose="otp")
        gateway.send(TO, "No code in this one, order 12 shipped", purpose="transactional")
        found = requests.get(emulator.url + "/_emulator/codes", params={"to": TO}, timeout=5)
        assert found.status_code == 200
        assert found.json()["code"] == "222222" and found.json()["to"].endswith("4155552671")
        other = requests.get(
            emulator.url + "/_emulator/codes", params={"to": "+44 7400 123456"}, timeout=5
        )
        assert other.json()["code"] == "333333"
        none = requests.get(
            emulator.url + "/_emulator/codes", params={"to": "+15550000"}, timeout=5
        )
        assert none.status_code == 404
        missing = requests.get(emulator.url + "/_emulator/codes", timeout=5)
        assert missing.status_code == 400 and "fix" in missing.json()
