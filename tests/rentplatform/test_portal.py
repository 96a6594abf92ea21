from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from rentplatform.models import Payment, PaymentAccess, PaymentState
from rentplatform.services import accept_payment, block_lease, set_accounting_access
from tests.factories import PASSWORD, UserFactory, lease_with_resident

from .conftest import chicago

pytestmark = pytest.mark.django_db


def login(client: Client, user) -> Client:
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("portal:home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))


def test_login_page_and_login_with_csrf(leased):
    _, resident = leased
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("portal:login"))
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("portal:login"),
        {"username": resident.user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home")


def test_login_without_csrf_token_is_refused(leased):
    _, resident = leased
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("portal:login"), {"username": resident.user.username, "password": PASSWORD}
    )
    assert response.status_code == 403


def test_logout_is_a_post(resident_client):
    response = resident_client.post(reverse("portal:logout"))
    assert response.status_code == 302
    assert resident_client.get(reverse("portal:home")).status_code == 302


def test_home_lists_only_own_leases(leased, resident_client):
    lease, _ = leased
    other, _ = lease_with_resident()
    response = resident_client.get(reverse("portal:home"))
    assert response.status_code == 200
    assert reverse("portal:lease", args=[lease.pk]) in response.content.decode()
    assert reverse("portal:lease", args=[other.pk]) not in response.content.decode()
    assert "$1,250.00 due" in response.content.decode()


def test_staff_without_resident_gets_a_friendly_page(client):
    login(client, UserFactory(is_staff=True))
    response = client.get(reverse("portal:home"))
    assert response.status_code == 200
    assert "not linked to a resident" in response.content.decode()
    assert client.get(reverse("portal:lease", args=[1])).status_code == 404


def test_other_residents_lease_is_404(resident_client):
    other, _ = lease_with_resident()
    assert resident_client.get(reverse("portal:lease", args=[other.pk])).status_code == 404
    assert resident_client.get(reverse("portal:pay", args=[other.pk])).status_code == 404
    response = resident_client.post(
        reverse("portal:pay", args=[other.pk]), {"amount": "10.00", "method": "card"}
    )
    assert response.status_code == 404
    assert not Payment.objects.exists()


def test_pay_creates_a_payment_and_redirects(leased, resident_client):
    lease, resident = leased
    response = resident_client.post(
        reverse("portal:pay", args=[lease.pk]),
        {"amount": "125.00", "method": "ach", "idempotency_key": "k1"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("portal:lease", args=[lease.pk])
    payment = Payment.objects.get()
    assert (payment.amount, payment.method, payment.resident) == (
        Decimal("125.00"),
        "ach",
        resident,
    )
    assert "accepted" in response.content.decode()
    # The same form posted twice is one payment.
    resident_client.post(
        reverse("portal:pay", args=[lease.pk]),
        {"amount": "125.00", "method": "ach", "idempotency_key": "k1"},
    )
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("amount", ["abc", "0", "-5", "1.005", "100000", "١٢٣", ""])
def test_pay_rejects_bad_amounts(leased, resident_client, amount):
    lease, _ = leased
    response = resident_client.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": amount, "method": "card"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert not Payment.objects.exists()


def test_pay_form_page(leased, resident_client):
    lease, _ = leased
    response = resident_client.get(reverse("portal:pay", args=[lease.pk]))
    html = response.content.decode()
    assert 'value="card"' in html and 'value="ach"' in html


def test_blocked_lease_page_says_why_and_whom_to_ask(leased, resident_client):
    lease, _ = leased
    block_lease(lease, "Eviction in progress")
    html = resident_client.get(reverse("portal:lease", args=[lease.pk])).content.decode()
    assert "Online payments are blocked" in html
    assert "Eviction in progress" in html
    assert "manager@example.test" in html
    assert reverse("portal:pay", args=[lease.pk]) not in html


def test_stale_page_blocked_at_payment_time(leased, resident_client):
    """The page offered the form; the lease was blocked before the post: the server refuses."""
    lease, _ = leased
    form_page = resident_client.get(reverse("portal:pay", args=[lease.pk]))
    assert 'value="card"' in form_page.content.decode()
    block_lease(lease, "Hold by the office")
    response = resident_client.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": "50.00", "method": "card"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "blocked" in html and "Hold by the office" in html and "manager@example.test" in html
    assert not Payment.objects.exists()


def test_cards_only_offers_card_refuses_ach_takes_card(leased, resident_client):
    lease, _ = leased
    set_accounting_access(lease, PaymentAccess.CARDS_ONLY, "No Checks")
    html = resident_client.get(reverse("portal:pay", args=[lease.pk])).content.decode()
    assert 'value="card"' in html and 'value="ach"' not in html
    url = reverse("portal:pay", args=[lease.pk])
    refused = resident_client.post(url, {"amount": "50.00", "method": "ach"})
    assert "card payments only" in refused.content.decode()
    assert not Payment.objects.exists()
    assert resident_client.post(url, {"amount": "50.00", "method": "card"}).status_code == 302
    assert Payment.objects.get().method == "card"


def test_not_responsible_resident_sees_but_cannot_pay(client):
    lease, resident = lease_with_resident(responsible=False)
    login(client, resident.user)
    assert client.get(reverse("portal:lease", args=[lease.pk])).status_code == 200
    response = client.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": "50.00", "method": "card"}
    )
    assert "not financially responsible" in response.content.decode()
    assert not Payment.objects.exists()


def test_pay_needs_csrf(leased):
    lease, resident = leased
    client = login(Client(enforce_csrf_checks=True), resident.user)
    response = client.post(
        reverse("portal:pay", args=[lease.pk]), {"amount": "50.00", "method": "card"}
    )
    assert response.status_code == 403
    assert not Payment.objects.exists()
    page = client.get(reverse("portal:pay", args=[lease.pk]))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post(
        reverse("portal:pay", args=[lease.pk]),
        {"amount": "50.00", "method": "card", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert Payment.objects.count() == 1


def test_void_own_payment_today(leased, resident_client):
    lease, resident = leased
    payment = accept_payment(lease, "80.00", "card", resident=resident)
    page = resident_client.get(reverse("portal:lease", args=[lease.pk])).content.decode()
    assert reverse("portal:void", args=[payment.public_id]) in page
    response = resident_client.post(reverse("portal:void", args=[payment.public_id]), follow=True)
    assert "voided" in response.content.decode()
    payment.refresh_from_db()
    assert payment.state == PaymentState.VOIDED


def test_void_of_yesterdays_payment_is_refused_with_message(leased, resident_client):
    lease, resident = leased
    payment = accept_payment(lease, "80.00", "card", resident=resident, now=chicago(2024, 1, 2, 9))
    response = resident_client.post(reverse("portal:void", args=[payment.public_id]), follow=True)
    assert "can only be voided that day" in response.content.decode()
    payment.refresh_from_db()
    assert payment.state == PaymentState.PROCESSING


def test_void_of_another_residents_payment_is_404(resident_client):
    other, other_resident = lease_with_resident()
    payment = accept_payment(other, "80.00", "card", resident=other_resident)
    response = resident_client.post(reverse("portal:void", args=[payment.public_id]))
    assert response.status_code == 404
    assert resident_client.post(reverse("portal:void", args=["not-a-uuid"])).status_code == 404
    payment.refresh_from_db()
    assert payment.state == PaymentState.PROCESSING
