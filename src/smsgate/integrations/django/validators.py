"""Phone numbers validated by :func:`smsgate.normalize`, for forms and models.

Values may be strings or ``phonenumbers.PhoneNumber`` objects, which is what
django-phonenumber-field's fields hold, so its values pass through the same checks.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

from smsgate.errors import SmsgateError
from smsgate.integrations.core import e164


def normalize_phone(value: Any, region: str | None = None, *, strict: bool = True) -> str:
    """``value`` as E.164, or :class:`ValidationError` saying what is wrong with it."""
    from smsgate.phone import normalize

    try:
        return normalize(e164(value), region, strict=strict)
    except SmsgateError as exc:
        raise ValidationError(exc.message, code="invalid_phone_number") from None


@deconstructible
class PhoneNumberValidator:
    """Refuse what :func:`smsgate.normalize` refuses (``region`` for national numbers;
    ``strict=False`` admits numbers that are only possible, such as fictional test ranges)."""

    def __init__(self, region: str | None = None, *, strict: bool = True) -> None:
        self.region = region
        self.strict = strict

    def __call__(self, value: Any) -> None:
        normalize_phone(value, self.region, strict=self.strict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhoneNumberValidator) and (self.region, self.strict) == (
            other.region,
            other.strict,
        )

    def __hash__(self) -> int:
        return hash((self.region, self.strict))


validate_phone_number = PhoneNumberValidator()
