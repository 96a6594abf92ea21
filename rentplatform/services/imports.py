"""The host writes an accounting import makes: buildings, units, leases, residents.

An import is the one writer that works in bulk (100,000 leases in one run), so these functions
take plain values and write with ``rentplatform.bulk.fast_insert`` and ``fast_update``; the
importer (``integrations.importing``) calls them inside its own transaction, so a run that fails
half way leaves nothing behind. Changed leases are read locked (``leases_for_update``), changed
in memory (``lease_changes``, ``access_changed``: the rule of ``services.set_accounting_access``,
which locks and saves one lease at a time) and written a chunk at a time (``save_leases``);
residents likewise. Nothing here knows which accounting system the values came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Q
from django.utils import timezone

from rentplatform.bulk import CHUNK, fast_insert, fast_update
from rentplatform.models import (
    Building,
    Lease,
    LeaseResident,
    LeaseStatus,
    PaymentAccess,
    Property,
    Resident,
    Unit,
)
from rentplatform.services.access import apply_accounting_access

# The fields an import may set on a lease, and on a resident (the rest belongs to the platform).
LEASE_FIELDS = ("status", "start_date", "end_date", "balance")
RESIDENT_FIELDS = ("first_name", "last_name", "email", "phone")
ACCESS_FIELDS = ("accounting_access", "accounting_access_reason", "accounting_access_since")


def building_ids(prop: Property, codes: Iterable[str] | None = None) -> dict[str, int]:
    """Building code -> id, for the property (only ``codes`` when given)."""
    buildings = Building.objects.filter(property=prop)
    if codes is not None:
        buildings = buildings.filter(code__in=sorted(codes))
    return dict(buildings.values_list("code", "pk"))


def unit_ids(prop: Property, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(building code, unit code) -> id, for those of ``keys`` the property has."""
    found = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), CHUNK):
        some = ordered[start : start + CHUNK]
        rows = Unit.objects.filter(
            building__property=prop,
            building__code__in={b for b, _u in some},
            code__in={u for _b, u in some},
        ).values_list("building__code", "code", "pk")
        found.update({(b, u): pk for b, u, pk in rows if (b, u) in keys})
    return found


def units_by_code(prop: Property) -> dict[tuple[str, str], dict]:
    """(building code, unit code) -> {"pk", "unit_type", "address"}, for the property."""
    return {
        (u.pop("building__code"), u.pop("code")): u
        for u in Unit.objects.filter(building__property=prop).values(
            "pk", "code", "building__code", "unit_type", "address"
        )
    }


def create_building(prop: Property, code: str) -> int:
    return Building.objects.create(property=prop, code=code, name=f"Building {code}").pk


def create_buildings(prop: Property, codes: Iterable[str]) -> dict[str, int]:
    """Buildings for the given codes (none of which exists yet); code -> id."""
    made = Building.objects.bulk_create(
        [Building(property=prop, code=c, name=f"Building {c}") for c in codes]
    )
    return {b.code: b.pk for b in made}


def create_unit(building_id: int, code: str) -> int:
    return Unit.objects.create(building_id=building_id, code=code).pk


def create_units(rows: list[dict], now: dt.datetime) -> list[int]:
    """Units from dicts of building_id, code, unit_type, address; their ids, in order."""
    return fast_insert(Unit, rows, now)


def update_units(changes: list[tuple[int, str, str]]) -> None:
    """(unit id, unit_type, address) for units whose details changed."""
    fast_update(
        Unit,
        [{"pk": pk, "unit_type": kind, "address": address} for pk, kind, address in changes],
        ["unit_type", "address"],
    )


def create_leases(rows: list[dict], now: dt.datetime) -> list[int]:
    """Leases from dicts of unit_id, the LEASE_FIELDS and the accounting access (access,
    reason); their ids, in order. A lease the accounting system restricts is stamped ``now``."""
    prepared = []
    for row in rows:
        # Plain str: fast_insert hands values to the driver as they are, not as enum members.
        access, reason = str(row["access"]), row["access_reason"]
        prepared.append(
            {
                "unit_id": row["unit_id"],
                **{name: row[name] for name in LEASE_FIELDS},
                "status": str(row["status"]),
                "accounting_access": access,
                "accounting_access_reason": reason,
                "accounting_access_since": now if access != PaymentAccess.ALLOWED else None,
            }
        )
    return fast_insert(Lease, prepared, now)


def leases_for_update(ids: Iterable[int]) -> dict[int, Lease]:
    """The leases an import is about to update, locked (as ``set_accounting_access`` locks
    one) in id order, with the fields it compares: id -> Lease."""
    return {
        lease.pk: lease
        for lease in Lease.objects.select_for_update()
        .filter(pk__in=sorted(ids))
        .order_by("pk")
        .only(*LEASE_FIELDS, *ACCESS_FIELDS)
    }


