"""Link a platform lease to its AMSI lease by hand, from the ResiID a person typed.

Design notes:
- Property managers are told to give only the ResiID, the last part of eSite's Rent Roll ID
  ``Property-Building-Unit-ResiID``. People still paste the whole composite; we take its last
  part when the first three parts are this lease's property, building and unit (and say what we
  took), and refuse with both units named when they are not.
- A ResiID is unique only within a unit, so the ResiID is verified with AMSI *for the lease's
  unit*: the current and notice resident lists are streamed and the exact
  (PropertyId, BldgID, UnitID, ResiID) is looked for. Nothing is saved unless AMSI has it.
- After linking, a one-lease sync brings in access (blocks, credit status) and occupants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from integrations.exceptions import IntegrationError, ProviderConfigurationError
from integrations.logging import mask
from integrations.models import Connection, SyncKind, SyncRun
from integrations.services import run_sync
from rentplatform.models import Lease

from .client import get_client
from .conf import settings_for
from .errors import NO_DATA
from .importer import LEASE_STATUSES
from .models import AmsiLeaseLink
from .xmldocs import edex

_RESI_ID = re.compile(r"^[A-Za-z0-9]{1,20}$")


class LinkRefused(ValueError):
    """The typed value cannot be linked; ``message`` says why, in words a manager reads."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class LinkResult:
    link: AmsiLeaseLink
    note: str  # what was taken from the input, when it was not a bare ResiID
    run: SyncRun | None

    @property
    def message(self) -> str:
        text = f"lease #{self.link.lease_id} linked to AMSI lease {self.link.composite}"
        if self.note:
            text = f"{self.note}; {text}"
        if self.run is not None:
            text += f". Sync: {self.run.summary()}"
        return text


def amsi_connection(lease: Lease) -> Connection:
    connection = Connection.objects.filter(property=lease.property, provider="amsi").first()
    if connection is None:
        raise LinkRefused(f"property {lease.property.code} has no AMSI connection")
    return connection


def parse_resi_id(text: str, lease: Lease, property_id: str) -> tuple[str, str]:
    """(ResiID, note) from what was typed; LinkRefused when it is not a usable ResiID."""
    value = (text or "").strip()
    if not value:
        raise LinkRefused("enter the AMSI ResiID")
    unit = lease.unit
    bldg, unit_code = unit.building.code, unit.code
    parts = [p.strip() for p in value.split("-")]
    note = ""
    if len(parts) == 4:
        resi = parts[3]
        if (parts[0], parts[1], parts[2]) != (property_id, bldg, unit_code):
            raise LinkRefused(
                f"{value} is the eSite ID of a lease on property {parts[0]}, unit "
                f"{parts[1]}-{parts[2]}, but lease #{lease.pk} is on property {property_id}, "
                f"unit {bldg}-{unit_code}. Enter only the ResiID of this unit's lease (the last "
                f"part of Property-Building-Unit-ResiID)."
            )
        note = f"{value} is the full eSite ID: took its last part, ResiID {resi}"
        value = resi
    elif len(parts) > 1:
        raise LinkRefused(
            f"{value!r} is not a ResiID: enter only the last part of eSite's "
            f"Property-Building-Unit-ResiID (for {property_id}-{bldg}-{unit_code}-21 enter 21)"
        )
    if not _RESI_ID.match(value):
        raise LinkRefused(f"{value!r} is not a ResiID (letters and digits only)")
    return value, note


def find_in_amsi(connection: Connection, key: tuple[str, str, str, str]) -> bool:
    """Whether AMSI lists this exact lease among current or notice residents."""
    settings = settings_for(connection)
    client = get_client(settings, key=connection.pk)
    property_id = key[0]
    for status in LEASE_STATUSES:
        query = edex(
            propertyid=property_id,
            leasestatus=status,
            includeprimaryaddress=0,
            includecontactdetails=0,
            includerecurringcharges=0,
        )
        try:
            for el in client.stream_leases("GetPropertyResidents", query):
                found = (
                    el.get("PropertyId", "").strip(),
                    el.get("BldgID", "").strip(),
                    el.get("UnitID", "").strip(),
                    el.get("ResiID", "").strip(),
                )
                if found == key:
                    return True
        except IntegrationError as err:
            if err.code == NO_DATA:
                continue
            raise
    return False


def link_lease(
    lease: Lease, typed: str, *, triggered_by: str = "", sync: bool = True
) -> LinkResult:
    """Verify the ResiID with AMSI for the lease's unit, save the link, then sync the lease."""
    lease = Lease.objects.select_related("unit__building__property").get(pk=lease.pk)
    connection = amsi_connection(lease)
    try:
        property_id = settings_for(connection).property_id
    except (IntegrationError, ProviderConfigurationError) as err:
        raise LinkRefused(f"the AMSI connection is not usable: {err}") from err
    resi, note = parse_resi_id(typed, lease, property_id)
    unit = lease.unit
    key = (property_id, unit.building.code, unit.code, resi)
    composite = "-".join(key)
    existing = AmsiLeaseLink.objects.filter(lease=lease).first()
    if existing is not None and existing.key != key:
        raise LinkRefused(f"lease #{lease.pk} is already linked to AMSI lease {existing.composite}")
    other = (
        AmsiLeaseLink.objects.filter(
            connection=connection,
            property_id=key[0],
            bldg_id=key[1],
            unit_id=key[2],
            resi_id=key[3],
        )
        .exclude(lease=lease)
        .first()
    )
    if other is not None:
        raise LinkRefused(f"AMSI lease {composite} is already linked to lease #{other.lease_id}")
    try:
        known = find_in_amsi(connection, key)
    except IntegrationError as err:
        raise LinkRefused(f"could not verify ResiID {resi} with AMSI: {mask(str(err))}") from err
    if not known:
        raise LinkRefused(f"AMSI has no lease with ResiID {resi} on unit {key[1]}-{key[2]}")
    if existing is None:
        try:
            with transaction.atomic():
                link = AmsiLeaseLink.objects.create(
                    connection=connection,
                    lease=lease,
                    property_id=key[0],
                    bldg_id=key[1],
                    unit_id=key[2],
                    resi_id=key[3],
                    linked_by_hand=True,
                )
        except IntegrityError as err:  # a concurrent link of the same lease or key
            raise LinkRefused(f"AMSI lease {composite} was linked meanwhile") from err
    else:
        link = existing
    run = None
    if sync:
        run = run_sync(connection, SyncKind.LEASE, lease_id=lease.pk, triggered_by=triggered_by)
        link.refresh_from_db()
    return LinkResult(link=link, note=note, run=run)
