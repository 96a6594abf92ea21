"""Ledger writes booked the way eSite books them.

Design note: the first payment with a new ClientJnlNo opens an External ("X") cash batch
created by the eDex user; reversals are negative payments (CHARGE BACK, REFUNDED, VOIDED) or
Returns (NSF, counted on the lease); a batch is approved only when the settlement amount equals
its total (or, for a batch with a negative total, its absolute value). Each call validates
everything first, then writes in one transaction; `preliminary=1` stops after validation.
Where real eSite's behaviour is unknown the `variants` (sandbox/variants.py) pick one.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

from .codes import DotNetFault, ErrorCode, SandboxError
from .edex import fields, parse_int32
from .store import LeaseKey, Store, now
from .variants import defaults
from .xmlsafe import escape_text, local, start_tag

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


# -- AddPayment -----------------------------------------------------------------------------


def _add_one(
    store: Store, user: str, attrs: dict[str, str], preliminary: bool, rules: Rules
) -> Outcome:
    for name in ("PropertyID", "BldgID", "UnitID", "ResiID", "ClientTransactionID", "PaymentType"):
        if not attrs.get(name, "").strip():
            raise SandboxError(ErrorCode.INVALID_FIELD, f"{name} is required")
    txn_id = _positive_txn(attrs["ClientTransactionID"].strip(), rules)
    amount = parse_money(attrs.get("Amount", ""), positive=True)
    jnl = _positive_jnl(attrs.get("ClientJnlNo", "").strip(), rules)
    ptype = attrs["PaymentType"].strip().upper()
    if ptype not in ("P", "C"):
        raise SandboxError(ErrorCode.INVALID_FIELD, f"PaymentType {ptype!r} (P or C)")
    txn_date = attrs.get("ClientTransactionDate", "").strip()
    if txn_date:
        try:
            datetime.strptime(txn_date, "%m/%d/%Y")
        except ValueError as err:
            raise SandboxError(
                ErrorCode.INVALID_FIELD, f"ClientTransactionDate {txn_date!r} (MM/DD/YYYY)"
            ) from err
    key: LeaseKey = (attrs["PropertyID"], attrs["BldgID"], attrs["UnitID"], attrs["ResiID"])
    with store.tx() as c:
        dup = _duplicate(c, txn_id) if rules["duplicates"] == "refuse" else None
        if dup is not None:
            raise SandboxError(
                ErrorCode.DUPLICATE_TRANSACTION,
                txn_id,
                evolution_reference=dup["evolution_reference"],
                batch_no=str(dup["batch_no"]),
                bank_book=dup["bank_book"],
            )
        prop = c.execute("SELECT * FROM properties WHERE property_id=?", (key[0],)).fetchone()
        if prop is None:
            raise SandboxError(ErrorCode.UNKNOWN_PROPERTY, key[0])
        merchant = attrs.get("ClientMerchantID", "").strip()
        configured = prop["client_merchant_id"]
        if merchant and configured and not _same_merchant(merchant, configured, rules):
            raise SandboxError(ErrorCode.MERCHANT_MISMATCH, merchant)
        lease = _lease(c, key)
        if lease is None:
            raise SandboxError(ErrorCode.UNKNOWN_LEASE, "-".join(key))
        if lease["block_payment"].upper() == "Y":
            raise SandboxError(ErrorCode.PAYMENT_ACCESS_BLOCKED, "-".join(key))
        if lease["credit_status"].upper() in ("H", "R"):
            raise SandboxError(ErrorCode.CREDIT_STATUS_HOLD, lease["credit_status"])
        if lease["credit_status"].upper() == "C" and ptype == "C":
            raise SandboxError(ErrorCode.NO_CHECKS, "-".join(key))
        if preliminary:
            existing = _batch(c, key[0], jnl)
            return Outcome(
                reference_description="Preliminary: validated, nothing written",
                batch_no=str(existing["batch_no"]) if existing else "",
                bank_book=existing["bank_book"] if existing else prop["bank_book"],
            )
        batch = _open_batch(c, key[0], jnl, user)
        ref = _insert_entry(
            c,
            batch,
            property_id=key[0],
            bldg_id=key[1],
            unit_id=key[2],
            resi_id=key[3],
            entry_type="Payment",
            reason="",
            amount=str(amount),
            client_transaction_id=txn_id,
            payment_type=ptype,
            description=attrs.get("Description", ""),
            client_transaction_date=txn_date,
            client_merchant_id=merchant,
            check_no=attrs.get("CheckNo", ""),
            charge_inc_code=attrs.get("ChargeIncCode", ""),
        )
        _move_balance(c, key, amount)
    return Outcome(
        evolution_reference=ref,
        reference_description=f"Receipt {ref} posted to batch {batch['batch_no']}",
        batch_no=str(batch["batch_no"]),
        bank_book=batch["bank_book"],
    )


def _payments(root: etree._Element) -> list[etree._Element]:
    if local(root.tag).lower() == "payment":
        return [root]
    found = [el for el in root.iter() if local(el.tag).lower() == "payment"]
    if not found:
        raise SandboxError(ErrorCode.MALFORMED_XMLDATA, "no <Payment> element")
    return found


_ADD_INTS = ("ClientJnlNo", "ClientTransactionID")
_ADD_OPTIONAL_INTS = ("ClientMerchantID",)


def add_payment(
    store: Store, user: str, root: etree._Element, preliminary: bool, rules: Rules
) -> str:
    sent = [dict(el.attrib) for el in _payments(root)]
    # int32: every payment's ids are parsed before anything is booked (a bad one faults the call)
    parsed = [
        _int32_fields(attrs, _ADD_INTS, _ADD_OPTIONAL_INTS) if rules.int32 else attrs
        for attrs in sent
    ]
    out = []
    for attrs, values in zip(sent, parsed, strict=True):
        try:
            outcome = _add_one(store, user, values, preliminary, rules)
        except SandboxError as err:
            outcome = Outcome.refused(err)
        out.append(start_tag("Payment", attrs) + outcome.children() + "</Payment>")
    return "<Payments>" + "".join(out) + "</Payments>"


# -- ReturnPayment --------------------------------------------------------------------------


def _reverse_reason(description: str) -> str:
    text = description.lower()
    if "void" in text or "cancel" in text:
        return "VOIDED"
    return "REFUNDED"


def _return_one(
    store: Store, user: str, f: dict[str, str], preliminary: bool, rules: Rules
) -> tuple[Outcome, str]:
    txn_id = _positive_txn(f.get("clienttransactionid", ""), rules)
    reason = REASONS.get(f.get("reason", "").replace(" ", "").lower())
    if reason is None:
        raise SandboxError(ErrorCode.INVALID_REASON, repr(f.get("reason", "")))
    jnl_given = f.get("clientjnlno", "")
    if jnl_given:
        _positive_jnl(jnl_given, rules)
    amount_given = f.get("amount", "")
    sent_amount = parse_money(amount_given, positive=False) if amount_given else None
    description = f.get("description", "")
    with store.tx() as c:
        payments = c.execute(
            "SELECT * FROM entries WHERE client_transaction_id=? AND original_transaction_id='' "
            "AND entry_type='Payment' ORDER BY entry_id",
            (txn_id,),
        ).fetchall()
        if not payments:
            raise SandboxError(ErrorCode.UNKNOWN_TRANSACTION, txn_id)
        returned = c.execute(
            "SELECT e.evolution_reference, e.batch_no, b.bank_book FROM entries e JOIN batches b "
            "ON b.batch_no=e.batch_no WHERE e.original_transaction_id=? ORDER BY e.entry_id",
            (txn_id,),
        ).fetchall()
        if len(returned) >= len(payments):
            prior = returned[0] if len(payments) == 1 else returned[-1]
            raise SandboxError(
                ErrorCode.ALREADY_RETURNED,
                txn_id,
                evolution_reference=prior["evolution_reference"],
                batch_no=str(prior["batch_no"]),
                bank_book=prior["bank_book"],
            )
        # duplicates=accept can book one id twice: the first un-returned payment goes back
        orig = payments[len(returned)]
        original_amount = Decimal(orig["amount"])
        if sent_amount is not None and sent_amount not in (original_amount, -original_amount):
            raise SandboxError(
                ErrorCode.INVALID_AMOUNT,
                f"Amount {sent_amount} is not the payment's {original_amount} "
                "(a return reverses the whole payment)",
            )
        key: LeaseKey = (orig["property_id"], orig["bldg_id"], orig["unit_id"], orig["resi_id"])
        named = jnl_given or orig["client_jnl_no"]
        jnl = named
        named_batch = _batch(c, key[0], named)
        if named_batch is not None and named_batch["settled"]:
            if rules["return_batch"] == "separate":
                # after deposit: a batch of its own, external number = the transaction id
                jnl = txn_id
        if preliminary:
            existing = _batch(c, key[0], jnl)
            return (
                Outcome(
                    reference_description="Preliminary: validated, nothing written",
                    batch_no=str(existing["batch_no"]) if existing else "",
                    bank_book=existing["bank_book"] if existing else "",
                ),
                "",
            )
        amount = -original_amount
        if reason == "NSF":
            entry_type, label = "Return", "NSF"
            match = _RCODE.search(description)
            r_code = f"R{match.group(1)}" if match else ""
        else:
            entry_type = "Payment"
            label = "CHARGE BACK" if reason == "ChargeBack" else _reverse_reason(description)
            r_code = ""
        batch = _open_batch(c, key[0], jnl, user)
        ref = _insert_entry(
            c,
            batch,
            property_id=key[0],
            bldg_id=key[1],
            unit_id=key[2],
            resi_id=key[3],
            entry_type=entry_type,
            reason=label,
            amount=str(amount),
            client_transaction_id=txn_id,
            original_transaction_id=txn_id,
            payment_type=orig["payment_type"],
            description=description,
            r_code=r_code,
            client_merchant_id=orig["client_merchant_id"],
        )
        _move_balance(c, key, amount)
        if reason == "NSF":
            c.execute(
                "UPDATE leases SET nsf_count=nsf_count+1, last_nsf_date=? WHERE property_id=? "
                "AND bldg_id=? AND unit_id=? AND resi_id=?",
                (datetime.now().date().isoformat(), *key),
            )
    return (
        Outcome(
            evolution_reference=ref,
            reference_description=f"{entry_type} {label} {ref} posted to batch {batch['batch_no']}",
            batch_no=str(batch["batch_no"]),
            bank_book=batch["bank_book"],
        ),
        ref,
    )


_RETURN_INTS = ("clienttransactionid",)
_RETURN_OPTIONAL_INTS = ("clientjnlno",)


def _echo(el: etree._Element) -> str:
    return "".join(
        f"<{local(c.tag)}>{escape_text(c.text or '')}</{local(c.tag)}>" for c in el if local(c.tag)
    )


def return_payment(
    store: Store, user: str, root: etree._Element, preliminary: bool, rules: Rules
) -> str:
    elements = _payments(root)
    parsed = [
        _int32_fields(fields(el), _RETURN_INTS, _RETURN_OPTIONAL_INTS)
        if rules.int32
        else fields(el)
        for el in elements
    ]
    out = []
    for el, f in zip(elements, parsed, strict=True):
        try:
            outcome, txn = _return_one(store, user, f, preliminary, rules)
        except SandboxError as err:
            outcome, txn = Outcome.refused(err), ""
        out.append(
            "<Payment>" + _echo(el) + outcome.children(with_gl=True, txn_id=txn) + "</Payment>"
        )
    return "<Payments>" + "".join(out) + "</Payments>"


# -- UpdateSettlementData -------------------------------------------------------------------


def _settles(amount: Decimal, total: Decimal) -> bool:
    """The batch total; for a return batch (negative total) also its absolute value, as the
    production client sent a positive SettlementAmount after a return."""
    return amount == total or (total < 0 and amount == -total)


def _settle_one(store: Store, f: dict[str, str], preliminary: bool, rules: Rules) -> Outcome:
    raw = f.get("externaljnlno", "")
    if rules.int32:
        jnl = _positive_jnl(raw, rules, "ExternalJnlNo")
    elif not raw:
        # lenient: any text, since a return batch is numbered by a transaction id
        raise SandboxError(ErrorCode.INVALID_JNLNO, "ExternalJnlNo is required")
    else:
        jnl = raw
    amount = parse_money(f.get("settlementamount", ""), positive=False)
    merchant = f.get("clientmerchantid", "")
    with store.tx() as c:
        rows = c.execute(
            "SELECT b.*, p.client_merchant_id FROM batches b JOIN properties p "
            "ON p.property_id=b.property_id WHERE b.client_jnl_no=? ORDER BY b.batch_no",
            (jnl,),
        ).fetchall()
        if merchant:
            rows = [
                r
                for r in rows
                if r["client_merchant_id"]
                and _same_merchant(merchant, r["client_merchant_id"], rules)
            ]
        if len(rows) != 1:
            raise SandboxError(
                ErrorCode.UNKNOWN_BATCH,
                f"{jnl} (merchant {merchant or '-'})" + (" is ambiguous" if rows else ""),
            )
        batch = rows[0]
        total = batch_total(c, batch["batch_no"])
        base = Outcome(
            evolution_reference=str(batch["batch_no"]),
            batch_no=str(batch["batch_no"]),
            bank_book=batch["bank_book"],
        )
        if not _settles(amount, total):
            raise SandboxError(
                ErrorCode.SETTLEMENT_MISMATCH,
                f"SettlementAmount {amount} but batch {batch['batch_no']} totals {total}",
                batch_no=base.batch_no,
                bank_book=base.bank_book,
            )
        if batch["settled"] and Decimal(batch["settled_amount"] or "0") == total:
            base.reference_description = f"Batch {batch['batch_no']} already settled"
            return base
        if preliminary:
            base.reference_description = "Preliminary: validated, nothing written"
            return base
        c.execute(
            "UPDATE batches SET settled=1, settled_amount=?, settlement_date=?, approval_code=?, "
            "settled_on=? WHERE batch_no=?",
            (
                str(total),
                f.get("settlementdate", ""),
                f.get("approvalcode", ""),
                now(),
                batch["batch_no"],
            ),
        )
    base.reference_description = f"Batch {batch['batch_no']} settled for {total}"
    return base


_SETTLE_INTS = ("externaljnlno",)
_SETTLE_OPTIONAL_INTS = ("clientmerchantid",)


def update_settlement(store: Store, root: etree._Element, preliminary: bool, rules: Rules) -> str:
    elements = [c for c in root if local(c.tag).lower() == "edex"] or [root]
    parsed = [
        _int32_fields(fields(el), _SETTLE_INTS, _SETTLE_OPTIONAL_INTS)
        if rules.int32
        else fields(el)
        for el in elements
    ]
    out = []
    for el, f in zip(elements, parsed, strict=True):
        try:
            outcome = _settle_one(store, f, preliminary, rules)
        except SandboxError as err:
            outcome = Outcome.refused(err)
        out.append("<EDEX>" + _echo(el) + outcome.children() + "</EDEX>")
    return "<Batches>" + "".join(out) + "</Batches>"


def handle(
    store: Store,
    user: str,
    operation: str,
    root: etree._Element,
    preliminary: bool,
    variants: Mapping[str, str] | None = None,
) -> str:
    rules = Rules({**defaults(), **(variants or {})})
    if operation == "AddPayment":
        return add_payment(store, user, root, preliminary, rules)
    if operation == "ReturnPayment":
        return return_payment(store, user, root, preliminary, rules)
    if operation == "UpdateSettlementData":
        return update_settlement(store, root, preliminary, rules)
    raise SandboxError(ErrorCode.NOT_SUPPORTED, operation)
