"""What a provider hands the framework when it imports: plain records, no models.

A provider reads its system and maps each remote record to one of these (django-allauth's
``extract_uid`` / ``extract_common_fields`` split: the provider extracts, the framework builds
the models). ``integrations.importing`` compares them with what is stored, writes the host's
units, leases and residents through ``rentplatform.services.imports`` and the provider's link
rows, and counts everything on the SyncRun. A record the provider cannot map raises
``BadRecord`` naming it; the run reports it and imports the rest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rentplatform.models import PaymentAccess


class BadRecord(ValueError):
    """A remote record that cannot be imported; ``record`` names it as a person would."""

    def __init__(self, record: str, message: str):
        super().__init__(f"{record}: {message}")
        self.record = record
        self.message = message


@dataclass
class UnitRecord:
    """A unit the remote lists: the host's building and unit codes, and its details."""

    building: str
    unit: str
    unit_type: str = ""
    address: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.building, self.unit)


@dataclass
class OccupantRecord:
    """A person on a remote lease.

    ``key`` identifies the person within the lease on the remote side; ``link_fields`` are the
    provider's own columns on its occupant link model (by field name).
    """

    key: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    responsible: bool = True  # may pay on the lease
    link_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def person(self) -> dict[str, str]:
        """The host Resident's fields."""
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "phone": self.phone,
        }


@dataclass
class LeaseRecord:
    """A remote lease, mapped.

    ``key`` is the remote identity in the order of the link model's ``key_fields``;
    ``building``/``unit`` place it in the host. ``status`` is a ``LeaseStatus`` value, or "" to
    leave the host's status as it is. ``payable`` says the remote lists it as a lease residents
    pay on (only such a listing reactivates a link the framework marked inactive). ``access``
    is the remote's view of payment access (a ``PaymentAccess`` value) with its reason.
    ``link_fields`` are the provider's own columns on its lease link model; ``raw`` is the
    remote record as received (kept on the link, hashed for change detection).
    """

    key: tuple[str, ...]
    building: str
    unit: str
    status: str = ""
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    balance: Decimal | None = None
    access: str = PaymentAccess.ALLOWED
    access_reason: str = ""
    payable: bool = True
    link_fields: dict[str, Any] = field(default_factory=dict)
    occupants: list[OccupantRecord] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a person names the lease: its remote identity, dash-joined."""
        return "-".join(self.key)

    def lease_values(self, current_status: str = "") -> dict:
        """The host lease's fields this record sets."""
        return {
            "status": self.status or current_status,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "balance": self.balance,
        }

    def digest(self) -> str:
        """A digest of everything the record maps from: the raw remote record and its
        occupants. An unchanged lease has the same digest, so a resync writes nothing for it.

        Built by hand: dataclasses.asdict() + json.dumps cost more than the whole parse on a
        100,000-lease import (docs/performance.md).
        """
        parts = [f"{k}\x1f{v}" for k, v in sorted(self.raw.items())]
        for o in self.occupants:
            values = (o.key, o.first_name, o.last_name, o.email, o.phone)
            parts.append("\x1e".join((*values, *(str(v) for v in o.link_fields.values()))))
        return hashlib.sha1("\x1d".join(parts).encode(), usedforsecurity=False).hexdigest()
