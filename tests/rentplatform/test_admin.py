from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from rentplatform.models import BatchStatus, Lease, NachaReturnCode, PaymentState
from rentplatform.services import accept_payment, block_lease, return_payment, settle_payment
from tests.factories import PASSWORD, UserFactory, staff_user

from .conftest import chicago

pytestmark = pytest.mark.django_db

LEASES = reverse("admin:rentplatform_lease_changelist")
PAYMENTS = reverse("admin:rentplatform_payment_changelist")
BATCHES = reverse("admin:rentplatform_depositbatch_changelist")


def admin_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def superuser():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.mark.parametrize(
    "url",
    [
        "property",
        "building",
        "unit",
        "resident",
        "lease",
        "payment",
        "depositbatch",
        "reversal",
        "nachareturncode",
    ],
)
def test_changelists_and_change_pages_render(superuser, leased, url):
    lease, resident = leased
    payment = accept_payment(lease, "10.00", "ach", resident=resident)
    return_payment(payment, "R01")
    NachaReturnCode.objects.get_or_create(code="R01", defaults={"description": "NSF"})
    client = admin_client(superuser)
    response = client.get(reverse(f"admin:rentplatform_{url}_changelist"))
    assert response.status_code == 200
    model = response.context["cl"].model
    obj = model.objects.first()
    change = client.get(reverse(f"admin:rentplatform_{url}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_lease_change_page_shows_effective_access_and_residents(superuser, leased):
    lease, resident = leased
    block_lease(lease, "Court order")
    html = (
        admin_client(superuser)
        .get(reverse("admin:rentplatform_lease_change", args=[lease.pk]))
        .content.decode()
    )
    assert "Blocked; reason: Court order; source: platform" in html
    assert str(resident) in html


def test_block_action_asks_for_reason_then_blocks(leased):
    lease, _ = leased
    client = admin_client(staff_user("rentplatform.view_lease", "rentplatform.block_payments"))
    page = client.post(LEASES, {"action": "block_payments", ACTION_CHECKBOX_NAME: [lease.pk]})
    assert page.status_code == 200
    assert "reason" in page.content.decode()
    lease.refresh_from_db()
    assert not lease.platform_blocked
    # Empty reason: the form is shown again, nothing happens.
    again = client.post(
        LEASES,
        {"action": "block_payments", ACTION_CHECKBOX_NAME: [lease.pk], "apply": "1", "reason": ""},
    )
    assert again.status_code == 200
    lease.refresh_from_db()
    assert not lease.platform_blocked
    done = client.post(
        LEASES,
        {
            "action": "block_payments",
            ACTION_CHECKBOX_NAME: [lease.pk],
            "apply": "1",
            "reason": "Unpaid deposit",
        },
        follow=True,
    )
    assert "Blocked online payments on 1 lease" in done.content.decode()
    lease.refresh_from_db()
    assert lease.platform_blocked and lease.platform_block_reason == "Unpaid deposit"


def test_unblock_action(leased):
    lease, _ = leased
    block_lease(lease, "x")
    client = admin_client(staff_user("rentplatform.view_lease", "rentplatform.block_payments"))
    client.post(LEASES, {"action": "unblock_payments", ACTION_CHECKBOX_NAME: [lease.pk]})
    lease.refresh_from_db()
    assert not lease.platform_blocked


def test_block_without_permission_is_refused_and_nothing_changes(leased):
    lease, _ = leased
    client = admin_client(staff_user("rentplatform.view_lease", "rentplatform.change_lease"))
    page = client.get(LEASES)
    assert page.status_code == 200
    assert "block_payments" not in page.content.decode()
    response = client.post(
        LEASES,
        {
            "action": "block_payments",
            ACTION_CHECKBOX_NAME: [lease.pk],
            "apply": "1",
            "reason": "sneaky",
        },
        follow=True,
    )
    # Django does not offer the action, so the post selects nothing.
    assert response.status_code == 200
    assert "Blocked online payments" not in response.content.decode()
    assert not Lease.objects.get(pk=lease.pk).platform_blocked


def test_void_action_reports_each_payment(leased):
    lease, resident = leased
    today = accept_payment(lease, "10.00", "card", resident=resident)
    old = accept_payment(lease, "20.00", "card", resident=resident, now=chicago(2024, 1, 5, 12))
    client = admin_client(staff_user("rentplatform.view_payment", "rentplatform.void_payment"))
    response = client.post(
        PAYMENTS,
        {"action": "void_payments", ACTION_CHECKBOX_NAME: [today.pk, old.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "voided." in html and "can only be voided that day" in html
    today.refresh_from_db()
    old.refresh_from_db()
    assert (today.state, old.state) == (PaymentState.VOIDED, PaymentState.PROCESSING)


def test_void_without_permission_is_refused(leased):
    lease, resident = leased
    payment = accept_payment(lease, "10.00", "card", resident=resident)
    client = admin_client(staff_user("rentplatform.view_payment"))
    assert "void_payments" not in client.get(PAYMENTS).content.decode()
    response = client.post(
        PAYMENTS, {"action": "void_payments", ACTION_CHECKBOX_NAME: [payment.pk]}, follow=True
    )
    assert "voided." not in response.content.decode()
    payment.refresh_from_db()
    assert payment.state == PaymentState.PROCESSING


def test_mark_deposited_with_and_without_permission(leased):
    lease, resident = leased
    payment = settle_payment(accept_payment(lease, "10.00", "card", resident=resident))
    batch = payment.batch
    refused = admin_client(staff_user("rentplatform.view_depositbatch"))
    refused.post(BATCHES, {"action": "mark_deposited", ACTION_CHECKBOX_NAME: [batch.pk]})
    batch.refresh_from_db()
    assert batch.status == BatchStatus.OPEN
    allowed = admin_client(
        staff_user("rentplatform.view_depositbatch", "rentplatform.deposit_batch")
    )
    page = allowed.get(BATCHES).content.decode()
    assert "10.00" in page
    allowed.post(BATCHES, {"action": "mark_deposited", ACTION_CHECKBOX_NAME: [batch.pk]})
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DEPOSITED


def test_mark_deposited_refusal_is_reported(leased):
    lease, resident = leased
    batch = accept_payment(lease, "10.00", "card", resident=resident).batch
    client = admin_client(
        staff_user("rentplatform.view_depositbatch", "rentplatform.deposit_batch")
    )
    response = client.post(
        BATCHES, {"action": "mark_deposited", ACTION_CHECKBOX_NAME: [batch.pk]}, follow=True
    )
    assert "settle them first" in response.content.decode()
    batch.refresh_from_db()
    assert batch.status == BatchStatus.OPEN


def test_nacha_codes_are_editable_in_the_list(superuser):
    # Codes may be seeded by a data migration; filter the list down to the one we edit.
    NachaReturnCode.objects.get_or_create(code="R01", defaults={"description": "Insufficient"})
    client = admin_client(superuser)
    response = client.post(
        reverse("admin:rentplatform_nachareturncode_changelist") + "?q=R01",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-code": "R01",
            "form-0-description": "NSF",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    code = NachaReturnCode.objects.get(code="R01")
    assert (code.description, code.counts_as_nsf) == ("NSF", False)
