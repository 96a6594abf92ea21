"""A resident reaches only their own leases and payments (404 for anyone else's, through the
pages and the API alike), and the portal's POST forms need a CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from rentplatform.models import Payment, PaymentState, Reversal
from rentplatform.services import accept_payment
from tests.factories import PASSWORD, lease_with_resident

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_residents():
    """(mine, theirs): each a lease with one resident and a processing card payment of today."""
    out = []
    for _ in range(2):
        lease, resident = lease_with_resident()
        payment = accept_payment(lease, "40.00", "card", resident=resident)
        out.append((lease, resident, payment))
    return out


def _state() -> tuple:
    return (
        Payment.objects.count(),
        Reversal.objects.count(),
        sorted(Payment.objects.values_list("pk", "state")),
    )


Probe = Callable[[Client, object, Payment], object]

PROBES: dict[str, Probe] = {
    "page-lease": lambda c, lease, p: c.get(reverse("portal:lease", args=[lease.pk])),
    "page-pay-form": lambda c, lease, p: c.get(reverse("portal:pay", args=[lease.pk])),
    "page-pay-post": lambda c, lease, p: c.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": "10.00", "method": "card"}
    ),
    "page-void": lambda c, lease, p: c.post(reverse("portal:void", args=[p.public_id])),
    "api-lease": lambda c, lease, p: c.get(reverse("api:lease-detail", args=[lease.pk])),
    "api-lease-payments": lambda c, lease, p: c.get(reverse("api:lease-payments", args=[lease.pk])),
    "api-pay": lambda c, lease, p: c.post(
        reverse("api:lease-payments", args=[lease.pk]),
        {"amount": "10.00", "method": "card"},
        content_type="application/json",
    ),
    "api-payment": lambda c, lease, p: c.get(reverse("api:payment-detail", args=[p.public_id])),
    "api-void": lambda c, lease, p: c.post(reverse("api:payment-void", args=[p.public_id])),
}


@pytest.mark.parametrize("probe", PROBES.values(), ids=PROBES.keys())
def test_another_residents_lease_and_payment_are_404(two_residents, probe):
    """Every lookup starts from own_leases/own_payments; starting from Lease.objects or
    Payment.objects instead would answer 200 (or pay / void someone else's lease)."""
    (mine, me, _), (theirs, _, their_payment) = two_residents
    client = Client()
    client.force_login(me.user)
    before = _state()
    assert probe(client, theirs, their_payment).status_code == 404
    assert _state() == before
    assert Payment.objects.get(pk=their_payment.pk).state == PaymentState.PROCESSING
    # The same probe on my own lease is not a 404: the refusal is about ownership.
    my_payment = Payment.objects.filter(lease=mine).first()
    assert probe(client, mine, my_payment).status_code != 404


def test_api_lists_hold_only_own_rows(two_residents):
    (mine, me, my_payment), (theirs, _, their_payment) = two_residents
    client = Client()
    client.force_login(me.user)
    assert [x["id"] for x in client.get(reverse("api:lease-list")).json()["results"]] == [mine.pk]
    ids = [x["id"] for x in client.get(reverse("api:payment-list")).json()["results"]]
    assert ids == [my_payment.public_id] and their_payment.public_id not in ids


# -- CSRF -----------------------------------------------------------------------------------------
def _token(client: Client, url: str) -> str:
    page = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_login_form_needs_csrf_token(two_residents):
    """Without CsrfViewMiddleware (or with csrf_exempt) the token-less login would succeed."""
    _, me, _ = two_residents[0]
    client = Client(enforce_csrf_checks=True)
    url = reverse("portal:login")
    form = {"username": me.user.username, "password": PASSWORD}
    assert client.post(url, form).status_code == 403
    assert "_auth_user_id" not in client.session
    response = client.post(url, {**form, "csrfmiddlewaretoken": _token(client, url)})
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_pay_and_void_need_csrf_token(two_residents):
    """A forged cross-site form (no token) pays or voids nothing, in the portal and through the
    API's session authentication."""
    lease, me, payment = two_residents[0]
    client = Client(enforce_csrf_checks=True)
    client.force_login(me.user)
    before = _state()
    pay_url = reverse("portal:pay", args=[lease.pk])
    void_url = reverse("portal:void", args=[payment.public_id])
    assert client.post(pay_url, {"amount": "10.00", "method": "card"}).status_code == 403
    assert client.post(void_url).status_code == 403
    api_pay = reverse("api:lease-payments", args=[lease.pk])
    body = {"amount": "10.00", "method": "card"}
    assert client.post(api_pay, body, content_type="application/json").status_code == 403
    api_void = reverse("api:payment-void", args=[payment.public_id])
    assert client.post(api_void).status_code == 403
    assert _state() == before
    # With the page's token the same posts go through (the refusal above was the token).
    token = _token(client, pay_url)
    form = {"amount": "10.00", "method": "card", "csrfmiddlewaretoken": token}
    assert client.post(pay_url, form).status_code == 302
    assert client.post(void_url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Payment.objects.count() == before[0] + 1
    assert Payment.objects.get(pk=payment.pk).state == PaymentState.VOIDED
