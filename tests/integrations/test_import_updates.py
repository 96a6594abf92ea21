"""Leases that changed remotely are written in bulk, with the same results as one by one.

The framework's importer (``integrations.importing``) fed by a provider whose remote is a list of
``LeaseRecord``s held in the test, linked through the AMSI link models (they have provider
columns on both the lease and the occupant link, so every kind of change is reachable): lease
fields, payment access both ways, occupants added, adopted, changed, moved and removed,
reactivation, and a lease that did not change among them, in one resync, on the real database.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from integrations.importing import run_import
from integrations.models import Connection, SyncKind, SyncRun
from integrations.providers.fake import FakeProvider
from integrations.records import LeaseRecord, OccupantRecord
from integrations_amsi.models import AmsiLeaseLink, AmsiOccupantLink
from rentplatform.models import Lease, LeaseResident, LeaseStatus, PaymentAccess, Resident
from tests.factories import PropertyFactory

pytestmark = pytest.mark.django_db


class RecordsProvider(FakeProvider):
    """Its remote is ``remote``: records by lease id, listed in that order."""

    link_model = AmsiLeaseLink
    occupant_model = AmsiOccupantLink
    system_name = "the test remote"

    def __init__(self, connection, remote: dict[str, LeaseRecord]):
        super().__init__(connection)
        self.remote = remote

    def read_units(self, feed):
        return []

    def read_leases(self, feed):
        return list(self.remote.values())

    def read_changed_leases(self, feed, since):
        return self.read_leases(feed)

    def read_lease(self, feed, link):
        return self.remote.get(link.resi_id)


def person(key, first, last, email="", *, responsible=True, flag="Y"):
    return OccupantRecord(
        key=key,
        first_name=first,
        last_name=last,
        email=email,
        responsible=responsible,
        link_fields={"responsible_flag": flag},
    )


def record(resi, *occupants, balance="0.00", status=LeaseStatus.ACTIVE, credit="N", **extra):
    blocked = credit == "H"
    values = {
        "key": ("P1", "1", f"U{resi}", resi),
        "building": extra.pop("building", "1"),
        "unit": extra.pop("unit", f"U{resi}"),
        "status": status,
        "start_date": dt.date(2026, 1, 1),
        "balance": Decimal(balance),
        "access": PaymentAccess.BLOCKED if blocked else PaymentAccess.ALLOWED,
        "access_reason": "credit status Hold in the test remote" if blocked else "",
        "link_fields": {"credit_status": credit},
        "occupants": list(occupants),
        **extra,
    }
    raw = {"resi": resi, "balance": balance, "status": str(status), "credit": credit}
    return LeaseRecord(**values, raw=raw)


def initial() -> dict[str, LeaseRecord]:
    return {
        "1": record("1", person("1", "Ada", "Lovelace")),
        "2": record("2", person("1", "Alan", "Turing")),
        "3": record("3", person("1", "Grace", "Hopper"), credit="H"),
        "4": record("4", person("1", "Edsger", "Dijkstra", "ed@example.com")),
        "5": record("5", person("1", "Barbara", "Liskov"), person("2", "John", "Liskov")),
        "6": record("6", person("1", "Ken", "Thompson")),
        "7": record("7", person("1", "Dennis", "Ritchie")),
        "8": record("8", person("1", "Frances", "Allen")),
    }


def sync(conn, remote, kind=SyncKind.IMPORT, **kwargs) -> SyncRun:
    run = SyncRun.objects.create(connection=conn, kind=kind)
    run_import(RecordsProvider(conn, remote), run, **kwargs)
    run.save()
    return run


def lease(resi) -> Lease:
    return AmsiLeaseLink.objects.select_related("lease").get(resi_id=resi).lease


def people(resi) -> set[tuple[str, str, bool]]:
    return {
        (m.resident.first_name, m.resident.email, m.responsible)
        for m in LeaseResident.objects.filter(lease=lease(resi)).select_related("resident")
    }


@pytest.fixture
def conn():
    return Connection.objects.create(property=PropertyFactory(), provider="fake")


@pytest.fixture
def imported(conn):
    remote = initial()
    run = sync(conn, remote)
    assert (run.created, run.errors) == (8, 0), run.message
    # Lease 8 disappears, so a full resync marks it inactive; it comes back below.
    gone = dict(remote)
    del gone["8"]
    run = sync(conn, gone)
    assert run.deactivated == 1
    assert lease("8").status == LeaseStatus.INACTIVE
    # Someone adds a tenant by hand on lease 6 (with a login): AMSI will list her next.
    hand = Resident.objects.create(first_name="Joan", last_name="Clarke", email="jc@example.com")
    LeaseResident.objects.create(lease=lease("6"), resident=hand, responsible=False)
    return remote


def changed(remote):
    remote = dict(remote)
    remote["1"] = record(
        "1", person("1", "Ada", "Lovelace"), balance="125.50", status=LeaseStatus.NOTICE,
        end_date=dt.date(2026, 12, 31),
    )  # fmt: skip
    remote["2"] = record("2", person("1", "Alan", "Turing"), credit="H")  # blocked
    remote["3"] = record("3", person("1", "Grace", "Hopper"))  # unblocked
    remote["4"] = record(  # details, and the responsible flag moved
        "4", person("1", "Edsger", "Dijkstra", "edsger@example.com", responsible=False, flag="N")
    )
    remote["5"] = record("5", person("1", "Barbara", "Liskov"))  # occupant 2 gone
    remote["6"] = record(  # occupant 2 added: the tenant added by hand, adopted
        "6", person("1", "Ken", "Thompson"), person("2", "Joan", "Clarke", "JC@example.com")
    )
    remote["7"] = record(  # a new person on the lease
        "7", person("1", "Dennis", "Ritchie"), person("2", "Brian", "Kernighan", "bk@example.com")
    )
    return remote  # lease 8 listed again: reactivated


def test_a_resync_writes_every_kind_of_change(conn, imported):
    now_before = lease("2").updated_at
    run = sync(conn, changed(imported))
    assert (run.created, run.updated, run.unchanged, run.deactivated) == (0, 8, 0, 0)
    assert run.errors == 0
    said = {c["record"]: c["change"] for c in run.changes}
    assert said == {
        "P1-1-U1-1": "status active -> notice; end_date None -> 2026-12-31; balance 0.00 -> 125.50",
        "P1-1-U2-2": "payment access -> blocked (credit status Hold in the test remote)",
        "P1-1-U3-3": "payment access -> allowed",
        "P1-1-U4-4": "occupant 1 details; occupant 1 responsible_flag -> N",
        "P1-1-U5-5": "occupant 2 no longer on the lease",
        "P1-1-U6-6": "occupant 2 matched to Joan Clarke (added by hand)",
        "P1-1-U7-7": "occupant 2 added",
        "P1-1-U8-8": "status inactive -> active; listed again by the test remote: reactivated",
    }

    one = lease("1")
    assert (one.status, one.end_date, one.balance) == (
        LeaseStatus.NOTICE, dt.date(2026, 12, 31), Decimal("125.50"),
    )  # fmt: skip
    two = lease("2")
    assert (two.accounting_access, two.accounting_access_reason) == (
        PaymentAccess.BLOCKED, "credit status Hold in the test remote",
    )  # fmt: skip
    assert two.accounting_access_since == run.window_end
    assert two.updated_at > now_before
    three = lease("3")
    assert (three.accounting_access, three.accounting_access_reason) == (PaymentAccess.ALLOWED, "")
    assert people("4") == {("Edsger", "edsger@example.com", False)}
    assert AmsiOccupantLink.objects.get(lease_link__resi_id="4").responsible_flag == "N"
    assert people("5") == {("Barbara", "", True)}
    assert Resident.objects.filter(first_name="John", last_name="Liskov").exists()  # kept
    six = AmsiOccupantLink.objects.get(lease_link__resi_id="6", occu_seq_no="2")
    assert six.resident.user_id is None and six.resident.email == "jc@example.com"
    assert Resident.objects.filter(first_name="Joan").count() == 1  # adopted, not duplicated
    assert people("7") == {("Dennis", "", True), ("Brian", "bk@example.com", True)}
    link8 = AmsiLeaseLink.objects.get(resi_id="8")
    assert link8.active and link8.last_synced_at == run.window_end
    # The links carry what was read, so the same list again is "unchanged" and writes nothing.
    for link in AmsiLeaseLink.objects.all():
        assert link.content_hash == imported_or_changed(imported, link.resi_id).digest()
        assert link.raw == imported_or_changed(imported, link.resi_id).raw
    assert AmsiLeaseLink.objects.get(resi_id="2").credit_status == "H"
    with CaptureQueriesContext(db) as ctx:
        again = sync(conn, changed(imported))
    writes = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith("SELECT")]
    assert (again.updated, again.unchanged) == (0, 8)
    assert [w for w in writes if "syncrun" not in w and "SAVEPOINT" not in w] == []


def imported_or_changed(imported, resi) -> LeaseRecord:
    return changed(imported)[resi]


def test_a_dry_run_counts_the_same_and_writes_nothing(conn, imported):
    before = list(Lease.objects.order_by("pk").values())
    run = SyncRun.objects.create(connection=conn, kind=SyncKind.IMPORT, dry_run=True)
    run_import(RecordsProvider(conn, changed(imported)), run)
    assert (run.updated, run.unchanged) == (8, 0) and len(run.changes) == 8
    assert list(Lease.objects.order_by("pk").values()) == before
    assert AmsiOccupantLink.objects.filter(occu_seq_no="2", lease_link__resi_id="7").count() == 0


def test_a_lease_sync_and_a_delta_update_the_same_way(conn, imported):
    remote = changed(imported)
    run = sync(conn, remote, SyncKind.LEASE, lease_id=lease("2").pk)
    assert run.updated == 1 and lease("2").accounting_access == PaymentAccess.BLOCKED
    run = sync(conn, remote, SyncKind.DELTA)
    assert (run.updated, run.unchanged) == (7, 1)
    assert lease("1").balance == Decimal("125.50")


def test_many_changed_leases_take_a_few_statements_per_chunk(conn):
    """The bulk path: 300 changed leases cost a bounded number of statements, not one or more
    per lease (each used to cost five)."""
    remote = {str(n): record(str(n), person("1", f"P{n}", "X")) for n in range(1, 301)}
    sync(conn, remote)
    remote = {
        key: record(key, person("1", f"P{key}", "X", f"p{key}@example.com"), credit="H",
                    balance="9.99")
        for key in remote
    }  # fmt: skip
    with CaptureQueriesContext(db) as ctx:
        run = sync(conn, remote, SyncKind.DELTA)
    assert (run.updated, run.errors) == (300, 0)
    assert len(ctx.captured_queries) <= 20, len(ctx.captured_queries)  # 18 as written
    assert {(link.lease.balance, link.lease.accounting_access) for link in
            AmsiLeaseLink.objects.select_related("lease")} == {
        (Decimal("9.99"), PaymentAccess.BLOCKED)
    }  # fmt: skip
    assert set(Resident.objects.values_list("email", flat=True)) == {
        f"p{n}@example.com" for n in range(1, 301)
    }


def test_a_delta_places_new_leases_on_the_units_it_looks_up(conn, imported):
    """A delta does not load the property's units: it looks up those its new leases are on,
    and makes the ones (and the buildings) that are not there yet."""
    from rentplatform.models import Building, Unit

    units, buildings = Unit.objects.count(), Building.objects.count()
    remote = dict(imported)
    remote["9"] = record("9", person("1", "Next", "Tenant"), unit="U1")  # a unit known
    remote["10"] = record("10", person("1", "New", "Building"), building="2", unit="U10")
    run = sync(conn, {k: remote[k] for k in ("9", "10")}, SyncKind.DELTA)
    assert (run.created, run.errors) == (2, 0), run.message
    assert lease("9").unit_id == lease("1").unit_id
    assert (Unit.objects.count(), Building.objects.count()) == (units + 1, buildings + 1)
    assert lease("10").unit.building.code == "2"
