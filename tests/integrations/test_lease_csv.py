"""Lease links in and out as CSV through the Lease admin's django-import-export pages
(integrations.resources.LeaseLinkResource): the export's columns, the import's preview, an
applied import, refused rows, fields the accounting system owns left alone, the permission;
the host's lease export naming units by codes; and, against the AMSI sandbox over loopback
HTTP, ResiIDs linked per unit with the remote's list read once for the whole file."""

from __future__ import annotations

import csv
import io
import logging
from decimal import Decimal

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from integrations.models import Connection, FakeLeaseLink, SyncKind, SyncRun
from integrations.resources import LeaseLinkResource
from integrations_amsi.client import clear_clients
from integrations_amsi.models import AmsiLeaseLink
from rentplatform.admin import LeaseResource
from rentplatform.models import Lease, LeaseStatus, PaymentAccess
from rentplatform.services import block_lease
from tests.factories import (
    BuildingFactory,
    LeaseFactory,
    LeaseResidentFactory,
    PropertyFactory,
    ResidentFactory,
    UnitFactory,
    staff_user,
)
from tests.integrations_amsi.provider.conftest import connect
from tests.integrations_amsi.provider.test_linking import pending_lease, sandbox_keys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_clients():
    clear_clients()  # clients are cached by connection pk, which the next test reuses
    yield
    clear_clients()


EXPORT = reverse("admin:rentplatform_lease_export")
IMPORT = reverse("admin:rentplatform_lease_import")
CONFIRM = reverse("admin:rentplatform_lease_process_import")
HEADER = "lease,property,building,unit,system,remote_id,residents,status,balance,access"


def lease_admin():
    return admin.site.get_model_admin(Lease)


def csv_index() -> int:
    return next(
        i for i, f in enumerate(lease_admin().get_import_formats()) if f().get_title() == "csv"
    )


def resource_index(resource) -> int:
    return lease_admin().resource_classes.index(resource)


def client_for(*perms: str) -> Client:
    client = Client()
    client.force_login(staff_user(*perms))
    return client


@pytest.fixture
def manager() -> Client:
    return client_for(
        "rentplatform.view_lease",
        "rentplatform.change_lease",
        "rentplatform.add_lease",
        "integrations.run_import",
    )


@pytest.fixture
def world():
    """Property P1 with three leases on B1/101, B1/102, B2/201 (one resident each) and a fake
    connection whose remote lists L1 on B1-101, L2 on B1-102, L3 on B2-201."""
    prop = PropertyFactory(code="P1")
    leases = []
    buildings = {code: BuildingFactory(property=prop, code=code) for code in ("B1", "B2")}
    for bldg, unit in (("B1", "101"), ("B1", "102"), ("B2", "201")):
        building = buildings[bldg]
        lease = LeaseFactory(unit=UnitFactory(building=building, code=unit))
        LeaseResidentFactory(lease=lease, resident=ResidentFactory(first_name=f"Ann{unit}"))
        leases.append(lease)
    remote = [{"id": f"L{n}", "unit": u} for n, u in enumerate(("B1-101", "B1-102", "B2-201"), 1)]
    connection = Connection.objects.create(
        property=prop, provider="fake", settings={"leases": remote}
    )
    return connection, leases


def export_csv(client: Client, resource) -> list[dict[str, str]]:
    fields = resource().get_export_order()
    prefix = resource.__name__.lower()
    data = {"format": csv_index(), "resource": resource_index(resource)}
    data.update({f"{prefix}_{name}": "on" for name in fields})
    response = client.post(EXPORT, data)
    assert response.status_code == 200, response.content.decode()[:2000]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def upload(client: Client, rows: list[dict], resource=LeaseLinkResource):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return client.post(
        IMPORT,
        {
            "resource": resource_index(resource),
            "format": csv_index(),
            "import_file": SimpleUploadedFile("links.csv", out.getvalue().encode()),
        },
    )


def confirm_form(preview):
    """The preview's confirm form; None when the preview refused the file."""
    return preview.context.get("confirm_form")


def confirm(client: Client, preview) -> None:
    form = confirm_form(preview)
    assert form is not None, "the preview refused the file"
    response = client.post(CONFIRM, form.initial)
    assert response.status_code == 302, response.content.decode()[:2000]


def row(lease: Lease, remote_id: str, **extra: str) -> dict[str, str]:
    unit = lease.unit
    return {
        "lease": str(lease.pk),
        "property": unit.building.property.code,
        "building": unit.building.code,
        "unit": unit.code,
        "remote_id": remote_id,
        **extra,
    }


