"""eSite records -> plain records -> the platform's fields.

Parsing is separate from writing so a bad record is reported with its ids and skipped before
anything is written, and so a dry run can describe changes without touching the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from lxml import etree

from .xmldocs import local

# CreditStatus wire codes: N Normal, C No Checks; H Hold and R Restricted (inferred).
CREDIT_STATUS_TEXT = {"N": "Normal", "C": "No Checks", "H": "Hold", "R": "Restricted"}
# ResponsibleFlag: "Responsible", "Non-Responsible", "G" (guarantor: financially responsible).
RESPONSIBLE_FLAGS = {"responsible", "g", "guarantor", "y"}
# occustatuscode: C current and N notice are the leases residents pay on (the only statuses
# production clients read). Any other code (the delta query returns every status; the amsi gem
# lists A I L P T V X) is kept with its code but blocked; an empty code counts as current.
LEASE_STATUS = {"C": "active", "N": "notice"}


class BadRecord(ValueError):
    def __init__(self, record: str, message: str):
        super().__init__(f"{record}: {message}")
        self.record = record
        self.message = message


@dataclass
class OccupantRecord:
    seq: str
    first_name: str
    last_name: str
    email: str
    phone: str
    responsible_flag: str

    @property
    def responsible(self) -> bool:
        return self.responsible_flag.strip().lower() in RESPONSIBLE_FLAGS


@dataclass
class LeaseRecord:
    property_id: str
    bldg_id: str
    unit_id: str
    resi_id: str
    name: str
    status_code: str
    balance: Decimal | None
    start_date: dt.date | None
    end_date: dt.date | None
    credit_status: str
    block_payment_access: bool
    block_all_access: bool
    external_reference: str
    occupants: list[OccupantRecord] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.property_id, self.bldg_id, self.unit_id, self.resi_id)

    @property
    def composite(self) -> str:
        return "-".join(self.key)

    @property
    def payable(self) -> bool:
        """Current or on notice in AMSI: the only leases residents may pay on."""
        return not self.status_code or self.status_code.upper() in LEASE_STATUS

    @property
    def lease_status(self) -> str:
        """The platform status; "" for another AMSI status: leave the lease's status as it is
        (such a lease is blocked by access(), never deactivated by its code alone)."""
        if not self.status_code:
            return "active"
        return LEASE_STATUS.get(self.status_code.upper(), "")

    def access(self) -> tuple[str, str]:
        """(payment access, reason) as AMSI sees it; the stricter rule wins."""
        status = self.credit_status.upper()
        if self.block_payment_access:
            return "blocked", "Block Payment Access is set in AMSI"
        if not self.payable:
            text = self.raw.get("occustatuscodedescription", "").strip()
            named = f"{self.status_code} ({text})" if text else self.status_code
            return "blocked", f"lease status {named} in AMSI: neither current nor on notice"[:200]
        if status in ("H", "R"):
            return "blocked", f"credit status {CREDIT_STATUS_TEXT[status]} in AMSI"
        if status == "C":
            return "cards_only", "credit status No Checks in AMSI"
        return "allowed", ""

    def digest(self) -> str:
        # Every mapped field derives from the lease's raw attributes and its occupants, so
        # hashing those is enough. Built by hand: dataclasses.asdict() + json.dumps cost more
        # than the whole parse on a 100,000-lease import (see docs/performance.md).
        parts = [f"{k}\x1f{v}" for k, v in sorted(self.raw.items())]
        for o in self.occupants:
            parts.append(
                "\x1e".join(
                    (o.seq, o.first_name, o.last_name, o.email, o.phone, o.responsible_flag)
                )
            )
        return hashlib.sha1("\x1d".join(parts).encode(), usedforsecurity=False).hexdigest()


def _date(value: str | None, record: str, name: str) -> dt.date | None:
    if not value or not value.strip():
        return None
    text = value.strip()
    # Fast path for eSite's two usual shapes (strptime is slow on 100,000 leases).
    try:
        if len(text) == 10 and text[2] == "/" and text[5] == "/":
            return dt.date(int(text[6:]), int(text[:2]), int(text[3:5]))
        if len(text) == 19 and text[4] == "-" and text[10] == "T":
            return dt.date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        pass  # not a real date: the formats below say so
    for fmt in ("%m/%d/%Y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise BadRecord(record, f"{name} {value!r} is not a date (MM/DD/YYYY or YYYY-MM-DD)")


def _amount(value: str | None, record: str, name: str) -> Decimal | None:
    if value is None or not value.strip():
        return None
    if not value.isascii():
        # Decimal() reads other scripts' digits: "١٢٣" would import as 123.00.
        raise BadRecord(record, f"{name} {value!r} is not an amount")
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise BadRecord(record, f"{name} {value!r} is not an amount") from None
    if not amount.is_finite() or abs(amount) >= Decimal("1e10"):
        raise BadRecord(record, f"{name} {value!r} is not an amount")
    return amount.quantize(Decimal("0.01"))


def _phone(value: str | None) -> str:
    digits = "".join(ch for ch in (value or "") if ch.isdigit())
    return value.strip() if digits else ""  # "(   )    -" is eSite's empty phone


def _yes(value: str | None) -> bool:
    return (value or "").strip().upper() in ("Y", "YES", "1", "TRUE")


def lease_record(el: etree._Element) -> LeaseRecord:
    a = el.attrib
    ids = [a.get(n, "").strip() for n in ("PropertyId", "BldgID", "UnitID", "ResiID")]
    record = "-".join(i or "?" for i in ids)
    if not all(ids):
        missing = [
            n
            for n, v in zip(("PropertyId", "BldgID", "UnitID", "ResiID"), ids, strict=True)
            if not v
        ]
        raise BadRecord(record, f"lease without {', '.join(missing)}")
    occupants = []
    for child in el:
        if local(child.tag) != "Occupant":
            continue
        c = child.attrib
        seq = c.get("OccuSeqNo", "").strip()
        if not seq:
            raise BadRecord(record, "occupant without OccuSeqNo")
        occupants.append(
            OccupantRecord(
                seq=seq,
                first_name=c.get("OccuFirstName", "").strip()[:100],
                last_name=c.get("OccuLastName", "").strip()[:100],
                email=c.get("Email", "").strip()[:254],
                phone=_phone(c.get("Phone1No"))[:40],
                responsible_flag=c.get("ResponsibleFlag", "").strip(),
            )
        )
    return LeaseRecord(
        property_id=ids[0],
        bldg_id=ids[1],
        unit_id=ids[2],
        resi_id=ids[3],
        name=a.get("Name", "").strip(),
        status_code=(a.get("occustatuscode") or a.get("OccuStatusCode") or "").strip(),
        balance=_amount(a.get("EndBalance"), record, "EndBalance"),
        start_date=_date(a.get("leasebegindate"), record, "leasebegindate"),
        end_date=_date(a.get("leaseenddate"), record, "leaseenddate"),
        credit_status=(a.get("CreditStatus") or "N").strip().upper(),
        block_payment_access=_yes(a.get("BlockPaymentAccess")),
        block_all_access=_yes(a.get("BlockAllAccess")),
        external_reference=a.get("ExternalReferenceID", "").strip()[:40],
        occupants=occupants,
        raw=dict(a),
    )


@dataclass
class UnitRecord:
    bldg_id: str
    unit_id: str
    unit_type: str
    address: str


def unit_record(el: etree._Element) -> UnitRecord:
    a = el.attrib
    bldg, unit = a.get("BldgId", "").strip(), a.get("UnitId", "").strip()
    if not bldg or not unit:
        raise BadRecord(
            f"{a.get('PropertyId', '?')}-{bldg or '?'}-{unit or '?'}", "unit without ids"
        )
    address = ", ".join(
        p
        for p in (a.get("address1", ""), a.get("city", ""), a.get("state", ""), a.get("zip", ""))
        if p
    )
    return UnitRecord(bldg, unit, a.get("UnitType", "").strip()[:40], address[:300])
