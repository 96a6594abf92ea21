"""Parsing External Deposits exports and comparing them, without a sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.exceptions import PermanentError
from integrations_amsi.reconcile import compare, parse_external_deposits
from tests.conftest import REPO_ROOT


def test_the_sample_export_in_fixtures_parses():
    text = (REPO_ROOT / "fixtures" / "external_deposits_sample.csv").read_text()
    totals, items = parse_external_deposits(text)
    assert totals == {"26112611101": Decimal("1250.00")}
    (item,) = items
    assert item.txn_id == "0f37602d0fd7495da5a66a488d332ab9"
    assert item.amount == Decimal("1250.00")


def test_a_summary_level_export_gives_batch_totals():
    text = (
        "External Batch,eSite Batch,Rent/Other,Security Deposits,Misc,Return,Totals\n"
        "111,1,100.00,0.00,0.00,0.00,100.00\n"
        "112,2,0.00,0.00,0.00,-40.00,-40.00\n"
        "Grand Total,,100.00,0.00,0.00,-40.00,60.00\n"
    )
    totals, items = parse_external_deposits(text)
    assert totals == {"111": Decimal("100.00"), "112": Decimal("-40.00")}
    assert items == []


def test_not_an_export_is_refused_by_name():
    with pytest.raises(PermanentError, match="not an External Deposits export"):
        parse_external_deposits("Date,Description,Amount\n2026-11-01,rent,5\n")


def test_compare_names_duplicates_and_wrong_batches():
    from integrations_amsi.reconcile import RemoteItem

    nets = {"111": Decimal("100.00")}
    ours = [("111", "abc", Decimal("100.00"), "payment abc")]
    remote_totals = {"111": Decimal("200.00"), "112": Decimal("100.00")}
    remote = [
        RemoteItem("111", "abc", Decimal("100.00"), "Payment", ""),
        RemoteItem("112", "abc", Decimal("100.00"), "Payment", ""),
    ]
    kinds = [d.kind for d in compare(nets, ours, remote_totals, remote)]
    assert "duplicate" in kinds and "total_differs" in kinds and "missing_local" in kinds
