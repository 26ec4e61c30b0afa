"""Test helpers for apps that send with smsgate (and the ``sms_outbox`` pytest fixture).

- :class:`SmsOutbox` captures every message any Gateway or outbox worker sends while installed
  (the ``sms_outbox`` fixture installs one per test); :meth:`SmsOutbox.assert_sent` checks them.
- :func:`post_receipt`, :func:`post_inbound` and :func:`post_stop` post correctly signed
  provider webhooks to your app's webhook endpoints through its test client.
"""

from __future__ import annotations

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
