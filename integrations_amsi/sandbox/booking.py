"""What every ledger write of the sandbox shares: money, ids under the variants, the reply's
outcome, and the batch and entry rows (books.py has the design note)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from lxml import etree

from .codes import DotNetFault, ErrorCode, SandboxError
from .edex import parse_int32
from .store import LeaseKey, Store, now
from .variants import defaults
from .xmlsafe import escape_text, local

CENT = Decimal("0.01")
REASONS = {"nsf": "NSF", "chargeback": "ChargeBack", "reverse": "Reverse"}
_RCODE = re.compile(r"\bR(\d{2})\b", re.IGNORECASE)


def parse_money(value: str, positive: bool) -> Decimal:
    """A decimal with at most two places; never a float."""
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError) as err:
        raise SandboxError(ErrorCode.INVALID_AMOUNT, repr(value)) from err
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise SandboxError(ErrorCode.INVALID_AMOUNT, repr(value))
    if positive and amount <= 0:
        raise SandboxError(ErrorCode.INVALID_AMOUNT, f"{value!r} is not positive")
    return amount.quantize(CENT)


def _digits(value: str) -> str:
    if not value or not value.isdigit() or not value.isascii():
        raise SandboxError(ErrorCode.INVALID_JNLNO, repr(value))
    return value


# -- identifiers (variant `ids`) -------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The variants a ledger call runs under (see sandbox/variants.py)."""

    values: Mapping[str, str] = field(default_factory=defaults)

    @property
    def int32(self) -> bool:
        return self.values.get("ids", "int32") == "int32"

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def _int32_fields(data: Mapping[str, str], required: tuple[str, ...], optional: tuple[str, ...]):
    """Parse the integer fields as .NET would, in the order the document gives them.

    A field that does not parse raises DotNetFault (the whole call becomes an HTTP 500 SOAP
    Fault before anything is written). `required` ones are parsed even when empty or absent
    (Int32.Parse("") is a FormatException); `optional` ones only when non-empty.
    Returns a copy with the parsed fields in their canonical form ("+007 " -> "7").
    """
    out = dict(data)
    names = [k for k in data if k in required or k in optional]
    names += [k for k in required if k not in data]
    for name in names:
        value = data.get(name, "")
        if name in optional and value == "":
            continue
        out[name] = str(parse_int32(value))
    return out


def parsed_items(
    items: list[Mapping[str, str]],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    rules: Rules,
) -> list[dict[str, str]]:
    """Each item of a call, its integer fields parsed under the ``ids`` variant: every item's
    ids are parsed before anything is booked (with int32, a bad one faults the whole call)."""
    return [_int32_fields(f, required, optional) if rules.int32 else dict(f) for f in items]


def lease_fields(key: LeaseKey) -> dict[str, str]:
    """An entry's lease columns."""
    return dict(zip(("property_id", "bldg_id", "unit_id", "resi_id"), key, strict=True))


def _positive_jnl(value: str, rules: Rules, what: str = "ClientJnlNo") -> str:
    """A batch number: int32 mode wants a positive int (already parsed), lenient digits only."""
    if rules.int32:
        if int(value) <= 0:
            raise SandboxError(ErrorCode.INVALID_JNLNO, f"{what} {value} is not positive")
        return value
    return _digits(value)


def _positive_txn(value: str, rules: Rules) -> str:
    if rules.int32 and int(value) <= 0:
        raise SandboxError(ErrorCode.INVALID_FIELD, f"ClientTransactionID {value} is not positive")
    if not value:
        raise SandboxError(ErrorCode.INVALID_FIELD, "ClientTransactionID is required")
    return value


def _same_merchant(sent: str, configured: str, rules: Rules) -> bool:
    """int32 mode compares numbers ("01001" is 1001) when the property's id is a number."""
    if rules.int32:
        try:
            return int(sent) == parse_int32(configured)
        except DotNetFault:  # a non-numeric configured id: compare as text
            return sent == configured
    return sent == configured


