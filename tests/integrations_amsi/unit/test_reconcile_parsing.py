"""Parsing External Deposits exports (AMSI's remote side of a reconciliation), no sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.exceptions import PermanentError
from integrations.reconciliation import RemoteItem
from integrations_amsi.reconcile import parse_external_deposits
from tests.conftest import REPO_ROOT


def test_the_sample_export_in_fixtures_parses():
    text = (REPO_ROOT / "fixtures" / "external_deposits_sample.csv").read_text()
    side = parse_external_deposits(text)
    assert side.totals == {"26112611101": Decimal("1250.00")}
    (item,) = side.items
    assert item.transaction_id == "0f37602d0fd7495da5a66a488d332ab9"
    assert item.amount == Decimal("1250.00")
    assert item.batch == "26112611101"


def test_a_summary_level_export_gives_batch_totals():
    text = (
        "External Batch,eSite Batch,Rent/Other,Security Deposits,Misc,Return,Totals\n"
        "111,1,100.00,0.00,0.00,0.00,100.00\n"
        "112,2,0.00,0.00,0.00,-40.00,-40.00\n"
        "Grand Total,,100.00,0.00,0.00,-40.00,60.00\n"
    )
    side = parse_external_deposits(text)
    assert side.totals == {"111": Decimal("100.00"), "112": Decimal("-40.00")}
    assert side.items == []


def test_a_return_is_a_negative_item_found_by_its_transaction_id():
    text = (
        "External Batch,eSite Batch,ClientTransactionID,Type,Reason,Totals\n"
        "111,1,500000001,Payment,,100.00\n"
        "500000001,2,500000001,Return,NSF,-100.00\n"
        "Total 111,,,,,100.00\n"
        "Total 500000001,,,,,-100.00\n"
    )
    side = parse_external_deposits(text)
    assert side.totals == {"111": Decimal("100.00"), "500000001": Decimal("-100.00")}
    assert side.items[1] == RemoteItem(
        "500000001", "500000001", Decimal("-100.00"), "Return", "NSF"
    )
    assert side.batch_holding("500000001", negative=True) == "500000001"
    assert side.batch_holding("500000001", negative=False) == "111"


def test_not_an_export_is_refused_by_name():
    with pytest.raises(PermanentError, match="not an External Deposits export"):
        parse_external_deposits("Date,Description,Amount\n2026-11-01,rent,5\n")


def test_an_amount_that_is_not_one_is_refused_with_its_line():
    text = "External Batch,Totals\n111,12.3.4\n"
    with pytest.raises(PermanentError, match="line 2: Totals '12.3.4' is not an amount"):
        parse_external_deposits(text)
