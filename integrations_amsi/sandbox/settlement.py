"""UpdateSettlementData: a batch is approved only when the settlement amount equals its total
(or, for a batch with a negative total, its absolute value)."""

from __future__ import annotations

from decimal import Decimal

from lxml import etree

from .booking import (
    Outcome,
    Rules,
    _echo,
    _positive_jnl,
    _same_merchant,
    batch_total,
    parse_money,
    parsed_items,
)
from .codes import ErrorCode, SandboxError
from .edex import fields
from .store import Store, now
from .xmlsafe import local

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
    parsed = parsed_items(
        [fields(el) for el in elements], _SETTLE_INTS, _SETTLE_OPTIONAL_INTS, rules
    )
    out = []
    for el, f in zip(elements, parsed, strict=True):
        try:
            outcome = _settle_one(store, f, preliminary, rules)
        except SandboxError as err:
            outcome = Outcome.refused(err)
        out.append("<EDEX>" + _echo(el) + outcome.children() + "</EDEX>")
    return "<Batches>" + "".join(out) + "</Batches>"
