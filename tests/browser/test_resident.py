"""Residents in the portal, in a real browser against the live server and the eSite sandbox
over loopback: one pays (the form, the confirmation, the payment on the lease's page, posted to
eSite's ledger), one is refused on a lease blocked while the form was open (the reason said
once, no form left over) and sees why on a lease blocked in AMSI, and one on a No Checks lease
is offered cards only and pays by card.

Each step is a screenshot, ``resident-NN-...png`` (tests/browser/conftest.py says where)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.models import PostingState
from rentplatform.models import Payment, PaymentAccess, PaymentMethod, PaymentState
from rentplatform.services import block_lease
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

PAYS = "001-01-101-1"
BLOCKED_IN_AMSI = "001-01-104-4"  # Block Payment Access in the demo portfolio
NO_CHECKS = "001-01-106-6"  # credit status No Checks in the demo portfolio
PASSWORD = "pw-123456"  # AmsiWorld.resident_user's


@pytest.fixture
def world(amsi_world):
    return amsi_world


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()


def composite(entry: dict) -> str:
    """The AMSI lease an entry of the sandbox's ledger is booked on."""
    return "-".join(entry[k] for k in ("property_id", "bldg_id", "unit_id", "resi_id"))


def main_text(page) -> str:
    return page.locator("main").inner_text()


def test_a_resident_pays_and_it_reaches_esite(page, shot, world):
    lease = world.lease(PAYS)
    user, resident = world.resident_user(lease, "ana")

    page.goto("/")
    assert "/login/" in page.url
    shot(page, "resident-01-login")
    log_in(page, "ana", PASSWORD)
    home = page.locator("main table tbody tr")
    assert home.count() == 1 and f"Unit {lease.unit.code}" in home.first.inner_text()
    shot(page, "resident-02-home")

    home.first.get_by_role("link", name="Pay").click()
    page.wait_for_load_state()
    methods = page.locator("input[name=method]")
    assert sorted(m.get_attribute("value") for m in methods.all()) == ["ach", "card"]
    page.fill("input[name=amount]", "125.00")
    page.check("input[name=method][value=card]")
    shot(page, "resident-03-pay-form")
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_load_state()

    payment = Payment.objects.get(lease=lease)
    assert (payment.amount, payment.method, payment.resident) == (
        Decimal("125.00"),
        PaymentMethod.CARD,
        resident,
    )
    assert page.url.endswith(f"/leases/{lease.pk}/") or str(lease.pk) in page.url
    confirmation = page.locator("ul.messages li.success").inner_text()
    assert confirmation == (f"Payment of $125.00 by Card accepted (reference {payment.short_id}).")
    row = page.locator("main table tbody tr", has_text=payment.short_id)
    assert "$125.00" in row.inner_text() and "Processing" in row.inner_text()
    assert row.get_by_role("button", name="Void").is_visible()  # today's, hers
    # eSite's balance does not move until the next sync: the page says why.
    assert "payments still processing may not be in it yet" in main_text(page)
    shot(page, "resident-04-paid")

    # Posted to eSite: the sandbox's ledger holds it on her lease, with our transaction id.
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED
    entries = world.entries(payment.batch.batch_id)
    assert [(e["amount"], composite(e)) for e in entries] == [("125.00", PAYS)], entries


def test_a_blocked_lease_refuses_with_the_reason_once(page, shot, world):
    lease = world.lease(PAYS)
    world.resident_user(lease, "ana")
    log_in(page, "ana", PASSWORD)
    page.goto(f"/leases/{lease.pk}/pay/")
    page.fill("input[name=amount]", "90.00")
    page.check("input[name=method][value=ach]")

    # While the form is open, the office blocks online payments on the lease.
    block_lease(lease, "Eviction in progress")
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_load_state()
    text = main_text(page)
    assert "Payment not made." in text
    assert text.count("Eviction in progress") == 1, text
    assert page.locator("form input[name=amount]").count() == 0  # no form left over
    assert not Payment.objects.filter(lease=lease).exists()
    shot(page, "resident-05-refused-blocked")

    # The lease's page says it too, once, and offers no way to pay.
    page.get_by_role("link", name=f"Unit {lease.unit.code}").click()
    page.wait_for_load_state()
    text = main_text(page)
    assert text.count("Eviction in progress") == 1, text
    assert page.get_by_role("link", name="Make a payment").count() == 0
    log_out(page)

    # A lease blocked in AMSI (Block Payment Access) reads the same, with AMSI's reason.
    amsi_blocked = world.lease(BLOCKED_IN_AMSI)
    assert amsi_blocked.effective_access.access == PaymentAccess.BLOCKED
    world.resident_user(amsi_blocked, "dev")
    log_in(page, "dev", PASSWORD)
    row = page.locator("main table tbody tr").first
    assert "Blocked" in row.inner_text()
    assert row.get_by_role("link", name="Pay").count() == 0
    row.get_by_role("link", name=f"Unit {amsi_blocked.unit.code}").click()
    page.wait_for_load_state()
    notice = page.locator(".notice.blocked").inner_text()
    assert "Online payments are blocked on this lease." in notice
    assert amsi_blocked.effective_access.reason in notice
    assert main_text(page).count(amsi_blocked.effective_access.reason) == 1
    shot(page, "resident-06-blocked-in-amsi")


def test_a_no_checks_lease_offers_cards_only(page, shot, world):
    lease = world.lease(NO_CHECKS)
    assert lease.effective_access.access == PaymentAccess.CARDS_ONLY
    world.resident_user(lease, "erin")
    log_in(page, "erin", PASSWORD)
    page.locator("main table tbody tr").first.get_by_role("link", name="Pay").click()
    page.wait_for_load_state()
    notice = page.locator(".notice").inner_text()
    assert "This lease accepts card payments only." in notice
    assert "No Checks" in notice
    methods = page.locator("input[name=method]")
    assert [m.get_attribute("value") for m in methods.all()] == ["card"]  # no ACH offered
    assert methods.first.is_checked()
    page.fill("input[name=amount]", "60.00")
    shot(page, "resident-07-cards-only")
    page.get_by_role("button", name="Pay now").click()
    page.wait_for_load_state()
    payment = Payment.objects.get(lease=lease)
    assert payment.method == PaymentMethod.CARD and payment.state == PaymentState.PROCESSING
    assert "by Card accepted" in page.locator("ul.messages li.success").inner_text()
    assert world.posting(payment).state == PostingState.POSTED
    entries = world.entries(payment.batch.batch_id)
    assert [(e["amount"], composite(e)) for e in entries] == [("60.00", NO_CHECKS)], entries
    shot(page, "resident-08-card-accepted")
