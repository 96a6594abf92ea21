"""The AMSI provider's lease-link hooks: read a typed ResiID, and check it with eSite.

The sequence (refusals, saving the link, the lease sync) is the framework's
(``integrations.linking``); these hooks only know eSite's ids.

Design notes:
- Property managers are told to give only the ResiID, the last part of eSite's Rent Roll ID
  ``Property-Building-Unit-ResiID``. People still paste the whole composite; we take its last
  part when the first three parts are this lease's property, building and unit (and say what we
  took), and refuse with both units named when they are not.
- A ResiID is unique only within a unit, so the ResiID is verified with eSite *for the lease's
  unit*: the current and notice resident lists are streamed and the exact
  (PropertyId, BldgID, UnitID, ResiID) is looked for.
"""

from __future__ import annotations

import re

from integrations.exceptions import IntegrationError, LinkRefused
from rentplatform.models import Lease

from .errors import NO_DATA
from .importer import LEASE_STATUSES
from .xmldocs import edex

_RESI_ID = re.compile(r"^[A-Za-z0-9]{1,20}$")

Key = tuple[str, str, str, str]


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


class AmsiLinking:
    """The link hooks of ``AmsiProvider`` (which supplies ``client``, ``settings`` and
    ``system_name``)."""

    links_leases = True
    link_label = "AMSI ResiID"
    link_help = (
        "Only the last part of eSite's Property-Building-Unit-ResiID (for 001-01-101-21 enter "
        "21). A ResiID is unique only within a unit: it is checked with eSite for this lease's "
        "unit before anything is saved."
    )

    def lease_key(self, lease: Lease, text: str) -> tuple[Key, str]:
        property_id = self.settings.property_id
        resi, note = parse_resi_id(text, lease, property_id)
        unit = lease.unit
        return (property_id, unit.building.code, unit.code, resi), note

    def verify_lease_key(self, lease: Lease, key: Key) -> None:
        if not self.lists_lease(key):
            raise LinkRefused(
                f"{self.system_name} has no lease with ResiID {key[3]} on unit {key[1]}-{key[2]}"
            )

    def lists_lease(self, key: Key) -> bool:
        """Whether eSite lists this exact lease among current or notice residents."""
        for status in LEASE_STATUSES:
            query = edex(
                propertyid=key[0],
                leasestatus=status,
                includeprimaryaddress=0,
                includecontactdetails=0,
                includerecurringcharges=0,
            )
            try:
                for el in self.client.stream_leases("GetPropertyResidents", query):
                    found = tuple(
                        el.get(name, "").strip()
                        for name in ("PropertyId", "BldgID", "UnitID", "ResiID")
                    )
                    if found == key:
                        return True
            except IntegrationError as err:
                if err.code == NO_DATA:
                    continue
                raise
        return False
