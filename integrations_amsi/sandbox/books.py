"""Ledger writes booked the way eSite books them.

Design note: the first payment with a new ClientJnlNo opens an External ("X") cash batch
created by the eDex user; reversals are negative payments (CHARGE BACK, REFUNDED, VOIDED) or
Returns (NSF, counted on the lease); a batch is approved only when the settlement amount equals
its total (or, for a batch with a negative total, its absolute value). Each call validates
everything first, then writes in one transaction; `preliminary=1` stops after validation.
Where real eSite's behaviour is unknown the `variants` (sandbox/variants.py) pick one.

AddPayment is booked here; ReturnPayment in returns.py, UpdateSettlementData in settlement.py,
and what they share (money, ids, outcomes, batch and entry rows) in booking.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from lxml import etree

from .booking import (
    Outcome,
    Rules,
    _batch,
    _duplicate,
    _insert_entry,
    _lease,
    _move_balance,
    _open_batch,
    _payments,
    _positive_jnl,
    _positive_txn,
    _same_merchant,
    lease_fields,
    parse_money,
    parsed_items,
)
from .codes import ErrorCode, SandboxError
from .returns import return_payment
from .settlement import update_settlement
from .store import LeaseKey, Store
from .variants import defaults
from .xmlsafe import start_tag

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
            **lease_fields(key),
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


_ADD_INTS = ("ClientJnlNo", "ClientTransactionID")
_ADD_OPTIONAL_INTS = ("ClientMerchantID",)


def add_payment(
    store: Store, user: str, root: etree._Element, preliminary: bool, rules: Rules
) -> str:
    sent = [dict(el.attrib) for el in _payments(root)]
    parsed = parsed_items(sent, _ADD_INTS, _ADD_OPTIONAL_INTS, rules)
    out = []
    for attrs, values in zip(sent, parsed, strict=True):
        try:
            outcome = _add_one(store, user, values, preliminary, rules)
        except SandboxError as err:
            outcome = Outcome.refused(err)
        out.append(start_tag("Payment", attrs) + outcome.children() + "</Payment>")
    return "<Payments>" + "".join(out) + "</Payments>"


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
