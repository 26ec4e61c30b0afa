"""Local servers that speak each provider's wire contract (``smsgate emulate NAME``)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: name -> "module:Class"
EMULATORS: dict[str, str] = {
    "twilio": "smsgate.emulators.twilio:TwilioEmulator",
    "smspm": "smsgate.emulators.smspm:SmspmEmulator",
    "smsroute": "smsgate.emulators.smsroute:SmsrouteEmulator",
    "vonage": "smsgate.emulators.vonage:VonageEmulator",
    "plivo": "smsgate.emulators.plivo:PlivoEmulator",
    "telnyx": "smsgate.emulators.telnyx:TelnyxEmulator",
    "smtp": "smsgate.emulators.smtp:SmtpEmulator",
    "infobip": "smsgate.emulators.infobip:InfobipEmulator",
    "sinch": "smsgate.emulators.sinch:SinchEmulator",
    "clickatell": "smsgate.emulators.clickatell:ClickatellEmulator",
    "aws": "smsgate.emulators.aws:AwsEmulator",
    "smpp": "smsgate.emulators.smpp:SmppEmulator",
}


def emulator_class(name: str) -> Any:
    target = EMULATORS.get(name)
    if target is None:
        raise KeyError(name)
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)
