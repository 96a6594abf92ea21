"""Cash Batches and External Deposits, as a property manager reads them (HTML and CSV)."""

from __future__ import annotations

import csv
import io

import httpx

from .edex import DUP_RESI, NORMAL


def book(edex):
    edex.pay(NORMAL, ClientTransactionID="9001", Amount="100.00")
    edex.pay(DUP_RESI, ClientTransactionID="9002", Amount="250.50", PaymentType="C")
    edex.ret("9001", "ChargeBack", jnl="5001")
    edex.pay(
        NORMAL, ClientTransactionID="9003", Amount="30.00", ClientJnlNo="5002", PaymentType="C"
    )
    edex.settle("5002", "30.00")
    edex.ret("9003", "NSF", jnl="5003", description="R01")


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_external_deposits_totals_per_batch(amsi_sandbox, edex):
    book(edex)
    url = amsi_sandbox.base_url + "/edexweb/esite/externaldeposits"
    table = rows(httpx.get(url, params={"format": "csv"}).text)
    assert table[0] == [
        "External Batch",
        "eSite Batch",
        "Rent/Other",
        "Security Deposits",
        "Misc",
        "Return",
        "Totals",
    ]
    assert table[1:] == [
        ["5001", "1", "250.50", "0.00", "0.00", "0.00", "250.50"],
        ["5002", "2", "30.00", "0.00", "0.00", "0.00", "30.00"],
        ["5003", "3", "0.00", "0.00", "0.00", "-30.00", "-30.00"],
        ["Grand Total", "", "280.50", "0.00", "0.00", "-30.00", "250.50"],
    ]
    detail = rows(httpx.get(url, params={"format": "csv", "level": "detail"}).text)
    assert [r[9] for r in detail[1:] if r[0] == "5001"] == ["", "", "CHARGE BACK"]
    assert any(r[14] == "R01" for r in detail[1:])
    html = httpx.get(url, params={"level": "payment"}).text
    assert "<th>External Batch</th>" in html and "250.50" in html and "Total 5001" in html
    other_month = rows(httpx.get(url, params={"format": "csv", "month": "2001-01"}).text)
    assert other_month[1:] == [["Grand Total", "", "0.00", "0.00", "0.00", "0.00", "0.00"]]
    assert httpx.get(url, params={"month": "soon"}).status_code == 400


def test_cash_batches_page(amsi_sandbox, edex):
    book(edex)
    url = amsi_sandbox.base_url + "/edexweb/esite/cashbatches"
    table = rows(httpx.get(url, params={"format": "csv"}).text)
    assert table[0] == [
        "Batch",
        "Bank Book",
        "Rent",
        "Sec Dep",
        "Other Dep",
        "Misc",
        "Created On",
        "Created By",
        "Approve",
    ]
    by_batch = {r[0]: r for r in table[1:]}
    assert by_batch["1"][2] == "250.50" and by_batch["1"][8] == "\u2713"  # open
    assert by_batch["2"][8] == ""  # settled
    assert by_batch["3"][2] == "-30.00"
    assert all(r[7] == "edex_demo" for r in table[1:])
    none = rows(httpx.get(url, params={"format": "csv", "created_by": "someone"}).text)
    assert none == [table[0]]
    html = httpx.get(url, params={"created_by": "edex_demo"}).text
    assert "<th>Approve</th>" in html and "\u2713" in html


def test_index_links_everything(amsi_sandbox):
    html = httpx.get(amsi_sandbox.base_url + "/").text
    for path in ("leasing.asmx?wsdl", "ledger.asmx?wsdl", "cashbatches", "externaldeposits"):
        assert path in html
