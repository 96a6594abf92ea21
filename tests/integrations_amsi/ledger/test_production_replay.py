"""The production client's sequences, replayed against the sandbox through our own eDex client.

What RentTrack's production client sent (docs/amsi-evidence.md): AddPayment with a 9-digit
integer ClientJnlNo and an integer ClientTransactionID, the day's batch settled with its total,
then an NSF return naming the original ClientTransactionID and the original batch's ClientJnlNo,
and the return settled by UpdateSettlementData with ExternalJnlNo = the original
ClientTransactionID and a positive amount. Each must succeed; and ids a .NET int parser cannot
read must be refused, never booked.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from integrations.exceptions import AmbiguousOutcome
from integrations_amsi.client import clear_clients, get_client
from integrations_amsi.xmldocs import PaymentDoc, ReturnDoc, settlement_xml
from tests.integrations_amsi.world import sandbox_settings

JNL = "126112601"  # 9 digits, as production batch ids were
TXN = "500000123"  # an integer ClientTransactionID
DAY = dt.date(2026, 11, 26)


@pytest.fixture
def client(amsi_sandbox):
    yield get_client(sandbox_settings(amsi_sandbox.base_url, timeout=5.0))
    clear_clients()


def _payment(txn: str = TXN, jnl: str = JNL, amount: str = "25.00") -> str:
    return PaymentDoc(
        property_id="001",
        bldg_id="01",
        unit_id="101",
        resi_id="1",
        merchant_id="1001",
        transaction_id=txn,
        transaction_date=DAY,
        amount=Decimal(amount),
        jnl_no=jnl,
        description="",  # production sent it empty
        payment_type="C",
    ).xml()


def _ledger(sandbox_control) -> dict:
    return {b["client_jnl_no"]: b for b in sandbox_control.ledger()}


@pytest.mark.parametrize("return_batch", ["separate", "original"])
def test_production_sequence_succeeds(client, sandbox_control, return_batch):
    sandbox_control.set_variants(return_batch=return_batch)
    reply, _ = client.ledger("AddPayment", _payment(), record=TXN)
    assert reply.ok, reply.error_description
    reply, _ = client.ledger(
        "UpdateSettlementData",
        settlement_xml(JNL, "1001", Decimal("25.00"), DAY, "RentPlatform"),
        record=JNL,
    )
    assert reply.ok, reply.error_description
    assert _ledger(sandbox_control)[JNL]["settled"]

    # The bank returned it (R01) after deposit: a Return with reason NSF, naming the original
    # transaction and the original batch.
    doc = ReturnDoc(transaction_id=TXN, reason="NSF", jnl_no=JNL, description="NSF R01 ab12cd34")
    reply, _ = client.ledger("ReturnPayment", doc.xml(), record=TXN)
    assert reply.ok, reply.error_description
    ledger = _ledger(sandbox_control)
    if return_batch == "separate":
        # After deposit: a separate batch with a negative amount, keyed by the transaction id,
        # settled the way production did (ExternalJnlNo = ClientTransactionID, positive amount).
        assert Decimal(ledger[TXN]["total"]) == Decimal("-25.00")
        assert ledger[TXN]["entries"][0]["entry_type"] == "Return"
        reply, _ = client.ledger(
            "UpdateSettlementData",
            settlement_xml(TXN, "1001", Decimal("25.00"), DAY, "RentPlatform"),
            record=TXN,
        )
        assert reply.ok, reply.error_description
        assert _ledger(sandbox_control)[TXN]["settled"]
        assert Decimal(_ledger(sandbox_control)[JNL]["total"]) == Decimal("25.00")
    else:
        # The other plausible eSite: the named batch reopens and takes the return.
        assert TXN not in ledger
        assert Decimal(ledger[JNL]["total"]) == Decimal("0.00")
        assert reply.batch_no == str(ledger[JNL]["batch_no"])


@pytest.mark.parametrize(
    ("txn", "jnl"),
    [
        ("5f3a9c0e8b7d4e21a6c3b2f1e0d9c8b7", JNL),  # a UUID hex: what this client sent before
        (TXN, "26112611101"),  # an 11-digit batch id: past a 32-bit int
        (TXN, "B-1001"),
    ],
)
def test_ids_a_dotnet_int_parser_cannot_read_are_refused_and_nothing_is_booked(
    client, sandbox_control, txn, jnl
):
    # The sandbox answers as an ASP.NET service whose int.Parse throws: a SOAP Fault, HTTP 500.
    # Our client takes that for an unknown outcome on a write (it cannot know the service threw
    # before writing) -- and never sends such ids anyway (integrations_amsi.identifiers).
    with pytest.raises(AmbiguousOutcome):
        client.ledger("AddPayment", _payment(txn=txn, jnl=jnl), record=txn)
    assert _ledger(sandbox_control) == {}