# -- export ---------------------------------------------------------------------------------------
def test_export_names_units_links_residents_and_access(manager, world):
    connection, (a, b, c) = world
    FakeLeaseLink.objects.create(connection=connection, lease=a, remote_id="L1")
    block_lease(b, '=HYPERLINK("http://x","y")')  # text from outside, as a formula
    rows = {int(r["lease"]): r for r in export_csv(manager, LeaseLinkResource)}
    assert set(rows) == {a.pk, b.pk, c.pk}
    assert rows[a.pk] | {"access_reason": ""} == {
        "lease": str(a.pk),
        "property": "P1",
        "building": "B1",
        "unit": "101",
        "system": "the fake remote",
        "remote_id": "L1",
        "residents": "Ann101 Resident",
        "status": LeaseStatus.ACTIVE,
        "balance": "1250.00",
        "access": str(PaymentAccess.ALLOWED.label),
        "access_reason": "",
    }
    assert rows[b.pk]["remote_id"] == "" and rows[b.pk]["system"] == "the fake remote"
    assert rows[b.pk]["access"] == str(PaymentAccess.BLOCKED.label)
    assert rows[b.pk]["access_reason"] == '\'=HYPERLINK("http://x","y")'  # neutralised


def test_host_lease_export_names_units_by_codes_and_imports_them(manager, world):
    _connection, (a, _b, _c) = world
    rows = {int(r["id"]): r for r in export_csv(manager, LeaseResource)}
    assert (rows[a.pk]["property"], rows[a.pk]["building"], rows[a.pk]["unit"]) == (
        "P1",
        "B1",
        "101",
    )
    moved = {"id": str(a.pk), "property": "P1", "building": "B2", "unit": "201"}
    preview = upload(manager, [{**rows[a.pk], **moved}], resource=LeaseResource)
    confirm(manager, preview)
    a.refresh_from_db()
    assert (a.unit.building.code, a.unit.code) == ("B2", "201")
    unknown = upload(manager, [{**rows[a.pk], "unit": "999"}], resource=LeaseResource)
    assert confirm_form(unknown) is None
    assert "no unit 999 in building B1 of property P1" in unknown.content.decode()


# -- import ----------------------------------------------------------------------------------------
def test_import_preview_changes_nothing_then_confirm_links_and_resyncs(
    manager, world, django_capture_on_commit_callbacks
):
    connection, (a, b, c) = world
    unlinked = LeaseFactory(unit=c.unit)
    preview = upload(manager, [row(a, "L1"), row(b, "L2"), row(c, "L3"), row(unlinked, "")])
    result = preview.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert [r.import_type for r in result.rows] == ["update", "update", "update", "skip"]
    assert not FakeLeaseLink.objects.exists()  # the preview was rolled back
    with django_capture_on_commit_callbacks(execute=True):
        confirm(manager, preview)
    links = dict(FakeLeaseLink.objects.values_list("lease_id", "remote_id"))
    assert links == {a.pk: "L1", b.pk: "L2", c.pk: "L3"}
    assert FakeLeaseLink.objects.filter(linked_by_hand=True).count() == 3
    run = SyncRun.objects.get()  # one resync for the connection, not one per row
    assert run.kind == SyncKind.FULL and run.connection == connection
    assert run.triggered_by.startswith("lease link import:")
    # importing the same file again changes nothing
    again = upload(manager, [row(a, "L1"), row(b, "L2"), row(c, "L3")])
    assert [r.import_type for r in again.context["result"].rows] == ["skip"] * 3


