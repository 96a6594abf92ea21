from __future__ import annotations

import base64
import json

import pytest
from django.test import Client
from django.urls import reverse

from rentplatform.models import Payment, PaymentAccess, PaymentState
from rentplatform.services import accept_payment, block_lease, set_accounting_access
from tests.factories import (
    PASSWORD,
    LeaseResidentFactory,
    UserFactory,
    lease_with_resident,
    staff_user,
)

from .conftest import chicago

pytestmark = pytest.mark.django_db


def api(user) -> Client:
    """A client using HTTP basic auth (no CSRF involved)."""
    creds = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {creds}")


def post_json(client: Client, url: str, body) -> object:
    return client.post(url, json.dumps(body), content_type="application/json")


def pay_url(lease) -> str:
    return reverse("api:lease-payments", args=[lease.pk])


@pytest.fixture
def owner(leased):
    return api(leased[1].user)


def test_anonymous_is_refused(client, leased):
    response = client.get(reverse("api:lease-list"))
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Basic")


def test_lease_list_only_own(leased, owner):
    lease, _ = leased
    lease_with_resident()
    data = owner.get(reverse("api:lease-list")).json()["results"]
    assert [item["id"] for item in data] == [lease.pk]
    item = data[0]
    assert item["balance"] == "1250.00"
    assert item["payment_access"] == {
        "access": "allowed",
        "reason": "",
        "source": "",
        "since": None,
    }
    assert item["can_pay_card"] is True and item["can_pay_ach"] is True
    assert item["property"]["code"] == lease.property.code


def test_lease_detail_of_other_is_404(leased, owner):
    other, _ = lease_with_resident()
    assert owner.get(reverse("api:lease-detail", args=[leased[0].pk])).status_code == 200
    assert owner.get(reverse("api:lease-detail", args=[other.pk])).status_code == 404
    assert post_json(owner, pay_url(other), {"amount": "1.00", "method": "card"}).status_code == 404
    assert not Payment.objects.exists()


def test_blocked_lease_shows_access(leased, owner):
    lease, _ = leased
    block_lease(lease, "Legal hold")
    item = owner.get(reverse("api:lease-detail", args=[lease.pk])).json()
    assert item["payment_access"]["access"] == "blocked"
    assert item["payment_access"]["reason"] == "Legal hold"
    assert item["payment_access"]["source"] == "platform"
    assert item["payment_access"]["since"]
    assert item["can_pay_card"] is False


def test_pay_201(leased, owner):
    lease, resident = leased
    response = post_json(owner, pay_url(lease), {"amount": "125.00", "method": "card"})
    assert response.status_code == 201, response.content
    body = response.json()
    payment = Payment.objects.get()
    assert body["id"] == payment.public_id
    assert body["amount"] == "125.00"
    assert body["method"] == "card"
    assert body["state"] == "processing"
    assert body["batch_id"] == payment.batch.batch_id
    assert body["business_day"] == payment.business_day.isoformat()
    assert payment.resident == resident


def test_pay_accepts_json_integer(leased, owner):
    response = post_json(owner, pay_url(leased[0]), {"amount": 125, "method": "ach"})
    assert response.status_code == 201
    assert response.json()["amount"] == "125.00"


def test_pay_idempotency_key(leased, owner):
    body = {"amount": "10.00", "method": "card", "idempotency_key": "abc-1"}
    first = post_json(owner, pay_url(leased[0]), body)
    assert first.status_code == 201
    again = post_json(owner, pay_url(leased[0]), body)
    # The retry answers what the first request answered (tests/rentplatform/test_idempotency.py).
    assert again.status_code == 201
    assert again.json() == first.json()
    assert Payment.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"amount": 125.5, "method": "card"}, "amount", "not a float"),
        ({"amount": 125.0, "method": "card"}, "amount", "not a float"),
        ({"amount": "abc", "method": "card"}, "amount", "not a number"),
        ({"amount": "1.005", "method": "card"}, "amount", "two decimal places"),
        ({"amount": "0", "method": "card"}, "amount", "greater than zero"),
        ({"amount": "-5.00", "method": "card"}, "amount", "greater than zero"),
        ({"amount": "100000.00", "method": "card"}, "amount", "limit"),
        ({"amount": "9" * 30, "method": "card"}, "amount", "at most 20 characters"),
        ({"amount": "١٢٣", "method": "card"}, "amount", "digits 0-9"),
        ({"amount": "1e3", "method": "card"}, "amount", "exponent"),
        ({"amount": "NaN", "method": "card"}, "amount", "not a finite number"),
        ({"amount": "1,000.00", "method": "card"}, "amount", "commas"),
        ({"amount": True, "method": "card"}, "amount", "decimal string"),
        ({"amount": None, "method": "card"}, "amount", "null"),
        ({"amount": ["1"], "method": "card"}, "amount", "decimal string"),
        ({"method": "card"}, "amount", "required"),
        ({"amount": "1.00", "method": "cash"}, "method", 'use "card" or "ach"'),
        ({"amount": "1.00"}, "method", "required"),
        ({"amount": "1.00", "method": "card", "extra": 1}, "extra", "unknown field"),
        (
            {"amount": "1.00", "method": "card", "idempotency_key": "k" * 65},
            "idempotency_key",
            "64",
        ),
    ],
)
def test_pay_validation(leased, owner, body, field, needle):
    response = post_json(owner, pay_url(leased[0]), body)
    assert response.status_code == 400, response.content
    data = response.json()
    assert data["code"] == "invalid"
    assert field in data["fields"]
    assert needle in data["detail"]
    assert not Payment.objects.exists()


