"""ReturnPayment: a negative payment (CHARGE BACK, REFUNDED, VOIDED) or a Return (NSF, counted
on the lease), in the batch eSite would book it in (books.py has the design note)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from lxml import etree

from .booking import (
    _RCODE,
    REASONS,
    Outcome,
    Rules,
    _batch,
    _echo,
    _insert_entry,
    _move_balance,
    _open_batch,
    _payments,
    _positive_jnl,
    _positive_txn,
    lease_fields,
    parse_money,
    parsed_items,
)
from .codes import ErrorCode, SandboxError
from .edex import fields
from .store import LeaseKey, Store

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
            **lease_fields(key),
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


def return_payment(
    store: Store, user: str, root: etree._Element, preliminary: bool, rules: Rules
) -> str:
    elements = _payments(root)
    parsed = parsed_items(
        [fields(el) for el in elements], _RETURN_INTS, _RETURN_OPTIONAL_INTS, rules
    )
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