def test_refused_rows_name_the_lease_and_the_reason(manager, world):
    connection, (a, b, c) = world
    other = LeaseFactory(unit=c.unit)
    FakeLeaseLink.objects.create(connection=connection, lease=other, remote_id="L3")
    rows = [
        row(a, "L9"),  # not listed by the remote
        row(b, "L1"),  # listed on another unit
        row(c, "L3"),  # already linked to another lease
        {**row(a, "L1"), "unit": "102"},  # the row's unit is not the lease's
        row(a, "L-1"),  # not an id of that remote
        {**row(a, "L1"), "lease": "99999"},  # no such lease
        {**row(a, "L1"), "lease": "abc"},
    ]
    preview = upload(manager, rows)
    result = preview.context["result"]
    assert confirm_form(preview) is None
    assert not result.has_errors()
    errors = {
        r.number: " ".join(str(m) for ms in r.error_dict.values() for m in ms)
        for r in result.invalid_rows
    }
    assert errors == {
        1: f"lease #{a.pk}: the fake remote has no current or notice lease L9",
        2: f"lease #{b.pk}: the fake remote lease L1 is on unit B1-101, not on the lease's "
        "unit B1-102",
        3: f"lease #{c.pk}: the fake remote lease L3 is already linked to lease #{other.pk}",
        4: f"lease #{a.pk}: the row names unit P1/B1/102 but the lease is on unit P1/B1/101 "
        "(rows shifted? correct the lease number or the unit)",
        5: f"lease #{a.pk}: 'L-1' is not a the fake remote lease id (letters, digits)",
        6: "there is no lease #99999: an import links leases, it never creates them",
        7: "'abc' is not a platform lease number",
    }
    page = preview.content.decode()
    assert f"lease #{b.pk}: the fake remote lease L1 is on unit B1-101" in page
    assert FakeLeaseLink.objects.count() == 1


def test_one_remote_lease_twice_in_a_file_is_refused_on_the_second_row(manager, world):
    connection, (a, _b, _c) = world
    twin = LeaseFactory(unit=a.unit)
    result = upload(manager, [row(a, "L1"), row(twin, "L1")]).context["result"]
    assert [r.number for r in result.invalid_rows] == [2]
    message = str(result.invalid_rows[0].error_dict["remote_id"][0])
    assert message == (
        f"lease #{twin.pk}: the fake remote lease L1 is already linked to lease #{a.pk}"
    )


def test_balance_status_and_access_in_the_file_are_ignored(manager, world):
    _connection, (a, _b, _c) = world
    changed = row(
        a, "L1", status=LeaseStatus.INACTIVE, balance="-5000.00", access="Allowed", access_reason=""
    )
    block_lease(a, "owes too much")
    preview = upload(manager, [changed])
    confirm(manager, preview)
    a.refresh_from_db()
    assert a.status == LeaseStatus.ACTIVE and a.balance == Decimal("1250.00")
    assert a.effective_access.access == PaymentAccess.BLOCKED
    assert FakeLeaseLink.objects.get(lease=a).remote_id == "L1"


def test_importing_links_needs_the_link_permission(world):
    clerk = client_for("rentplatform.view_lease", "rentplatform.change_lease")
    page = clerk.get(IMPORT)
    names = [choice[1] for choice in page.context["form"].fields["resource"].choices]
    assert LeaseLinkResource.get_display_name() not in names
    assert (
        client_for("rentplatform.view_lease", "integrations.run_import")
        .get(IMPORT)
        .context["form"]
        .fields["resource"]
        .choices
    )


# -- AMSI: ResiIDs per unit, the remote's list read once -------------------------------------------
def test_amsi_resi_ids_linked_with_one_read_of_the_lists(manager, amsi_sandbox, caplog):
    connection = connect(amsi_sandbox.base_url)
    keys = sandbox_keys(connection)[:6]
    leases = [pending_lease(connection, k[1], k[2]) for k in keys]
    rows = [row(lease, key[3]) for lease, key in zip(leases, keys, strict=True)]
    rows[0]["remote_id"] = "-".join(keys[0])  # this unit's full composite is accepted too
    caplog.set_level(logging.DEBUG, logger="integrations_amsi.sandbox.server")
    preview = upload(manager, rows)
    assert not preview.context["result"].has_validation_errors(), preview.content.decode()[:3000]
    calls = [r for r in caplog.records if "POST /edexweb" in r.getMessage()]
    assert len(calls) == 2  # current and notice lists, whatever the number of rows
    confirm(manager, preview)
    assert {link.lease_id: link.key for link in AmsiLeaseLink.objects.all()} == {
        lease.pk: key for lease, key in zip(leases, keys, strict=True)
    }
    exported = {r["lease"]: r["remote_id"] for r in export_csv(manager, LeaseLinkResource)}
    assert exported[str(leases[1].pk)] == "-".join(keys[1])  # PropertyId-BldgID-UnitID-ResiID
    newcomer = pending_lease(connection, keys[0][1], keys[0][2])
    wrong = upload(manager, [row(newcomer, "9999")]).context["result"]
    unknown = f"001-{keys[0][1]}-{keys[0][2]}-9999"
    assert str(wrong.invalid_rows[0].error_dict["remote_id"][0]) == (
        f"lease #{newcomer.pk}: eSite has no current or notice lease {unknown}"
    )
