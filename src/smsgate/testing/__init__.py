"""Test helpers for apps that send with smsgate (and the ``sms_outbox`` pytest fixture).

- :class:`SmsOutbox` captures every message any Gateway or outbox worker sends while installed
  (the ``sms_outbox`` fixture installs one per test); :meth:`SmsOutbox.assert_sent` checks them.
- :func:`post_receipt`, :func:`post_inbound` and :func:`post_stop` post correctly signed
  provider webhooks to your app's webhook endpoints through its test client.

Names are imported on first use: the pytest plugin (:mod:`smsgate.testing.plugin`) loads this
package in every pytest run, which must stay as fast as without smsgate.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Captured": "smsgate.testing.outbox",
    "SmsOutbox": "smsgate.testing.outbox",
    "SignedRequest": "smsgate.testing.webhooks",
    "WebhookSigner": "smsgate.testing.webhooks",
    "post_inbound": "smsgate.testing.webhooks",
    "post_receipt": "smsgate.testing.webhooks",
    "post_stop": "smsgate.testing.webhooks",
    "post_webhook": "smsgate.testing.webhooks",
    "telnyx_keys": "smsgate.testing.webhooks",
}

__all__ = [
    "Captured",
    "SignedRequest",
    "SmsOutbox",
    "WebhookSigner",
    "post_inbound",
    "post_receipt",
    "post_stop",
    "post_webhook",
    "telnyx_keys",
]

if TYPE_CHECKING:
    from smsgate.testing.outbox import Captured, SmsOutbox
    from smsgate.testing.webhooks import (
        SignedRequest,
        WebhookSigner,
        post_inbound,
        post_receipt,
        post_stop,
        post_webhook,
        telnyx_keys,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smsgate.testing' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
