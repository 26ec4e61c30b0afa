from __future__ import annotations

from django.urls import include, path

from tests.integrations.djangoproject.shop import views

urlpatterns = [
    path("sms/webhooks/", include("smsgate.integrations.django.urls")),
    path("orders/<int:order_id>/ship", views.ship_order),
    path("signup", views.signup),
]
