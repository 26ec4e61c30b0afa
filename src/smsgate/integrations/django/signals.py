"""Signals, as django-anymail names its own.

- ``pre_send(sender=SMSMessage, sms, backend)``: before a message is handed to the backend; a
  receiver may change ``sms`` or raise :class:`CancelSend` to drop it (``send`` then returns a
  result with status ``canceled``).
- ``post_send(sender=SMSMessage, sms, message, result, backend)``: after the backend took it (for
  the outbox backend: once the transaction committed and the message is stored).
- ``status_changed(sender=provider name, event)``: a verified delivery receipt
  (:class:`smsgate.DeliveryEvent`); a provider's retry of one already recorded is not sent again
  when the outbox records receipts.
- ``inbound_received(sender=provider name, message)``: a verified inbound text
  (:class:`smsgate.InboundMessage`).
- ``opted_out(sender=provider name, recipient, our_number, source, text)``: a person replied
  STOP (``source`` ``keyword``) or the provider reported them unsubscribed (``provider``).
"""

from __future__ import annotations

from django.dispatch import Signal

pre_send = Signal()
post_send = Signal()
status_changed = Signal()
inbound_received = Signal()
opted_out = Signal()


class CancelSend(Exception):
    """Raised by a ``pre_send`` receiver to drop the message without an error."""
