"""The host writes an accounting import makes: buildings, units, leases, residents.

An import is the one writer that works in bulk (100,000 leases in one run), so these functions
take plain values and write with ``rentplatform.bulk.fast_insert`` and ``bulk_update``; the
importer (``integrations.importing``) calls them inside its own transaction, so a run that fails
half way leaves nothing behind. Payment access goes through ``services.set_accounting_access``
like every other writer of it. Nothing here knows which accounting system the values came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from rentplatform.bulk import CHUNK, fast_insert
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

# The fields an import may set on a lease, and on a resident (the rest belongs to the platform).
LEASE_FIELDS = ("status", "start_date", "end_date", "balance")
RESIDENT_FIELDS = ("first_name", "last_name", "email", "phone")


def building_ids(prop: Property) -> dict[str, int]:
    """Building code -> id, for the property."""
    return dict(Building.objects.filter(property=prop).values_list("code", "pk"))


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
    Unit.objects.bulk_update(
        [Unit(pk=pk, unit_type=unit_type, address=address) for pk, unit_type, address in changes],
        ["unit_type", "address"],
        batch_size=CHUNK,
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


def update_lease(lease: Lease, values: dict) -> list[str]:
    """Set the LEASE_FIELDS the accounting system reports; the changes, in words."""
    changes = []
    for name in LEASE_FIELDS:
        value = values[name]
        if getattr(lease, name) != value:
            changes.append(f"{name} {getattr(lease, name)} -> {value}")
            setattr(lease, name, value)
    if changes:
        lease.save(update_fields=[*LEASE_FIELDS, "updated_at"])
    return changes


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


def update_resident(resident: Resident, values: dict) -> bool:
    """Set the RESIDENT_FIELDS; True when any changed."""
    new = tuple(values[f] for f in RESIDENT_FIELDS)
    if tuple(getattr(resident, f) for f in RESIDENT_FIELDS) == new:
        return False
    for name, value in zip(RESIDENT_FIELDS, new, strict=True):
        setattr(resident, name, value)
    resident.save(update_fields=list(RESIDENT_FIELDS))
    return True


def set_responsible(lease_id: int, resident_id: int, responsible: bool) -> None:
    LeaseResident.objects.filter(lease_id=lease_id, resident_id=resident_id).update(
        responsible=responsible
    )


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
