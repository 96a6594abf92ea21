"""Variants, continued: where a return is booked (``return_batch``) and how it settles, and the
production sequence replayed (9-digit ids, settle, return after deposit, settle the return)."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from lxml import etree

from integrations_amsi.sandbox.codes import ErrorCode

from .edex import NORMAL, code, item, payment_xml, soap_post

# -- return_batch and the settlement of a return ---------------------------------------------


def _deposited(edex, amount: str = "75.00"):
    edex.pay(Amount=amount, PaymentType="C")
    assert code(edex.settle("5001", amount)) == 0


def test_return_batch_separate_after_deposit(edex, sandbox_control):
    _deposited(edex)
    result = edex.ret("9001", "NSF", jnl="5001", description="R01")
    assert code(result) == 0
    original, separate = sandbox_control.ledger()
    assert (original["client_jnl_no"], original["settled"], original["total"]) == (
        "5001",
        True,
        "75.00",
    )
    assert (separate["client_jnl_no"], separate["batch_type"], separate["total"]) == (
        "9001",
        "X",
        "-75.00",
    )
    assert separate["approve"] is True and separate["returns"] == "-75.00"
    assert result.findtext("AdditionalData/eSiteBatchNo") == str(separate["batch_no"])
    # the production close: ExternalJnlNo = the transaction id, a POSITIVE amount
    assert code(edex.settle("9001", "74.00")) == ErrorCode.SETTLEMENT_MISMATCH
    assert code(edex.settle("9001", "75.00")) == 0
    assert sandbox_control.ledger(client_jnl_no="9001")[0]["settled"] is True
    assert code(edex.settle("9001", "-75.00")) == 0  # the exact (negative) total too


def test_return_batch_separate_also_for_a_chargeback_and_settles_with_the_negative(
    edex, sandbox_control
):
    _deposited(edex)
    assert code(edex.ret("9001", "ChargeBack", jnl="5001")) == 0
    assert sandbox_control.ledger(client_jnl_no="9001")[0]["rent_other"] == "-75.00"
    assert code(edex.settle("9001", "-75.00")) == 0


@pytest.mark.parametrize("variant", ["separate", "original"])
def test_return_into_a_still_open_batch_stays_there(edex, sandbox_control, variant):
    sandbox_control.set_variants(return_batch=variant)
    edex.pay(Amount="75.00")
    result = edex.ret("9001", "Reverse", jnl="5001", description="refund")
    (batch,) = sandbox_control.ledger()
    assert batch["total"] == "0.00"
    assert result.findtext("AdditionalData/eSiteBatchNo") == str(batch["batch_no"])
    # no batch carries the transaction id: settling it is an unknown batch, as before
    assert code(edex.settle("9001", "75.00")) == ErrorCode.UNKNOWN_BATCH


def test_return_batch_original_reopens_the_settled_batch(edex, sandbox_control):
    sandbox_control.set_variants(return_batch="original")
    _deposited(edex)
    result = edex.ret("9001", "NSF", jnl="5001")
    (batch,) = sandbox_control.ledger()
    assert (batch["approve"], batch["total"]) == (True, "0.00")
    assert result.findtext("AdditionalData/eSiteBatchNo") == str(batch["batch_no"])
    assert code(edex.settle("9001", "75.00")) == ErrorCode.UNKNOWN_BATCH


# -- the production sequence, replayed --------------------------------------------------------


def test_production_replay_nine_digit_ids_return_after_deposit(amsi_sandbox, sandbox_control):
    """AddPayment (9-digit ClientJnlNo and ClientTransactionID, merchant 1001, no preliminary,
    empty Description), the daily close, ReturnPayment naming the original transaction and
    batch, then UpdateSettlementData with ExternalJnlNo = the transaction id and a positive
    amount."""
    jnl, txn = "260115001", "123456789"

    def call(op: str, xml: str) -> etree._Element:
        return item(soap_post(amsi_sandbox, "ledger", op, xml), op)

    paid = call(
        "AddPayment",
        payment_xml(
            NORMAL,
            ClientJnlNo=jnl,
            ClientTransactionID=txn,
            ClientMerchantID="1001",
            Amount="1500.00",
            Description="",
            PaymentType="C",
        ),
    )
    assert code(paid) == 0
    closing = (
        f"<EDEX><ExternalJnlNo>{jnl}</ExternalJnlNo><ClientMerchantId>1001</ClientMerchantId>"
        "<SettlementAmount>1500</SettlementAmount><SettlementDate>01/20/2026</SettlementDate>"
        "<ApprovalCode>PAYCO</ApprovalCode></EDEX>"
    )
    assert code(call("UpdateSettlementData", closing)) == 0
    returned = call(
        "ReturnPayment",
        f"<Payments><Payment><ClientTransactionID>{txn}</ClientTransactionID><Reason>NSF"
        f"</Reason><ClientJnlNo>{jnl}</ClientJnlNo><Description>R01 Insufficient Funds"
        "</Description></Payment></Payments>",
    )
    assert code(returned) == 0
    after_return = (
        f"<EDEX><ExternalJnlNo>{txn}</ExternalJnlNo><ClientMerchantId>1001</ClientMerchantId>"
        "<SettlementAmount>1500</SettlementAmount><SettlementDate>01/23/2026</SettlementDate>"
        "<ApprovalCode>PAYCO</ApprovalCode></EDEX>"
    )
    settled = call("UpdateSettlementData", after_return)
    assert code(settled) == 0
    original, separate = sandbox_control.ledger()
    assert (original["client_jnl_no"], original["total"], original["settled"]) == (
        jnl,
        "1500.00",
        True,
    )
    assert (separate["client_jnl_no"], separate["total"], separate["settled"]) == (
        txn,
        "-1500.00",
        True,
    )
    assert separate["settlement_date"] == "01/23/2026" and separate["settled_amount"] == "-1500.00"
    assert returned.findtext("AdditionalData/eSiteBatchNo") == str(separate["batch_no"])
    assert settled.findtext("AdditionalData/eSiteBatchNo") == str(separate["batch_no"])
    assert sandbox_control.lease(*NORMAL)["nsf_count"] == 1

    # the pages list the return batch like any other: External Batch = the transaction id
    def table(path: str) -> list[list[str]]:
        r = httpx.get(amsi_sandbox.base_url + path, params={"format": "csv"})
        return list(csv.reader(io.StringIO(r.text)))

    deposits = table("/edexweb/esite/externaldeposits")
    assert [str(separate["batch_no"]), "0.00", "0.00", "0.00", "-1500.00", "-1500.00"] == (
        next(r for r in deposits if r[0] == txn)[1:]
    )
    assert next(r for r in deposits if r[0] == jnl)[-1] == "1500.00"
    cash = {r[0]: r for r in table("/edexweb/esite/cashbatches")[1:]}
    assert cash[str(separate["batch_no"])][2] == "-1500.00"
    assert cash[str(separate["batch_no"])][8] == ""  # settled: no Approve mark
