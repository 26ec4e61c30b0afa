# myapp/sms.py
import logging

from django.conf import settings

from smsgate.integrations.django import send_sms as smsgate_send

logger = logging.getLogger(__name__)


def send_sms(to: str, text: str, sender: str | None = None) -> bool:
    """Returns True once the message is accepted (sent, or stored to be sent). Never raises."""
    result = smsgate_send(to, text, sender=sender or settings.SMSPM_SENDER, fail_silently=True)
    return result is not None
