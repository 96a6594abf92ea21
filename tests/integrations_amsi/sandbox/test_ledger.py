"""Ledger writes: batches, reversals, NSF, settlement, every refusal code, persistence."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations_amsi.sandbox.codes import ErrorCode

from .edex import BLOCKED, DUP_RESI, HOLD, NO_CHECKS, NORMAL, code, return_xml


def entries(control, jnl):
    (batch,) = control.ledger(client_jnl_no=jnl)
    return batch, batch["entries"]


def test_first_payment_opens_external_batch(edex, sandbox_control):
    first = edex.pay(NORMAL, ClientTransactionID="9001", Amount="100.50")
    assert code(first) == 0
    assert first.get("ClientTransactionID") == "9001"  # attributes echoed
    assert first.findtext("AdditionalData/eSiteBankBookID") == "1000"
    batch_no = first.findtext("AdditionalData/eSiteBatchNo")
    second = edex.pay(DUP_RESI, ClientTransactionID="9002", Amount="20")
    assert second.findtext("AdditionalData/eSiteBatchNo") == batch_no
    other = edex.pay(NORMAL, ClientTransactionID="9003", ClientJnlNo="5002")
    assert int(other.findtext("AdditionalData/eSiteBatchNo")) == int(batch_no) + 1
    batch, items = entries(sandbox_control, "5001")
    assert (batch["batch_type"], batch["created_by"], batch["approve"]) == ("X", "edex_demo", True)
    assert batch["total"] == "120.50"
    assert [
        (e["ResiID"] if "ResiID" in e else e["resi_id"], e["unit_id"], e["bldg_id"]) for e in items
    ] == [("1", "101", "01"), ("1", "101", "02")]
    assert items[0]["evolution_reference"] == first.findtext("EvolutionReference")
    assert items[0]["entry_type"] == "Payment" and items[0]["amount"] == "100.50"


def test_bank_book_is_configurable_per_property(edex, sandbox_control):
    sandbox_control.put_property("001", bank_book="2000")
    assert edex.pay().findtext("AdditionalData/eSiteBankBookID") == "2000"


def test_duplicate_carries_original_reference(edex, sandbox_control):
    first = edex.pay()
    dup = edex.pay(Amount="55.00", ClientJnlNo="6000")
    assert code(dup) == ErrorCode.DUPLICATE_TRANSACTION
    assert dup.findtext("EvolutionReference") == first.findtext("EvolutionReference")
    assert dup.findtext("AdditionalData/eSiteBatchNo") == first.findtext(
        "AdditionalData/eSiteBatchNo"
    )
    assert len(sandbox_control.ledger()) == 1


def test_preliminary_validates_and_writes_nothing(edex, sandbox_control):
    assert code(edex.pay(preliminary=1)) == 0
    assert sandbox_control.ledger() == []
    assert code(edex.pay(BLOCKED, preliminary=1)) == ErrorCode.PAYMENT_ACCESS_BLOCKED
    edex.pay()
    assert code(edex.pay(preliminary=1)) == ErrorCode.DUPLICATE_TRANSACTION
    assert code(edex.ret("9001", "NSF", preliminary=1)) == 0
    assert code(edex.settle("5001", "100.00", preliminary=1)) == 0
    batch, items = entries(sandbox_control, "5001")
    assert len(items) == 1 and batch["settled"] is False


@pytest.mark.parametrize(
    ("key", "attrs", "expected"),
    [
        (("001", "01", "101", "999"), {}, ErrorCode.UNKNOWN_LEASE),
        (("001", "01", "102", "1"), {}, ErrorCode.UNKNOWN_LEASE),  # ResiID 1 lives on 101
        (("999", "01", "101", "1"), {}, ErrorCode.UNKNOWN_PROPERTY),
        (BLOCKED, {}, ErrorCode.PAYMENT_ACCESS_BLOCKED),
        (HOLD, {}, ErrorCode.CREDIT_STATUS_HOLD),
        (("001", "02", "108", "19"), {}, ErrorCode.CREDIT_STATUS_HOLD),  # Restricted
        (NO_CHECKS, {"PaymentType": "C"}, ErrorCode.NO_CHECKS),
        (NORMAL, {"Amount": "0"}, ErrorCode.INVALID_AMOUNT),
        (NORMAL, {"Amount": "-5"}, ErrorCode.INVALID_AMOUNT),
        (NORMAL, {"Amount": "abc"}, ErrorCode.INVALID_AMOUNT),
        (NORMAL, {"Amount": "10.005"}, ErrorCode.INVALID_AMOUNT),
        (NORMAL, {"Amount": "NaN"}, ErrorCode.INVALID_AMOUNT),
        (NORMAL, {"ClientJnlNo": "0"}, ErrorCode.INVALID_JNLNO),
        (NORMAL, {"ClientJnlNo": "-5001"}, ErrorCode.INVALID_JNLNO),
        (NORMAL, {"ClientMerchantID": "9999"}, ErrorCode.MERCHANT_MISMATCH),
        (NORMAL, {"PaymentType": "X"}, ErrorCode.INVALID_FIELD),
        (NORMAL, {"ClientTransactionID": "0"}, ErrorCode.INVALID_FIELD),
        (NORMAL, {"ClientTransactionID": "-9001"}, ErrorCode.INVALID_FIELD),
        (NORMAL, {"ClientTransactionDate": "2016-02-15"}, ErrorCode.INVALID_FIELD),
    ],
)
def test_payment_refusals_write_nothing(edex, sandbox_control, key, attrs, expected):
    result = edex.pay(key, **attrs)
    assert code(result) == expected
    assert result.findtext("ErrorDescription").startswith(expected.description)
    assert sandbox_control.ledger() == []


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"ClientJnlNo": "B-17"}, ErrorCode.INVALID_JNLNO),
        ({"ClientJnlNo": ""}, ErrorCode.INVALID_JNLNO),
        ({"ClientTransactionID": ""}, ErrorCode.INVALID_FIELD),
    ],
)
def test_lenient_ids_refuse_non_digit_batch_and_empty_ids(edex, sandbox_control, attrs, expected):
    """ids=lenient: the business errors these got before ids=int32 made them SOAP Faults
    (test_variants.py covers the faults)."""
    sandbox_control.set_variants(ids="lenient")
    result = edex.pay(NORMAL, **attrs)
    assert code(result) == expected
    assert result.findtext("ErrorDescription").startswith(expected.description)
    assert sandbox_control.ledger() == []


def test_no_checks_lease_accepts_cards(edex):
    assert code(edex.pay(NO_CHECKS, PaymentType="P")) == 0


def test_bad_login_and_malformed_xmldata_in_ledger(edex):
    assert code(edex.write("AddPayment", "<Payments/>", Password="nope")) == ErrorCode.INVALID_LOGIN
    assert code(edex.write("AddPayment", "<Payments><Payment")) == ErrorCode.MALFORMED_XMLDATA
    assert code(edex.write("AddPayment", "<Payments/>")) == ErrorCode.MALFORMED_XMLDATA
    assert code(edex.write("UpdatePayment", "<Payments/>")) == ErrorCode.NOT_SUPPORTED
    assert code(edex.write("UpdateSettlementData", "<EDEX/>", PortfolioName="X")) == 101


def test_chargeback_goes_into_original_open_batch(edex, sandbox_control):
    edex.pay(Amount="80.00")
    result = edex.ret("9001", "ChargeBack", jnl="5001", description="card dispute")
    assert code(result) == 0
    assert result.findtext("EvolutionTransactionID") == result.findtext("EvolutionReference")
    batch, items = entries(sandbox_control, "5001")
    assert [(e["entry_type"], e["reason"], e["amount"]) for e in items] == [
        ("Payment", "", "80.00"),
        ("Payment", "CHARGE BACK", "-80.00"),
    ]
    assert items[1]["original_transaction_id"] == "9001" and batch["total"] == "0.00"


@pytest.mark.parametrize(
    ("description", "reason"),
    [("Refunded to resident", "REFUNDED"), ("VOIDED same day", "VOIDED"), ("cancel", "VOIDED")],
)
def test_reverse_reason_comes_from_description(edex, sandbox_control, description, reason):
    edex.pay(PaymentType="C")
    assert code(edex.ret("9001", "Reverse", jnl="5001", description=description)) == 0
    _, items = entries(sandbox_control, "5001")
    assert (items[-1]["entry_type"], items[-1]["reason"]) == ("Payment", reason)


def test_nsf_return_counts_on_lease(edex, sandbox_control):
    edex.pay(PaymentType="C", Amount="1200.00")
    assert code(edex.ret("9001", "NSF", jnl="7001", description="R01 Insufficient Funds")) == 0
    batch, items = entries(sandbox_control, "7001")
    assert (items[0]["entry_type"], items[0]["reason"], items[0]["r_code"]) == (
        "Return",
        "NSF",
        "R01",
    )
    assert batch["total"] == "-1200.00" and batch["returns"] == "-1200.00"
    lease = sandbox_control.lease(*NORMAL)
    assert lease["nsf_count"] == 1 and lease["last_nsf_date"]
    assert code(edex.ret("9001", "NSF", jnl="7001")) == ErrorCode.ALREADY_RETURNED
    assert code(edex.ret("9001", "Reverse")) == ErrorCode.ALREADY_RETURNED
    assert sandbox_control.lease(*NORMAL)["nsf_count"] == 1


def test_return_refusals(edex, sandbox_control):
    edex.pay()
    assert code(edex.ret("9999", "NSF")) == ErrorCode.UNKNOWN_TRANSACTION
    assert code(edex.ret("9001", "Lost")) == ErrorCode.INVALID_REASON
    assert code(edex.ret("9001", "NSF", jnl="0")) == ErrorCode.INVALID_JNLNO
    assert code(edex.ret("0", "NSF")) == ErrorCode.INVALID_FIELD
    assert code(edex.ret("-9001", "NSF")) == ErrorCode.INVALID_FIELD
    _, items = entries(sandbox_control, "5001")
    assert len(items) == 1


def test_lenient_return_refusals(edex, sandbox_control):
    sandbox_control.set_variants(ids="lenient")
    edex.pay()
    assert code(edex.ret("9001", "NSF", jnl="x1")) == ErrorCode.INVALID_JNLNO
    assert code(edex.ret("", "NSF")) == ErrorCode.INVALID_FIELD
    _, items = entries(sandbox_control, "5001")
    assert len(items) == 1


def test_return_amount_must_be_the_whole_payment(edex, sandbox_control):
    edex.pay(Amount="80.00")
    partial = edex.write("ReturnPayment", return_xml("9001", "Reverse", "5001", amount="40.00"))
    assert code(partial) == ErrorCode.INVALID_AMOUNT
    assert code(edex.write("ReturnPayment", return_xml("9001", "Reverse", amount="x"))) == 204
    assert len(entries(sandbox_control, "5001")[1]) == 1
    negative = edex.write("ReturnPayment", return_xml("9001", "Reverse", "5001", amount="-80.00"))
    assert code(negative) == 0 and negative.findtext("Amount") == "-80.00"  # echoed
    edex.pay(ClientTransactionID="9002", Amount="25.00")
    positive = edex.write("ReturnPayment", return_xml("9002", "NSF", "5001", amount="25"))
    assert code(positive) == 0
    assert [e["amount"] for e in entries(sandbox_control, "5001")[1]] == [
        "80.00",
        "-80.00",
        "25.00",
        "-25.00",
    ]


def test_settlement_rules_and_reopen(edex, sandbox_control):
    sandbox_control.set_variants(return_batch="original")
    edex.pay(Amount="100.00")
    edex.pay(ClientTransactionID="9002", Amount="50.25")
    mismatch = edex.settle("5001", "150.00")
    assert code(mismatch) == ErrorCode.SETTLEMENT_MISMATCH
    assert entries(sandbox_control, "5001")[0]["settled"] is False
    assert code(edex.settle("9999", "1.00")) == ErrorCode.UNKNOWN_BATCH
    assert code(edex.settle("5001", "150.25", merchant="9")) == ErrorCode.UNKNOWN_BATCH
    assert code(edex.settle("5001", "abc")) == ErrorCode.INVALID_AMOUNT
    ok = edex.settle("5001", "150.250")
    assert code(ok) == 0 and ok.findtext("ErrorCode") == "0"
    batch, _ = entries(sandbox_control, "5001")
    assert (batch["settled"], batch["approve"], batch["settled_amount"]) == (True, False, "150.25")
    settled_on = batch["settled_on"]
    assert code(edex.settle("5001", "150.25")) == 0  # idempotent
    assert entries(sandbox_control, "5001")[0]["settled_on"] == settled_on
    # a reversal into the settled batch reopens it until settled again
    assert code(edex.ret("9002", "Reverse", jnl="5001", description="refund")) == 0
    batch, _ = entries(sandbox_control, "5001")
    assert batch["approve"] is True and batch["total"] == "100.00"
    assert code(edex.settle("5001", "100")) == 0
    assert entries(sandbox_control, "5001")[0]["settled"] is True


def test_reversal_after_deposit_opens_negative_batch(edex, sandbox_control):
    edex.pay(Amount="75.00")
    edex.settle("5001", "75.00")
    assert code(edex.ret("9001", "ChargeBack", jnl="5009")) == 0
    batch, _ = entries(sandbox_control, "5009")
    assert Decimal(batch["total"]) == Decimal("-75.00")
    assert code(edex.settle("5009", "-75.00")) == 0
    assert entries(sandbox_control, "5001")[0]["settled"] is True


def test_restart_loses_nothing(amsi_sandbox, edex, sandbox_control):
    edex.pay(Amount="10.00")
    edex.ret("9001", "NSF", jnl="5002", description="R02")
    before = sandbox_control.ledger()
    amsi_sandbox.restart()
    assert sandbox_control.ledger() == before
    assert sandbox_control.lease(*NORMAL)["nsf_count"] == 1
    assert code(edex.pay(Amount="10.00")) == ErrorCode.DUPLICATE_TRANSACTION
    assert code(edex.pay(ClientTransactionID="9009")) == 0
