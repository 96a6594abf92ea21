"""Blocks made in AMSI reach the portal: after "sync now" for the lease and after the scheduled
delta sync; No Checks refuses ACH only; lifting the block restores payment."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from integrations.services import run_sync
from integrations.tasks import delta_sync_all
from integrations_amsi.models import AmsiLeaseLink
from rentplatform.models import LeaseResident
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def payer(amsi_connection):
    """An imported, unrestricted lease whose responsible resident has a portal login."""
    run_sync(amsi_connection, "import")
    link = (
        AmsiLeaseLink.objects.filter(credit_status="N", block_payment_access=False)
        .select_related("lease")
        .order_by("pk")
        .first()
    )
    membership = LeaseResident.objects.filter(lease=link.lease, responsible=True).first()
    user = UserFactory()
    membership.resident.user = user
    membership.resident.save(update_fields=["user"])
    client = Client()
    client.force_login(user)
    return link, client


def pay(client: Client, lease_id: int, method: str = "card") -> tuple[int, dict]:
    response = client.post(
        f"/api/leases/{lease_id}/payments/",
        {"amount": "25.00", "method": method},
        content_type="application/json",
    )
    return response.status_code, response.json()


def patch(control, link: AmsiLeaseLink, **changes: str) -> None:
    control.patch_lease(link.property_id, link.bldg_id, link.unit_id, link.resi_id, **changes)


def test_block_reaches_portal_after_lease_sync(payer, control):
    link, client = payer
    assert pay(client, link.lease_id)[0] == 201
    patch(control, link, BlockPaymentAccess="Y")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    status, body = pay(client, link.lease_id)
    assert status == 409 and body["code"] == "blocked"
    assert "Block Payment Access" in body["detail"]
    assert "manager@example.test" in body["detail"]
    patch(control, link, BlockPaymentAccess="N")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    assert pay(client, link.lease_id)[0] == 201


def test_block_reaches_portal_after_scheduled_delta(payer, control):
    link, client = payer
    patch(control, link, BlockPaymentAccess="Y")
    delta_sync_all()
    status, body = pay(client, link.lease_id, "ach")
    assert status == 409 and body["code"] == "blocked"
    patch(control, link, BlockPaymentAccess="N")
    delta_sync_all()
    assert pay(client, link.lease_id, "ach")[0] == 201


def test_hold_blocks_and_no_checks_refuses_ach_only(payer, control):
    link, client = payer
    patch(control, link, CreditStatus="H", CreditStatusDescription="Hold")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    assert pay(client, link.lease_id)[1]["code"] == "blocked"
    patch(control, link, CreditStatus="C", CreditStatusDescription="No Checks")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    status, body = pay(client, link.lease_id, "ach")
    assert status == 409 and body["code"] == "cards_only"
    assert pay(client, link.lease_id, "card")[0] == 201
    patch(control, link, CreditStatus="N", CreditStatusDescription="Normal")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    assert pay(client, link.lease_id, "ach")[0] == 201


def test_a_credit_status_code_nobody_knows_blocks_and_says_which(payer, control):
    link, client = payer
    patch(control, link, CreditStatus="Z", CreditStatusDescription="Collections")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    status, body = pay(client, link.lease_id, "card")
    assert status == 409 and body["code"] == "blocked"
    link.lease.refresh_from_db()
    assert "credit status 'Z' (Collections) in AMSI" in link.lease.accounting_access_reason
    patch(control, link, CreditStatus="N", CreditStatusDescription="Normal")
    call_command("integrations_sync", "--lease", str(link.lease_id))
    assert pay(client, link.lease_id, "card")[0] == 201
