from __future__ import annotations

from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from smsgate.integrations.django import forms as sms_forms
from smsgate.integrations.django import send_sms
from tests.integrations.djangoproject.shop.models import Customer, Order


class ShipmentFailed(Exception):
    pass


@csrf_exempt
@transaction.atomic
def ship_order(request: HttpRequest, order_id: int) -> HttpResponse:
    """Marks the order shipped and texts the customer in one transaction: when the carrier
    booking below fails, the rollback takes the text with it."""
    order = Order.objects.select_related("customer").get(pk=order_id)
    order.shipped = True
    order.save()
    send_sms(order.customer.phone, f"Your order #{order_id} is on its way!")
    if request.GET.get("carrier") == "down":
        raise ShipmentFailed("carrier booking failed")
    return JsonResponse({"shipped": True})


class SignupForm(forms.Form):
    phone = sms_forms.PhoneNumberField(region="US")


@csrf_exempt
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    customer = Customer.objects.create(phone=form.cleaned_data["phone"])
    return JsonResponse({"phone": customer.phone})
