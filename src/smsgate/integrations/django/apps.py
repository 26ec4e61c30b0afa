"""The Django app: ``"smsgate.integrations.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class SmsgateConfig(AppConfig):
    name = "smsgate.integrations.django"
    label = "smsgate"
    verbose_name = "smsgate"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from smsgate.integrations.django import conf

        # override_settings(SMSGATE=...) in tests: rebuild senders from the new settings
        setting_changed.connect(conf.on_setting_changed, dispatch_uid="smsgate-settings")
