"""A model field storing phone numbers as E.164 strings, checked by :func:`smsgate.normalize`."""

from __future__ import annotations

from typing import Any

from django.db import models

from smsgate.integrations.django import forms as sms_forms
from smsgate.integrations.django.validators import PhoneNumberValidator, normalize_phone


class PhoneNumberField(models.CharField):  # type: ignore[type-arg]
    """A ``CharField`` whose values are E.164 (``+15555550100``): a national number is read
    with ``region``, a ``phonenumbers.PhoneNumber`` is formatted, anything else is refused by
    ``full_clean`` and model forms with smsgate's explanation."""

    description = "Phone number (E.164)"

    def __init__(self, *args: Any, region: str | None = None, strict: bool = True, **kwargs: Any):
        self.region = region
        self.strict = strict
        kwargs.setdefault("max_length", 16)
        super().__init__(*args, **kwargs)
        self.validators.append(PhoneNumberValidator(region, strict=strict))

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.region is not None:
            kwargs["region"] = self.region
        if not self.strict:
            kwargs["strict"] = False
        if kwargs.get("max_length") == 16:
            del kwargs["max_length"]
        return name, path, args, kwargs

    def to_python(self, value: Any) -> Any:
        if value is None or value == "":
            return value
        if not isinstance(value, str):
            return normalize_phone(value, self.region, strict=self.strict)
        return value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        try:
            return normalize_phone(value, self.region, strict=self.strict)
        except Exception:
            # Unvalidated input is stored as given (full_clean reports it), as CharField does.
            return str(value)

    def formfield(self, **kwargs: Any) -> Any:
        defaults: dict[str, Any] = {
            "form_class": sms_forms.PhoneNumberField,
            "region": self.region,
            "strict": self.strict,
        }
        defaults.update(kwargs)
        return super().formfield(**defaults)
