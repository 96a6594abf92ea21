"""eSite records -> the framework's plain records (integrations.records).

Parsing is separate from writing so a bad record is reported with its ids and skipped before
anything is written, and so a dry run can describe changes without touching the database. A
lease's remote identity is (PropertyId, BldgID, UnitID, ResiID): a ResiID is unique only within
a unit.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from lxml import etree

from integrations.records import BadRecord, LeaseRecord, OccupantRecord, UnitRecord
from rentplatform.models import LeaseStatus, PaymentAccess

from .xmldocs import local

__all__ = ["BadRecord", "lease_record", "unit_record"]

# CreditStatus wire codes: N Normal, C No Checks; H Hold and R Restricted (inferred).
CREDIT_STATUS_TEXT = {"N": "Normal", "C": "No Checks", "H": "Hold", "R": "Restricted"}
# ResponsibleFlag: "Responsible", "Non-Responsible", "G" (in the captured sample; its meaning is
# not known, a guarantor is our guess): G counts as responsible, so that occupant may pay.
RESPONSIBLE_FLAGS = {"responsible", "g", "guarantor", "y"}
# occustatuscode: C current and N notice are the leases residents pay on (the only statuses
# production clients read). Any other code (the delta query takes no status, so it may return
# any; the amsi gem lists A I L P T V X) is kept with its code but blocked; an empty code
# counts as current.
LEASE_STATUS = {"C": LeaseStatus.ACTIVE, "N": LeaseStatus.NOTICE}


def _occupant_responsible(flag: str) -> bool:
    return flag.strip().lower() in RESPONSIBLE_FLAGS


def _access(a, status_code: str, payable: bool, credit_status: str) -> tuple[str, str]:
    """(payment access, reason) as AMSI sees it; the stricter rule wins."""
    if _yes(a.get("BlockPaymentAccess")):
        return PaymentAccess.BLOCKED, "Block Payment Access is set in AMSI"
    if not payable:
        text = a.get("occustatuscodedescription", "").strip()
        named = f"{status_code} ({text})" if text else status_code
        reason = f"lease status {named} in AMSI: neither current nor on notice"
        return PaymentAccess.BLOCKED, reason[:200]
    said = (a.get("CreditStatusDescription") or "").strip()  # eSite's own name for the code
    if credit_status in ("H", "R"):
        # The letters are inferred (only N and C were seen): eSite's own name where it sends one.
        guess = f"{credit_status} in AMSI (read as {CREDIT_STATUS_TEXT[credit_status]})"
        return PaymentAccess.BLOCKED, f"credit status {f'{said} in AMSI' if said else guess}"[:200]
    if credit_status == "C":
        return PaymentAccess.CARDS_ONLY, "credit status No Checks in AMSI"
    if credit_status != "N":
        # Only N and C are seen on the wire (H and R are inferred): a code this integration
        # does not know might be a Hold under another letter, so it blocks, and says so.
        reason = (
            f"credit status {credit_status!r}{f' ({said})' if said else ''} in AMSI: a code "
            "this integration does not know "
            "(N Normal, C No Checks, H Hold, R Restricted), so payments wait until someone "
            "checks the lease in eSite"
        )
        return PaymentAccess.BLOCKED, reason[:200]
    return PaymentAccess.ALLOWED, ""


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
    """A <Lease> of GetPropertyResidents (or the delta query) as the framework's record."""
    a = dict(el.attrib)  # read once: a dict's get is several times cheaper than lxml's
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
        c = dict(child.attrib)
        seq = c.get("OccuSeqNo", "").strip()
        if not seq:
            raise BadRecord(record, "occupant without OccuSeqNo")
        flag = c.get("ResponsibleFlag", "").strip()
        occupants.append(
            OccupantRecord(
                key=seq,
                first_name=c.get("OccuFirstName", "").strip()[:100],
                last_name=c.get("OccuLastName", "").strip()[:100],
                email=c.get("Email", "").strip()[:254],
                phone=_phone(c.get("Phone1No"))[:40],
                responsible=_occupant_responsible(flag),
                link_fields={"responsible_flag": flag},
            )
        )
    status_code = (a.get("occustatuscode") or a.get("OccuStatusCode") or "").strip()
    # Current or on notice (or no code: current) are the leases residents may pay on; another
    # code is kept on the link and blocked, and leaves the lease's status as it is.
    payable = not status_code or status_code.upper() in LEASE_STATUS
    status = LEASE_STATUS.get(status_code.upper(), "") if status_code else LeaseStatus.ACTIVE
    credit_status = (a.get("CreditStatus") or "N").strip().upper()
    access, reason = _access(a, status_code, payable, credit_status)
    return LeaseRecord(
        key=tuple(ids),
        building=ids[1],
        unit=ids[2],
        status=status,
        start_date=_date(a.get("leasebegindate"), record, "leasebegindate"),
        end_date=_date(a.get("leaseenddate"), record, "leaseenddate"),
        balance=_amount(a.get("EndBalance"), record, "EndBalance"),
        access=access,
        access_reason=reason,
        payable=payable,
        link_fields={
            "credit_status": credit_status,
            "block_payment_access": _yes(a.get("BlockPaymentAccess")),
            "block_all_access": _yes(a.get("BlockAllAccess")),
            "external_reference": a.get("ExternalReferenceID", "").strip()[:40],
        },
        occupants=occupants,
        raw=a,
    )


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
