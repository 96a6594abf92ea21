"""CSV formula injection: every CSV the product writes neutralises cells from outside.

Residents, units and properties arrive from AMSI (or a resident's own profile) with whatever
names they have; a name like ``=HYPERLINK("http://x","y")`` or ``@SUM(1)`` must reach a
manager's spreadsheet as text (prefixed with ``'``), and money such as ``-35.00`` must stay a
plain number (rentplatform.csvsafe).
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from rentplatform import services
from tests.factories import (
    LeaseFactory,
    LeaseResidentFactory,
    PropertyFactory,
    ResidentFactory,
    UnitFactory,
    UserFactory,
    staff_user,
)

pytestmark = pytest.mark.django_db

LINK = '=HYPERLINK("http://x","y")'
SUM = "@SUM(1)"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def dangerous_cells(rows) -> list[str]:
    """Cells a spreadsheet would run as a formula: a trigger first, and not a plain number."""
    return [
        cell
        for row in rows
        for cell in row
        if cell.startswith(TRIGGERS) and not re.fullmatch(r"-?\d+(\.\d+)?", cell)
    ]


@pytest.fixture
def hostile(django_capture_on_commit_callbacks):
    """A property whose residents were imported with formula names, a 100.00 payment by one,
    a 35.00 payment by the other that was charged back (-35.00), the batch deposited."""
    prop = PropertyFactory(name="+Maple Court", manager_emails="manager@example.test")
    unit = UnitFactory(
        building__property=prop,
        building__name="@Tower B",
        address='-1+1 Main St, =cmd|" /C calc"!A0',
    )
    lease = LeaseFactory(unit=unit, balance=Decimal("-35.00"))
    link = ResidentFactory(first_name=LINK, last_name="", email="=x@example.test")
    summer = ResidentFactory(first_name=SUM, last_name="", phone="+1 555 0100")
    LeaseResidentFactory(lease=lease, resident=link)
    LeaseResidentFactory(lease=lease, resident=summer)
    first = services.accept_payment(lease, "100.00", "card", resident=link)
    second = services.accept_payment(lease, "35.00", "card", resident=summer)
    services.settle_payment(first)
    services.settle_payment(second)
    services.charge_back_payment(second)
    with django_capture_on_commit_callbacks(execute=True):
        services.deposit_batch(first.batch)
    return first.batch


def test_batch_deposit_report_csv_download_is_neutralised(hostile):
    client = Client()
    client.force_login(staff_user("integrations.view_depositreport"))
    response = client.get(reverse("admin:integrations_depositreport_csv", args=[hostile.pk]))
    assert response.status_code == 200
    rows = rows_of(response.content.decode())
    assert dangerous_cells(rows) == []
    residents = {row[1] for row in rows if row and row[0] in ("Payment", "Card chargeback")}
    assert residents == {"'" + LINK, "'" + SUM}
    amounts = [row[5] for row in rows if row and row[0] in ("Payment", "Card chargeback")]
    assert sorted(amounts) == ["-35.00", "100.00", "35.00"]  # money stays plain numbers
    assert ["Reversals total", "-35.00"] in rows
    assert ["Net deposit", "100.00"] in rows


def test_batch_deposit_report_email_attachment_is_neutralised(hostile):
    assert len(mail.outbox) == 1
    _name, text, _mimetype = mail.outbox[0].attachments[0]
    rows = rows_of(text)
    assert dangerous_cells(rows) == []
    assert any(row[1:2] == ["'" + LINK] for row in rows)
    assert ["Reversals total", "-35.00"] in rows


def export_csv(client: Client, model: str) -> list[list[str]]:
    """Export every row of an admin changelist as CSV through django-import-export's form."""
    url = reverse(f"admin:rentplatform_{model}_export")
    page = client.get(url).content.decode()
    formats = dict(
        (label.strip(), value)
        for value, label in re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page)
    )
    fields = set(re.findall(r'name="(\w+resource_\w+)"', page))
    assert fields, page[:2000]
    data = {"format": formats["csv"], "resource": "0", **{name: "on" for name in fields}}
    response = client.post(url, data)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv"), response.content[:500]
    return rows_of(response.content.decode("utf-8-sig"))


@pytest.mark.parametrize("model", ["property", "building", "unit", "resident", "lease"])
def test_import_export_csv_exports_are_neutralised(hostile, model):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    rows = export_csv(client, model)
    assert len(rows) > 1
    assert dangerous_cells(rows) == []
    cells = {cell for row in rows for cell in row}
    expected = {
        "property": {"'+Maple Court"},
        "unit": {'\'-1+1 Main St, =cmd|" /C calc"!A0'},
        "resident": {"'" + LINK, "'" + SUM, "'=x@example.test", "'+1 555 0100"},
        "lease": {"-35.00"},  # a negative balance stays a plain number
        "building": {"'@Tower B"},
    }[model]
    assert expected <= cells, sorted(cells)


def test_every_import_export_admin_is_the_neutralising_one():
    """A ModelAdmin added later with plain ImportExportModelAdmin would export raw cells."""
    from django.contrib import admin
    from import_export.mixins import BaseExportMixin

    from rentplatform.admin import SafeImportExportModelAdmin

    exporting = [ma for ma in admin.site._registry.values() if isinstance(ma, BaseExportMixin)]
    assert exporting
    assert [ma for ma in exporting if not isinstance(ma, SafeImportExportModelAdmin)] == []


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        (LINK, "'" + LINK),
        (SUM, "'" + SUM),
        ("+1 555 0100", "'+1 555 0100"),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-35.00", "-35.00"),
        ("-0.5", "-0.5"),
        ("100.00", "100.00"),
        ("Alex Resident", "Alex Resident"),
        ("'=already", "'=already"),
        ("", ""),
        (Decimal("-35.00"), Decimal("-35.00")),
        (None, None),
    ],
)
def test_the_neutralising_rule(cell, written):
    from rentplatform import csvsafe

    assert csvsafe.neutralise(cell) == written
    assert csvsafe.neutralise(csvsafe.neutralise(cell)) == written  # idempotent
