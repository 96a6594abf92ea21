"""Import against the sandbox: exactly the sandbox's units, leases and occupants, links right
where two units share a ResiID, and an unchanged re-import that writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from lxml import etree

from integrations.models import SyncStatus
from integrations.services import run_sync
from integrations_amsi.models import AmsiLeaseLink, AmsiOccupantLink
from integrations_amsi.sandbox.testing import SandboxServer
from rentplatform.models import Lease, LeaseResident, Resident, Unit

from .conftest import connect

pytestmark = pytest.mark.django_db

WRITE_WORDS = ("INSERT", "UPDATE", "DELETE")


def expected(units_xml: bytes, residents_xml: bytes) -> tuple[set, set, set]:
    """(units, lease keys, occupant keys) in the documents, for the statuses we import."""
    units = {(u.get("BldgId"), u.get("UnitId")) for u in etree.fromstring(units_xml).iter("Unit")}
    leases, occupants = set(), set()
    for lease in etree.fromstring(residents_xml).iter("Lease"):
        if lease.get("occustatuscode", "C") not in ("C", "N"):
            continue
        key = tuple(lease.get(n) for n in ("PropertyId", "BldgID", "UnitID", "ResiID"))
        leases.add(key)
        units.add((key[1], key[2]))
        occupants |= {(key, o.get("OccuSeqNo")) for o in lease.iter("Occupant")}
    return units, leases, occupants


def imported(prop) -> tuple[set, set, set]:
    units = set(Unit.objects.filter(building__property=prop).values_list("building__code", "code"))
    leases = {link.key for link in AmsiLeaseLink.objects.all()}
    occupants = {
        (o.lease_link.key, o.occu_seq_no)
        for o in AmsiOccupantLink.objects.select_related("lease_link")
    }
    return units, leases, occupants


def snapshot() -> dict:
    return {
        "leases": dict(Lease.objects.values_list("pk", "updated_at")),
        "links": dict(AmsiLeaseLink.objects.values_list("pk", "last_synced_at")),
        "residents": Resident.objects.count(),
        "memberships": LeaseResident.objects.count(),
        "occupants": AmsiOccupantLink.objects.count(),
        "units": Unit.objects.count(),
    }


def assert_reimport_writes_nothing(conn) -> None:
    before = snapshot()
    with CaptureQueriesContext(db_connection) as ctx:
        run = run_sync(conn, "import")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert (run.created, run.updated, run.deactivated, run.errors) == (0, 0, 0, 0)
    assert "nothing changed" in run.summary()
    writes = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(WRITE_WORDS)
        and "integrations_syncrun" not in q["sql"]
    ]
    assert writes == []
    assert snapshot() == before


def assert_links_match_units() -> None:
    for link in AmsiLeaseLink.objects.select_related("lease__unit__building"):
        unit = link.lease.unit
        assert (unit.building.code, unit.code) == (link.bldg_id, link.unit_id)


def load_reference(server: SandboxServer, folder: Path) -> tuple[bytes, bytes]:
    units = (folder / "GetPropertyUnits.sample.xml").read_bytes()
    residents = (folder / "GetPropertyResidents.sample.xml").read_bytes()
    ctl = server.control()
    ctl.put_property("001", "Captured sample", "1001")
    ctl.load_units("001", units)
    ctl.load_residents("001", residents)
    ctl.close()
    return units, residents


def test_captured_samples_import_exactly(empty_sandbox, amsi_reference):
    units, residents = load_reference(empty_sandbox, amsi_reference)
    conn = connect(empty_sandbox.base_url)
    run = run_sync(conn, "import")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    want = expected(units, residents)
    got = imported(conn.property)
    assert got[1] == want[1]
    assert got[2] == want[2]
    assert got[0] == want[0]
    assert run.created == len(want[1]) == 53
    # ResiID 16 is on units 01-104 and 01-109: two leases, each on its own unit.
    sixteen = AmsiLeaseLink.objects.filter(resi_id="16").select_related("lease__unit")
    assert sorted(link.lease.unit.code for link in sixteen) == ["104", "109"]
    assert_links_match_units()
    # No Checks in the sample -> cards only.
    assert Lease.objects.filter(accounting_access="cards_only").count() == 3
    assert_reimport_writes_nothing(conn)


def test_generated_portfolio_import_exactly(generated_sandbox, db):
    server, units, residents = generated_sandbox
    conn = connect(server.base_url)
    run = run_sync(conn, "import")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    want = expected(units, residents)
    assert imported(conn.property) == want
    shared = AmsiLeaseLink.objects.values("resi_id").distinct().count()
    assert shared < len(want[1])  # the generator repeats ResiIDs across units
    assert_links_match_units()
    access = dict(
        (link.lease.pk, link.lease.accounting_access)
        for link in AmsiLeaseLink.objects.select_related("lease")
    )
    assert {"allowed", "cards_only", "blocked"} <= set(access.values())
    assert_reimport_writes_nothing(conn)


def test_demo_dry_run_then_import(amsi_connection):
    run = run_sync(amsi_connection, "import", dry_run=True)
    assert run.status == SyncStatus.SUCCEEDED
    assert run.created == 24 and Lease.objects.count() == 0
    run = run_sync(amsi_connection, "import")
    assert run.created == 24 and Lease.objects.count() == 24
    assert_reimport_writes_nothing(amsi_connection)
