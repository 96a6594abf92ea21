"""The Batch Deposit Report and reconciliation pages in the admin."""

from __future__ import annotations

import datetime as dt

from django.test import Client
from django.urls import reverse

from integrations.models import DepositReport
from rentplatform import services
from tests.factories import staff_user

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
