"""``path("sms/webhooks/", include("smsgate.integrations.django.urls"))`` gives providers
``sms/webhooks/<provider>/status`` and ``sms/webhooks/<provider>/inbound``."""

from __future__ import annotations

from django.urls import path

from smsgate.integrations.django import views

app_name = "smsgate"

urlpatterns = [
    path("<str:provider>/status", views.status_webhook, name="status"),
    path("<str:provider>/inbound", views.inbound_webhook, name="inbound"),
]