def test_pay_non_object_body(leased, owner):
    response = post_json(owner, pay_url(leased[0]), ["amount"])
    assert response.status_code == 400
    assert not Payment.objects.exists()


def test_pay_blocked_409_with_reason_and_contacts(leased, owner):
    lease, _ = leased
    block_lease(lease, "Eviction filed")
    response = post_json(owner, pay_url(lease), {"amount": "10.00", "method": "card"})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "blocked"
    assert "Eviction filed" in body["detail"] and "manager@example.test" in body["detail"]
    assert not Payment.objects.exists()


def test_cards_only_refuses_ach_takes_card(leased, owner):
    lease, _ = leased
    set_accounting_access(lease, PaymentAccess.CARDS_ONLY, "No Checks")
    item = owner.get(reverse("api:lease-detail", args=[lease.pk])).json()
    assert (item["can_pay_card"], item["can_pay_ach"]) == (True, False)
    refused = post_json(owner, pay_url(lease), {"amount": "10.00", "method": "ach"})
    assert refused.status_code == 409 and refused.json()["code"] == "cards_only"
    assert (
        post_json(owner, pay_url(lease), {"amount": "10.00", "method": "card"}).status_code == 201
    )


def test_session_auth_enforces_csrf(leased):
    lease, resident = leased
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=resident.user.username, password=PASSWORD)
    response = post_json(client, pay_url(lease), {"amount": "10.00", "method": "card"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Payment.objects.exists()


def test_payments_list_and_detail_only_own(leased, owner):
    lease, resident = leased
    mine = accept_payment(lease, "20.00", "card", resident=resident)
    other_lease, other_resident = lease_with_resident()
    theirs = accept_payment(other_lease, "30.00", "card", resident=other_resident)
    ids = [p["id"] for p in owner.get(reverse("api:payment-list")).json()["results"]]
    assert ids == [mine.public_id]
    assert owner.get(reverse("api:payment-detail", args=[mine.public_id])).status_code == 200
    assert owner.get(reverse("api:payment-detail", args=[theirs.public_id])).status_code == 404
    assert owner.get(reverse("api:payment-detail", args=["zzz"])).status_code == 404


def test_void_own_payment(leased, owner):
    lease, resident = leased
    payment = accept_payment(lease, "20.00", "card", resident=resident)
    response = owner.post(reverse("api:payment-void", args=[payment.public_id]))
    assert response.status_code == 200
    assert response.json()["state"] == "voided"


def test_void_refusals(leased, owner):
    lease, resident = leased
    old = accept_payment(lease, "20.00", "card", resident=resident, now=chicago(2024, 3, 1, 10))
    response = owner.post(reverse("api:payment-void", args=[old.public_id]))
    assert response.status_code == 409 and response.json()["code"] == "void_window"
    other_lease, other_resident = lease_with_resident()
    theirs = accept_payment(other_lease, "30.00", "card", resident=other_resident)
    assert owner.post(reverse("api:payment-void", args=[theirs.public_id])).status_code == 404
    old.refresh_from_db()
    theirs.refresh_from_db()
    assert old.state == theirs.state == PaymentState.PROCESSING


def test_staff_with_permission_may_void_any(leased):
    lease, resident = leased
    payment = accept_payment(lease, "20.00", "card", resident=resident)
    plain_staff = api(staff_user())
    assert (
        plain_staff.post(reverse("api:payment-void", args=[payment.public_id])).status_code == 404
    )
    voider = api(staff_user("rentplatform.void_payment"))
    response = voider.post(reverse("api:payment-void", args=[payment.public_id]))
    assert response.status_code == 200
    assert response.json()["state"] == "voided"


def test_user_without_resident_sees_nothing():
    client = api(UserFactory())
    assert client.get(reverse("api:lease-list")).json()["results"] == []
    assert client.get(reverse("api:payment-list")).json()["results"] == []


def test_roommate_cannot_void_a_payment_they_did_not_make(leased):
    lease, payer = leased
    roommate = LeaseResidentFactory(lease=lease).resident
    payment = accept_payment(lease, "20.00", "card", resident=payer)
    client = api(roommate.user)
    assert client.get(reverse("api:payment-detail", args=[payment.public_id])).status_code == 200
    response = client.post(reverse("api:payment-void", args=[payment.public_id]))
    assert response.status_code == 403 and response.json()["code"] == "not_payer"
    payment.refresh_from_db()
    assert payment.state == PaymentState.PROCESSING
