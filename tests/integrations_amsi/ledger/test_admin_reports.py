"""The Batch Deposit Report and reconciliation pages in the admin, and the AMSI provider's
run of the provider contract suite."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import DepositReport
from rentplatform import services
from tests.factories import staff_user
from tests.integrations.contract import ProviderContract
from tests.integrations_amsi.world import AmsiWorld

ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"


def _admin(*perms):
    client = Client()
    client.force_login(staff_user(*perms))
    return client


def test_report_page_and_csv_show_every_item_with_its_amsi_reference(world, deliver):
    with deliver():
        p = world.pay(ALLOWED, "100.00", "card")
        q = world.pay(OTHER, "40.00", "card")
        services.void_payment(q)
    client = _admin("integrations.view_depositreport")
    page = client.get(reverse("admin:integrations_depositreport_change", args=[p.batch.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert p.batch.batch_id in html and "001-01-101-1" in html and "-40.00" in html
    csv_response = client.get(reverse("admin:integrations_depositreport_csv", args=[p.batch.pk]))
    assert csv_response["Content-Type"] == "text/csv"
    body = csv_response.content.decode()
    assert "Net deposit,100.00" in body
    assert "Lease ID in eSite" in body and "Reference in eSite" in body
    assert world.posting(p).remote_reference in body


def test_report_pages_refuse_staff_without_permission(world, deliver):
    with deliver():
        p = world.pay(ALLOWED, "100.00", "card")
    client = _admin()
    url = reverse("admin:integrations_depositreport_csv", args=[p.batch.pk])
    assert client.get(url).status_code in (302, 403)


def test_reconcile_page_with_and_without_an_uploaded_export(world, deliver):
    with deliver():
        world.pay(ALLOWED, "100.00", "card")
    url = reverse("admin:integrations_depositreport_reconcile")
    assert _admin("integrations.view_depositreport").get(url).status_code == 403
    client = _admin("integrations.reconcile", "integrations.view_depositreport")
    month = dt.date.today().strftime("%Y-%m")
    page = client.post(url, {"connection": world.connection.pk, "month": month})
    assert "0 differences - our batches match eSite" in page.content.decode()
    # An uploaded export that lacks our batch: every difference is listed.
    from django.core.files.uploadedfile import SimpleUploadedFile

    export = SimpleUploadedFile(
        "external.csv",
        b"External Batch,eSite Batch,Rent/Other,Security Deposits,Misc,Return,Totals\n"
        b"999,7,5.00,0.00,0.00,0.00,5.00\nGrand Total,,5.00,0.00,0.00,0.00,5.00\n",
        content_type="text/csv",
    )
    page = client.post(url, {"connection": world.connection.pk, "month": month, "report": export})
    html = page.content.decode()
    assert "missing_remote" in html and "missing_local" in html
    bad = client.post(url, {"connection": world.connection.pk, "month": "11/2026"})
    assert "is not YYYY-MM" in bad.content.decode()
    assert DepositReport.objects.count() >= 1


class TestAmsiProviderContract(ProviderContract):
    provider_id = "amsi"

    @pytest.fixture
    def world(self, tmp_path):
        w = AmsiWorld(tmp_path)
        w.import_property()
        yield w
        w.close()

    @pytest.fixture
    def connection(self, world):
        return world.connection

    @pytest.fixture
    def lease(self, world):
        return world.lease(ALLOWED)

    def remote_entries(self, connection, posting):
        from integrations.models import Posting
        from integrations_amsi.identifiers import client_transaction_id
        from integrations_amsi.sandbox.testing import SandboxControl

        original = Posting.objects.get(payment=posting.payment, kind="payment")
        txn = client_transaction_id(original)
        reversal = posting.kind == "reversal"
        url = connection.settings["url"].split("/edexweb")[0]
        control = SandboxControl(url)
        try:
            return sum(
                1
                for batch in control.ledger()
                for e in batch["entries"]
                if e["client_transaction_id"] == txn
                and bool(e.get("original_transaction_id")) == reversal
            )
        finally:
            control.close()

    def lose_next_reply(self, connection):
        from integrations_amsi.sandbox.testing import SandboxControl

        control = SandboxControl(connection.settings["url"].split("/edexweb")[0])
        control.add_fault("lost_reply", "AddPayment", count=1)
        control.close()


class TestAmsiProviderContractAutomatic(TestAmsiProviderContract):
    """The same contract on a connection whose operator confirmed that this eSite refuses a
    repeated ClientTransactionID: unknown outcomes are then checked unattended."""

    @pytest.fixture
    def connection(self, world):
        world.confirm_duplicates_refused()
        return world.connection
