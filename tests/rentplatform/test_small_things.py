"""Issue 13 item 8: the small things a user notices (one reference format, credit shown as a
credit, labels for codes, one refusal shown once, the same amount rules at every door)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import Connection
from integrations_amsi.admin import credit_status_label
from integrations_amsi.models import AmsiLeaseLink
from integrations_amsi.provider import AmsiProvider
from rentplatform.models import Payment, PaymentAccess
from rentplatform.services import (
    accept_payment,
    block_lease,
    set_accounting_access,
    void_payment,
)
from tests.factories import PASSWORD, UserFactory, lease_with_resident

from .conftest import chicago

pytestmark = pytest.mark.django_db

PAYMENTS = reverse("admin:rentplatform_payment_changelist")
REVERSALS = reverse("admin:rentplatform_reversal_changelist")


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    user = UserFactory(is_staff=True, is_superuser=True)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_admin_search_finds_the_short_reference_shown(admin_client, leased):
    lease, _ = leased
    wanted = accept_payment(lease, "12.34", "card", now=chicago(2025, 3, 1, 10))
    other = accept_payment(lease, "56.78", "card", now=chicago(2025, 3, 1, 10))
    listing = admin_client.get(PAYMENTS).content.decode()
    assert wanted.short_id in listing  # the column shows the short form
    for term in [wanted.short_id, wanted.short_id.upper(), wanted.public_id, str(wanted.reference)]:
        page = admin_client.get(PAYMENTS, {"q": term}).content.decode()
        assert wanted.short_id in page and other.short_id not in page, term


def test_admin_reversal_search_by_the_payments_short_reference(admin_client, leased):
    lease, _ = leased
    wanted = accept_payment(lease, "9.00", "card", now=chicago(2025, 3, 1, 10))
    other = accept_payment(lease, "11.00", "card", now=chicago(2025, 3, 1, 10))
    for payment in (wanted, other):
        void_payment(payment, now=chicago(2025, 3, 1, 11))
    page = admin_client.get(REVERSALS, {"q": wanted.short_id}).content.decode()
    assert wanted.short_id in page and other.short_id not in page


def test_portal_void_url_takes_the_short_reference(resident_client, leased):
    lease, resident = leased
    payment = accept_payment(lease, "8.00", "card", resident=resident)
    response = resident_client.post(
        reverse("portal:void", args=[payment.short_id]), {"idempotency_key": "k" * 20}
    )
    assert response.status_code == 302
    payment.refresh_from_db()
    assert payment.state == "voided"
    other_lease, other = lease_with_resident()
    theirs = accept_payment(other_lease, "8.00", "card", resident=other)
    response = resident_client.post(reverse("portal:void", args=[theirs.short_id]))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "balance, shown, not_shown",
    [
        ("-35.00", "Credit $35.00", "-35.00"),
        ("0.00", "Nothing due", "$0.00"),
        ("1250.00", "$1,250.00 due", "Credit"),
    ],
)
def test_balance_reads_as_due_or_credit_on_every_page(
    resident_client, leased, balance, shown, not_shown
):
    lease, _ = leased
    type(lease).objects.filter(pk=lease.pk).update(balance=Decimal(balance))
    for url in [
        reverse("portal:home"),
        reverse("portal:lease", args=[lease.pk]),
        reverse("portal:pay", args=[lease.pk]),
    ]:
        page = resident_client.get(url).content.decode()
        assert shown in page and not_shown not in page, url


def test_amsi_lease_links_show_credit_status_in_words(admin_client):
    lease, _ = lease_with_resident()
    connection = Connection.objects.create(
        property=lease.property, provider=AmsiProvider.id, settings={"property_id": "001"}
    )
    for n, code in enumerate(["N", "C", "H", "R"]):
        link_lease = lease if n == 0 else lease_with_resident()[0]
        AmsiLeaseLink.objects.create(
            connection=connection,
            lease=link_lease,
            property_id="001",
            bldg_id="01",
            unit_id=f"10{n}",
            resi_id=str(n),
            credit_status=code,
        )
    page = admin_client.get(reverse("admin:integrations_amsi_amsileaselink_changelist"))
    text = page.content.decode()
    for words in [
        "Normal (N): payments allowed",
        "No Checks (C): cards only",
        "Hold (H): payments blocked; code letter inferred",
        "Restricted (R): payments blocked; code letter inferred",
    ]:
        assert words in text
    held = admin_client.get(
        reverse("admin:integrations_amsi_amsileaselink_changelist"), {"credit_status": "H"}
    ).content.decode()
    assert "Hold (H): payments" in held and "Normal (N): payments" not in held
    assert credit_status_label("") == "not given (Normal)"
    assert credit_status_label("Z") == "Z (unknown code)"


def test_refusal_on_a_stale_page_is_said_once_and_leaves_no_form(leased, resident_client):
    lease, _ = leased
    url = reverse("portal:pay", args=[lease.pk])
    assert 'name="amount"' in resident_client.get(url).content.decode()
    block_lease(lease, "Hold by the office")
    html = resident_client.post(url, {"amount": "50.00", "method": "card"}).content.decode()
    assert html.count("Hold by the office") == 1
    assert html.count("Online payments are blocked") == 1
    assert "Payment not made." in html
    assert 'name="amount"' not in html and "Pay now" not in html
    assert not Payment.objects.exists()


def test_cards_only_refusal_said_once_and_the_card_form_stays(leased, resident_client):
    lease, _ = leased
    set_accounting_access(lease, PaymentAccess.CARDS_ONLY, "No Checks")
    url = reverse("portal:pay", args=[lease.pk])
    html = resident_client.post(url, {"amount": "50.00", "method": "ach"}).content.decode()
    assert html.count("card payments only") == 1 and html.count("No Checks") == 1
    assert 'value="card"' in html and "Pay now" in html and 'value="50.00"' in html


def test_cash_batches_page_explains_the_approve_mark(amsi_sandbox):
    """The legend says what evidence shows (open) and marks the rest a guess; CSV stays data."""
    url = amsi_sandbox.base_url + "/edexweb/esite/cashbatches"
    html = httpx.get(url).text
    assert "Approve \u2713</strong>: the batch is still open" in html
    assert "a guess, not confirmed by AMSI" in html
    assert "still open" not in httpx.get(url, params={"format": "csv"}).text


@pytest.mark.parametrize(
    "url",
    [
        "admin:rentplatform_payment_changelist",
        "admin:rentplatform_lease_changelist",
        "admin:rentplatform_depositbatch_changelist",
        "admin:rentplatform_reversal_changelist",
        "admin:integrations_amsi_amsileaselink_changelist",
    ],
)
def test_wide_lists_load_the_wrapping_css(admin_client, url):
    html = admin_client.get(reverse(url)).content.decode()
    assert "rentplatform/admin_lists.css" in html


def test_payment_list_shows_the_batch_id_not_its_long_name(admin_client, leased):
    lease, _ = leased
    payment = accept_payment(lease, "10.00", "card", now=chicago(2025, 3, 1, 10))
    html = admin_client.get(PAYMENTS).content.decode()
    assert payment.batch.batch_id in html and str(payment.batch) not in html