@dataclass
class Outcome:
    """What goes back for one payment/return/batch."""

    code: ErrorCode = ErrorCode.SUCCESS
    description: str = ""
    evolution_reference: str = ""
    reference_description: str = ""
    batch_no: str = ""
    bank_book: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def refused(cls, err: SandboxError) -> Outcome:
        out = cls(code=err.code, description=err.description)
        out.evolution_reference = err.extra.get("evolution_reference", "")
        out.batch_no = err.extra.get("batch_no", "")
        out.bank_book = err.extra.get("bank_book", "")
        return out

    def children(self, with_gl: bool = False, txn_id: str = "") -> str:
        parts = []
        if txn_id or with_gl:
            parts.append(f"<EvolutionTransactionID>{escape_text(txn_id)}</EvolutionTransactionID>")
        parts += [
            f"<ErrorCode>{int(self.code)}</ErrorCode>",
            f"<ErrorDescription>{escape_text(self.description)}</ErrorDescription>",
            f"<EvolutionReference>{escape_text(self.evolution_reference)}</EvolutionReference>",
            "<EvolutionReferenceDescription>"
            f"{escape_text(self.reference_description)}</EvolutionReferenceDescription>",
            "<AdditionalData>"
            f"<eSiteBatchNo>{escape_text(self.batch_no)}</eSiteBatchNo>"
            f"<eSiteBankBookID>{escape_text(self.bank_book)}</eSiteBankBookID>"
            "</AdditionalData>",
        ]
        if with_gl:
            parts.append("<xmlGL />")
        return "".join(parts)


# -- helpers on the open transaction --------------------------------------------------------


def _lease(c: sqlite3.Connection, key: LeaseKey) -> sqlite3.Row | None:
    return c.execute(
        "SELECT * FROM leases WHERE property_id=? AND bldg_id=? AND unit_id=? AND resi_id=?", key
    ).fetchone()


def _batch(c: sqlite3.Connection, property_id: str, jnl: str) -> sqlite3.Row | None:
    return c.execute(
        "SELECT * FROM batches WHERE property_id=? AND client_jnl_no=?", (property_id, jnl)
    ).fetchone()


def _open_batch(c: sqlite3.Connection, property_id: str, jnl: str, user: str) -> sqlite3.Row:
    """Find the batch for ClientJnlNo or open an External one; a settled batch reopens."""
    row = _batch(c, property_id, jnl)
    if row is None:
        bank = c.execute(
            "SELECT bank_book FROM properties WHERE property_id=?", (property_id,)
        ).fetchone()[0]
        c.execute(
            "INSERT INTO batches (property_id, client_jnl_no, batch_type, bank_book, created_on, "
            "created_by) VALUES (?,?,?,?,?,?)",
            (property_id, jnl, "X", bank, now(), user),
        )
    elif row["settled"]:
        c.execute("UPDATE batches SET settled=0 WHERE batch_no=?", (row["batch_no"],))
    return _batch(c, property_id, jnl)


def batch_total(c: sqlite3.Connection, batch_no: int) -> Decimal:
    return sum(
        (
            Decimal(r[0])
            for r in c.execute("SELECT amount FROM entries WHERE batch_no=?", (batch_no,))
        ),
        Decimal("0.00"),
    )


def _insert_entry(c: sqlite3.Connection, batch: sqlite3.Row, **values: str) -> str:
    values["batch_no"] = batch["batch_no"]
    values["client_jnl_no"] = batch["client_jnl_no"]
    values["created_at"] = now()
    cols = ",".join(values)
    cur = c.execute(
        f"INSERT INTO entries ({cols}) VALUES ({','.join('?' * len(values))})",
        tuple(values.values()),
    )
    ref = str(cur.lastrowid)
    c.execute("UPDATE entries SET evolution_reference=? WHERE entry_id=?", (ref, cur.lastrowid))
    return ref


def _move_balance(c: sqlite3.Connection, key: LeaseKey, amount: Decimal) -> None:
    """A payment lowers the lease's EndBalance; a reversal raises it again."""
    row = _lease(c, key)
    attrs = dict(json.loads(row["attrs"]))
    try:
        balance = Decimal(attrs.get("EndBalance", ""))
    except InvalidOperation:
        return
    new = balance - amount
    attrs["EndBalance"] = format(new.normalize() if new == new.to_integral() else new, "f")
    Store.write_attrs(c, key, attrs)


def _duplicate(c: sqlite3.Connection, txn_id: str) -> sqlite3.Row | None:
    return c.execute(
        "SELECT e.evolution_reference, e.batch_no, b.bank_book FROM entries e JOIN batches b "
        "ON b.batch_no=e.batch_no WHERE e.client_transaction_id=? AND e.original_transaction_id='' "
        "ORDER BY e.entry_id LIMIT 1",
        (txn_id,),
    ).fetchone()


def _echo(el: etree._Element) -> str:
    return "".join(
        f"<{local(c.tag)}>{escape_text(c.text or '')}</{local(c.tag)}>" for c in el if local(c.tag)
    )


def _payments(root: etree._Element) -> list[etree._Element]:
    if local(root.tag).lower() == "payment":
        return [root]
    found = [el for el in root.iter() if local(el.tag).lower() == "payment"]
    if not found:
        raise SandboxError(ErrorCode.MALFORMED_XMLDATA, "no <Payment> element")
    return found
