"""Leasing reads: properties, units, residents and the delta query, in eSite's own shapes.

Variants: `empty_list` (nothing to return: error document or empty root) and `property_list`
(GetPropertyList items with attributes or child elements).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from lxml import etree

from .codes import ErrorCode, SandboxError
from .edex import fields, flag
from .store import Store
from .variants import defaults
from .xmlsafe import escape_text, start_tag


class NoData(SandboxError):
    """Nothing to return: an error document, or (empty_list=empty) the empty result root."""

    def __init__(self, root: str, detail: str = "") -> None:
        super().__init__(ErrorCode.NO_DATA, detail)
        self.root = root


_DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y %H:%M:%S")


def _property(store: Store, params: dict[str, str]) -> str:
    pid = params.get("propertyid", "")
    if not pid or store.get_property(pid) is None:
        raise SandboxError(ErrorCode.UNKNOWN_PROPERTY, pid)
    return pid


_PROPERTY_FIELDS = (
    ("PropertyId", "property_id"),
    ("PropertyName", "name"),
    ("ClientMerchantID", "client_merchant_id"),
)


def get_property_list(store: Store, params: dict[str, str], elements: bool = False) -> str:
    with store.read() as c:
        rows = c.execute("SELECT * FROM properties ORDER BY property_id").fetchall()
    if not rows:
        raise NoData("Properties")
    if elements:
        items = "".join(
            "<Property>"
            + "".join(f"<{tag}>{escape_text(r[col])}</{tag}>" for tag, col in _PROPERTY_FIELDS)
            + "</Property>"
            for r in rows
        )
    else:
        items = "".join(
            start_tag("Property", [(tag, r[col]) for tag, col in _PROPERTY_FIELDS], close=True)
            for r in rows
        )
    return f"<Properties>{items}</Properties>"


def get_property_units(store: Store, params: dict[str, str]) -> str:
    pid = _property(store, params)
    sql = "SELECT xml FROM units WHERE property_id=?"
    if not flag(params.get("includeallstatuses"), default=False):
        sql += " AND inactive != 'Y'"
    with store.read() as c:
        rows = [r[0] for r in c.execute(sql + " ORDER BY seq", (pid,))]
    if not rows:
        raise NoData("PropertyUnits", f"no units for property {pid}")
    return "<PropertyUnits>" + "".join(rows) + "</PropertyUnits>"


def _lease_parts(rows: Iterator, address: bool, contact: bool, recurring: bool) -> Iterator[str]:
    for head, main, addr, addr_nc, rec in rows:
        yield head
        yield main
        if address:
            yield addr if contact else addr_nc
        if recurring:
            yield rec
        yield "</Lease>"


def _leases(store: Store, params: dict[str, str], where: str, args: tuple) -> str:
    address = flag(params.get("includeprimaryaddress"))
    contact = flag(params.get("includecontactdetails"))
    recurring = flag(params.get("includerecurringcharges"))
    sql = (
        "SELECT head, main_xml, address_xml, address_nocontact_xml, recurring_xml FROM leases "
        f"WHERE {where} ORDER BY seq"
    )
    with store.read() as c:
        rows = c.execute(sql, args).fetchall()
    if not rows:
        raise NoData("PropertyResidents", "no leases match")
    return (
        "<PropertyResidents>"
        + "".join(_lease_parts(iter(rows), address, contact, recurring))
        + "</PropertyResidents>"
    )


def get_property_residents(store: Store, params: dict[str, str]) -> str:
    pid = _property(store, params)
    status = params.get("leasestatus", "")
    if status:
        codes = tuple(s.strip() for s in status.split(",") if s.strip())
        marks = ",".join("?" * len(codes))
        return _leases(
            store, params, f"property_id=? AND occustatuscode IN ({marks})", (pid, *codes)
        )
    return _leases(store, params, "property_id=?", (pid,))


def _parse_date(value: str, end: bool) -> str | None:
    """A range bound as an ISO string; a date-only `to` bound covers its whole day."""
    value = value.strip()
    if not value:
        return None
    for fmt in _DATE_FORMATS:
        try:
            moment = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if end and fmt in ("%m/%d/%Y", "%Y-%m-%d"):
            moment += timedelta(days=1) - timedelta(microseconds=1)
        return moment.isoformat(timespec="microseconds")
    raise SandboxError(ErrorCode.INVALID_FIELD, f"bad date {value!r} (MM/DD/YYYY expected)")


def get_residents_by_change(store: Store, params: dict[str, str], transactions: bool = True) -> str:
    """Leases whose status/block/credit status changed, or whose ledger moved, in the ranges."""
    pid = _property(store, params)
    s_from = _parse_date(params.get("statuschangedatefrom", ""), end=False)
    s_to = _parse_date(params.get("statuschangedateto", ""), end=True)
    t_from = _parse_date(params.get("transactiondatefrom", ""), end=False)
    t_to = _parse_date(params.get("transactiondateto", ""), end=True)
    clauses: list[str] = []
    args: list[str] = [pid]
    # Each range is one subquery evaluated once (row-value IN), not a correlated EXISTS per
    # lease: 100,000 leases are then answered in well under a second.
    key = "(property_id, bldg_id, unit_id, resi_id)"
    if s_from or s_to:
        clauses.append(
            f"{key} IN (SELECT property_id, bldg_id, unit_id, resi_id FROM status_changes "
            "WHERE property_id=? AND changed_at BETWEEN ? AND ?)"
        )
        args += [pid, s_from or "0000", s_to or "9999"]
    if transactions and (t_from or t_to):
        clauses.append(
            f"{key} IN (SELECT property_id, bldg_id, unit_id, resi_id FROM entries "
            "WHERE property_id=? AND created_at BETWEEN ? AND ?)"
        )
        args += [pid, t_from or "0000", t_to or "9999"]
    if not clauses:
        raise SandboxError(
            ErrorCode.INVALID_FIELD, "give a status change or transaction date range"
        )
    return _leases(store, params, f"property_id=? AND ({' OR '.join(clauses)})", tuple(args))


def _dispatch(store: Store, operation: str, params: dict[str, str], variants: Mapping) -> str:
    if operation == "GetPropertyList":
        return get_property_list(store, params, elements=variants["property_list"] == "elements")
    if operation == "GetPropertyUnits":
        return get_property_units(store, params)
    if operation == "GetPropertyResidents":
        return get_property_residents(store, params)
    if operation == "GetResidentsByStatusChangeOrTransactionDate":
        return get_residents_by_change(store, params)
    if operation == "GetResidentsByStatusChange":
        return get_residents_by_change(store, params, transactions=False)
    raise SandboxError(ErrorCode.NOT_SUPPORTED, operation)


def handle(
    store: Store, operation: str, root: etree._Element, variants: Mapping[str, str] | None = None
) -> str:
    values = {**defaults(), **(variants or {})}
    try:
        return _dispatch(store, operation, fields(root), values)
    except NoData as empty:
        if values["empty_list"] == "empty":
            return f"<{empty.root}/>"
        raise
