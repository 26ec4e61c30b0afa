from __future__ import annotations

from django.db import models

from smsgate.integrations.django.fields import PhoneNumberField


class Customer(models.Model):
    phone = PhoneNumberField(region="US")

    class Meta:
        app_label = "shop"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    shipped = models.BooleanField(default=False)

    class Meta:
        app_label = "shop"
