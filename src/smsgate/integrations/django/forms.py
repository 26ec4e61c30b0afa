"""A form field that cleans a phone number to E.164 with :func:`smsgate.normalize`."""

from __future__ import annotations

from typing import Any

from django import forms

from smsgate.integrations.django.validators import normalize_phone


class PhoneNumberField(forms.CharField):
    """Accepts ``(555) 555-0100`` (with ``region="US"``), ``+1 555 555 0100`` or a
    ``phonenumbers.PhoneNumber``; ``cleaned_data`` holds ``+15555550100``."""

    def __init__(self, *, region: str | None = None, strict: bool = True, **kwargs: Any) -> None:
        self.region = region
        self.strict = strict
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        if value in self.empty_values:
            return ""
        if not isinstance(value, str):
            return normalize_phone(value, self.region, strict=self.strict)
        text = super().to_python(value)
        if not text:
            return ""
        return normalize_phone(text, self.region, strict=self.strict)