def lease_changes(lease: Lease, values: dict) -> list[str]:
    """Set the LEASE_FIELDS the accounting system reports on ``lease`` (saved by
    ``save_leases``); the changes, in words."""
    changes = []
    for name in LEASE_FIELDS:
        value = values[name]
        if getattr(lease, name) != value:
            changes.append(f"{name} {getattr(lease, name)} -> {value}")
            setattr(lease, name, value)
    return changes


def access_changed(lease: Lease, access: str, reason: str, now: dt.datetime) -> bool:
    """``services.set_accounting_access``'s rule (``apply_accounting_access``) on a lease from
    ``leases_for_update`` (locked already; saved by ``save_leases``): True when the
    accounting system's view changed."""
    return apply_accounting_access(lease, access, reason, now)


def save_leases(leases: list[Lease]) -> None:
    """Write the LEASE_FIELDS and the accounting access of leases changed in memory, in bulk
    (``updated_at`` stamped now, as a save would)."""
    now = timezone.now()
    fields = [*LEASE_FIELDS, *ACCESS_FIELDS, "updated_at"]
    for lease in leases:
        lease.updated_at = now
    fast_update(
        Lease,
        [{"pk": lease.pk, **{f: getattr(lease, f) for f in fields}} for lease in leases],
        fields,
    )


def deactivate_lease(lease_id: int, now: dt.datetime) -> bool:
    """The accounting system no longer lists the lease: inactive, never deleted."""
    return bool(
        Lease.objects.filter(pk=lease_id)
        .exclude(status=LeaseStatus.INACTIVE)
        .update(status=LeaseStatus.INACTIVE, updated_at=now)
    )


def create_residents(people: list[dict], now: dt.datetime) -> list[int]:
    """Residents from dicts of the RESIDENT_FIELDS; their ids, in order."""
    return fast_insert(Resident, [{f: p[f] for f in RESIDENT_FIELDS} for p in people], now)


def add_memberships(rows: list[tuple[int, int, bool]], now: dt.datetime) -> None:
    """(lease id, resident id, responsible) rows, in bulk."""
    fast_insert(
        LeaseResident,
        [{"lease_id": lease, "resident_id": rid, "responsible": resp} for lease, rid, resp in rows],
        now,
        returning=False,
    )


def add_resident(lease_id: int, values: dict, responsible: bool) -> Resident:
    resident = Resident.objects.create(**{f: values[f] for f in RESIDENT_FIELDS})
    LeaseResident.objects.create(lease_id=lease_id, resident=resident, responsible=responsible)
    return resident


def resident_changed(resident: Resident, values: dict) -> bool:
    """Set the RESIDENT_FIELDS on ``resident`` (saved by ``save_residents``); True when any
    changed."""
    new = tuple(values[f] for f in RESIDENT_FIELDS)
    if tuple(getattr(resident, f) for f in RESIDENT_FIELDS) == new:
        return False
    for name, value in zip(RESIDENT_FIELDS, new, strict=True):
        setattr(resident, name, value)
    return True


def save_residents(residents: list[Resident]) -> None:
    """Write the RESIDENT_FIELDS of residents changed in memory, in bulk (a person on two
    leases of the chunk gets the values read last, as saving one by one gave)."""
    fields = list(RESIDENT_FIELDS)
    last = {r.pk: r for r in residents}.values()
    fast_update(
        Resident, [{"pk": r.pk, **{f: getattr(r, f) for f in fields}} for r in last], fields
    )


def set_responsible(lease_id: int, resident_id: int, responsible: bool) -> None:
    LeaseResident.objects.filter(lease_id=lease_id, resident_id=resident_id).update(
        responsible=responsible
    )


def set_responsible_many(rows: list[tuple[int, int, bool]]) -> None:
    """(lease id, resident id, responsible) rows: one UPDATE per value and chunk."""
    for value in (True, False):
        pairs = [(lease, rid) for lease, rid, responsible in rows if responsible is value]
        for start in range(0, len(pairs), CHUNK):
            match = Q()
            for lease, rid in pairs[start : start + CHUNK]:
                match |= Q(lease_id=lease, resident_id=rid)
            LeaseResident.objects.filter(match).update(responsible=value)


def remove_resident(lease_id: int, resident_id: int) -> None:
    """The person is no longer on the lease (the resident row, and any login, stays)."""
    LeaseResident.objects.filter(lease_id=lease_id, resident_id=resident_id).delete()


def unlinked_member(lease_id: int, linked_ids: Iterable[int], email: str, first: str, last: str):
    """A member of the lease not yet matched to a remote occupant, by email, else by full name
    (a tenant a person added by hand, whom the import adopts rather than duplicates)."""
    members = Resident.objects.filter(memberships__lease_id=lease_id).exclude(pk__in=linked_ids)
    if email:
        match = members.filter(email__iexact=email).first()
        if match:
            return match
    if first and last:
        return members.filter(first_name__iexact=first, last_name__iexact=last).first()
    return None
