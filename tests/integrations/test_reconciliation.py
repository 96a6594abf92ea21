"""Reconciliation in the framework: ``compare`` on its own (pure), and whole runs with the
fake provider (its remote side is the FakeRemoteEntry table)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Connection, FakeRemoteEntry, Posting, PostingKind
from integrations.reconciliation import (
    LocalItem,
    LocalSide,
    RemoteItem,
    RemoteSide,
    compare,
    reconcile,
)
from rentplatform import services
from tests.integrations.fake_day import posted_day

D = Decimal


def _local(*items: LocalItem, hosts: dict[str, str] | None = None) -> LocalSide:
    side = LocalSide(hosts=dict(hosts or {}))
    for item in items:
        side.add(item)
    return side


def _kinds(diffs) -> list[str]:
    return sorted(d.kind for d in diffs)


# -- compare: pure ------------------------------------------------------------------------------


def test_matching_sides_have_no_differences():
    local = _local(
        LocalItem("111", "a", D("100.00"), "payment a"),
        LocalItem("111", "a", D("-40.00"), "refund r", "112"),
    )
    remote = RemoteSide(
        {"111": D("60.00")},
        [RemoteItem("111", "a", D("100.00")), RemoteItem("111", "a", D("-40.00"))],
    )
    assert compare(local, remote, "the ledger") == []


def test_compare_names_duplicates_and_wrong_batches():
    local = _local(LocalItem("111", "abc", D("100.00"), "payment abc"))
    remote = RemoteSide(
        {"111": D("200.00"), "112": D("100.00")},
        [RemoteItem("111", "abc", D("100.00")), RemoteItem("112", "abc", D("100.00"))],
    )
    diffs = compare(local, remote, "the ledger")
    assert _kinds(diffs) == ["duplicate", "missing_local", "total_differs"]
    by_kind = {d.kind: d for d in diffs}
    assert by_kind["duplicate"].message == "abc is in the ledger 2 times"
    assert by_kind["missing_local"].message == "the ledger batch we have no record of"
    assert by_kind["total_differs"].message == "total differs by 100.00"
    assert (by_kind["total_differs"].local, by_kind["total_differs"].remote) == (
        "100.00",
        "200.00",
    )


def test_an_item_in_another_batch_is_named_with_both():
    local = _local(
        LocalItem("111", "a", D("10.00"), "payment a"), LocalItem("112", "b", D("5.00"), "p b")
    )
    remote = RemoteSide(
        {"111": D("10.00"), "112": D("5.00")},
        [RemoteItem("112", "a", D("10.00")), RemoteItem("111", "b", D("5.00"))],
    )
    diffs = compare(local, remote, "X")
    assert _kinds(diffs) == ["wrong_batch", "wrong_batch"]
    assert diffs[0].message == "payment a is in X batch 112, not 111"
    assert (diffs[0].local, diffs[0].remote) == ("111", "112")


def test_missing_and_unknown_items_and_amounts():
    local = _local(
        LocalItem("111", "a", D("10.00"), "payment a"),
        LocalItem("111", "b", D("5.00"), "payment b"),
    )
    remote = RemoteSide(
        {"111": D("15.00")},
        [RemoteItem("111", "a", D("12.00")), RemoteItem("111", "z", D("3.00"))],
    )
    diffs = {d.kind: d for d in compare(local, remote, "X")}
    assert set(diffs) == {"amount_differs", "missing_item", "unknown_item"}
    assert diffs["missing_item"].message == "payment b (5.00) not in X"
    assert diffs["amount_differs"].message == "payment a amount differs"
    assert diffs["unknown_item"].message == "X entry z (3.00) is not one of ours"


def test_a_reversal_is_matched_on_its_sign():
    # The same transaction id, negative: a reversal, not a second payment.
    local = _local(LocalItem("111", "a", D("10.00"), "payment a"))
    remote = RemoteSide(
        {"111": D("0.00")},
        [RemoteItem("111", "a", D("10.00")), RemoteItem("111", "a", D("-10.00"))],
    )
    diffs = compare(local, remote, "X")
    assert _kinds(diffs) == ["total_differs", "unknown_item"]
    assert diffs[1].message == "X entry a (-10.00) is not one of ours"


def test_a_remote_batch_numbered_otherwise_is_named_under_our_batch():
    # A return booked in a batch of its own (numbered 500000001), reported under our 222.
    local = _local(
        LocalItem("500000001", "500000001", D("-40.00"), "refund r", "222"),
        hosts={"500000001": "222"},
    )
    diffs = {d.kind: d for d in compare(local, RemoteSide(), "eSite")}
    assert set(diffs) == {"missing_remote", "missing_item"}
    assert diffs["missing_remote"].batch_id == "222"
    assert diffs["missing_remote"].message == "batch not in eSite (eSite batch 500000001)"
    remote = RemoteSide({"500000001": D("-40.00")})
    (diff,) = compare(local, remote, "eSite")
    assert (diff.batch_id, diff.kind) == ("222", "missing_item")
    assert diff.message == "refund r (-40.00) not in eSite (eSite batch 500000001)"


def test_a_known_batch_with_nothing_in_it_is_no_difference():
    assert compare(_local(hosts={"111": "111"}), RemoteSide(), "X") == []
    (diff,) = compare(_local(hosts={"111": "111"}), RemoteSide({"111": D("5.00")}), "X")
    assert diff.kind == "total_differs"


def test_local_nets_add_items_per_remote_batch():
    local = _local(
        LocalItem("111", "a", D("10.00"), "a"),
        LocalItem("111", "a", D("-4.00"), "r", "112"),
        hosts={"113": "113"},
    )
    assert local.nets() == {"111": D("6.00"), "113": D("0.00")}
    assert local.hosts == {"113": "113", "111": "111"}


# -- whole runs with the fake provider ----------------------------------------------------------


@pytest.fixture
def day(connection, lease, django_capture_on_commit_callbacks):
    """A payment and the refund of another, both posted to the fake remote."""
    paid, refund = posted_day(lease, django_capture_on_commit_callbacks)
    assert FakeRemoteEntry.objects.count() == 3
    return paid, refund


def _month(payment) -> dt.date:
    return payment.batch.business_day.replace(day=1)


def test_a_normal_day_reconciles_with_zero_differences(connection, day):
    paid, _ = day
    result = reconcile(connection, _month(paid))
    assert result.error == ""
    assert result.differences == []
    assert result.ok
    assert result.summary().endswith("0 differences - our batches match the fake remote")


def test_an_entry_missing_from_the_remote_is_named(connection, day):
    paid, refund = day
    FakeRemoteEntry.objects.filter(key=refund.reference.hex).delete()
    result = reconcile(connection, _month(paid))
    kinds = {d.kind: d for d in result.differences}
    assert set(kinds) == {"missing_item", "total_differs"}
    assert kinds["missing_item"].batch_id == refund.batch.batch_id
    assert refund.public_id[:10] in kinds["missing_item"].message
    assert "not in the fake remote" in kinds["missing_item"].message
    assert not result.ok


def test_an_extra_remote_entry_and_an_unsent_payment_are_named(
    connection, lease, day, settings, django_capture_on_commit_callbacks
):
    paid, _ = day
    FakeRemoteEntry.objects.create(
        connection=connection,
        key="keyed-by-hand",
        kind=PostingKind.PAYMENT,
        amount=D("7.00"),
        batch_id=paid.batch.batch_id,
        reference="FAKE-by-hand",
    )
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    with django_capture_on_commit_callbacks(execute=True):
        unsent = services.accept_payment(lease, "33.00", "card")
    assert Posting.objects.get(payment=unsent).remote_reference == ""
    result = reconcile(connection, _month(paid))
    messages = [d.message for d in result.differences]
    assert "the fake remote entry keyed-by-hand (7.00) is not one of ours" in messages
    assert f"payment {unsent.public_id[:10]} (33.00) not in the fake remote" in messages


def test_a_payment_the_outbox_never_wrote_is_reported_missing(
    lease, django_capture_on_commit_callbacks
):
    unsent = services.accept_payment(lease, "12.00", "card")  # before the connection: no posting
    connection = Connection.objects.create(property=lease.property, provider="fake")
    with django_capture_on_commit_callbacks(execute=True):
        paid = services.accept_payment(lease, "100.00", "card")
    assert not Posting.objects.filter(payment=unsent).exists()
    assert unsent.batch_id == paid.batch_id
    result = reconcile(connection, _month(paid))
    (missing,) = [d for d in result.differences if d.kind == "missing_item"]
    assert missing.message == f"payment {unsent.public_id[:10]} (12.00) not in the fake remote"


def test_an_uploaded_report_is_refused_by_the_fake(connection, day):
    paid, _ = day
    result = reconcile(connection, _month(paid), "External Batch,Totals\n")
    assert "no export" in result.error
    assert "could not reconcile" in result.summary()


def test_the_command_names_the_remote(connection, day, capsys):
    paid, refund = day
    month = f"{_month(paid):%Y-%m}"
    call_command("integrations_reconcile", "--month", month)
    assert "our batches match the fake remote" in capsys.readouterr().out
    FakeRemoteEntry.objects.filter(key=refund.reference.hex).delete()
    with pytest.raises(CommandError, match="1 property did not reconcile"):
        call_command("integrations_reconcile", "--month", month)
    out = capsys.readouterr().out
    assert "(ours -55.55, the fake remote -)" in out
    assert "AMSI" not in out


def test_the_command_defaults_to_each_propertys_own_month_and_records_the_run(
    connection, monkeypatch, capsys
):
    from integrations.models import ReconciliationRun
    from rentplatform.models import Property

    # Where the property is it is already the 1st of next month (its day, not the server's).
    monkeypatch.setattr(Property, "local_day", lambda self: dt.date(2031, 2, 1))
    call_command("integrations_reconcile")
    run = ReconciliationRun.objects.get()
    assert (run.connection, run.month, run.ran_by) == (
        connection,
        dt.date(2031, 2, 1),
        "integrations_reconcile",
    )
    assert run.source == "read from the remote" and run.outcome() == "no differences"
    assert "2031-02: 0 differences" in capsys.readouterr().out
