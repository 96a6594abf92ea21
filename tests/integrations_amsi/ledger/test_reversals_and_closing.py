"""Rule 5 (reversals), rule 3 (batches closed by the integration), rule 7 (same-day voids),
the Batch Deposit Report and reconciliation, each checked against the sandbox's ledger.

Every reversal is sent as production sent it: ReturnPayment naming the original payment's
ClientTransactionID and the original batch's ClientJnlNo. eSite books it into that batch while
the batch is open; once the integration has settled it (the cutoff), into a batch of its own
numbered by the ClientTransactionID (the sandbox's default ``return_batch=separate``), or into
the reopened batch (``return_batch=original``). test_settlement.py covers both in depth."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from integrations.models import Posting, PostingState
from integrations.reconciliation import reconcile
from integrations.reports import build_report
from integrations_amsi.identifiers import client_transaction_id
from rentplatform import services
from rentplatform.models import BatchKind

ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"
THIRD = "001-01-103-3"
DAY = dt.date(2026, 11, 20)


def _txn(payment) -> str:
    """The ClientTransactionID the payment (and its reversal) was sent with."""
    return client_transaction_id(Posting.objects.get(payment=payment, kind="payment"))


def _entry(world, jnl, payment, negative):
    return [
        e
        for e in world.entries(jnl)
        if e["client_transaction_id"] == _txn(payment) and (Decimal(e["amount"]) < 0) == negative
    ]


def test_card_chargeback_before_deposit_is_negative_charge_back_in_original_batch(world, deliver):
    with deliver():
        payment = world.pay(ALLOWED, "500.00", "card", when=world.at(DAY))
        services.settle_payment(payment)
        reversal = services.charge_back_payment(payment, now=world.at(DAY, 15))
    assert reversal.batch_id == payment.batch_id
    (entry,) = _entry(world, payment.batch.batch_id, payment, negative=True)
    assert entry["entry_type"] == "Payment"
    assert entry["reason"] == "CHARGE BACK"
    assert Decimal(entry["amount"]) == Decimal("-500.00")
    assert Decimal(world.ledger()[payment.batch.batch_id]["total"]) == Decimal("0.00")
    assert Posting.objects.get(reversal=reversal).state == PostingState.POSTED


def test_ach_refund_after_deposit_goes_to_a_negative_reversals_batch(world, deliver):
    with deliver():
        payment = world.pay(OTHER, "800.00", "ach", when=world.at(DAY))
    world.close_batches(now=world.at(DAY, 22))  # the original batch is settled at the cutoff
    with deliver():
        world.settle_and_deposit(payment, when=world.at(DAY + dt.timedelta(days=1), 18))
        reversal = services.refund_payment(payment, now=world.at(DAY + dt.timedelta(days=2)))
    assert reversal.batch.kind == BatchKind.REVERSALS
    assert reversal.batch_id != payment.batch_id
    ledger = world.ledger()
    assert Decimal(ledger[payment.batch.batch_id]["total"]) == Decimal("800.00")
    # In the sandbox (its default, return_batch=separate): a batch of its own, numbered by the
    # original ClientTransactionID. Where a real eSite books it is not known.
    rev_batch = ledger[_txn(payment)]
    assert Decimal(rev_batch["total"]) == Decimal("-800.00")
    (entry,) = rev_batch["entries"]
    assert entry["reason"] == "REFUNDED"
    assert entry["client_transaction_id"] == _txn(payment)
    # What a person resolving it is told to look for: both places, and that it is not known.
    provider = world.connection.get_provider()
    where = provider.where_to_look(Posting.objects.get(reversal=reversal))
    jnl, esite_no = payment.batch.batch_id, ledger[payment.batch.batch_id]["batch_no"]
    assert (
        f"under External Batch {jnl} (eSite Batch {esite_no}) or a separate External "
        f"Batch {_txn(payment)} (where eSite books a return is not known)" in where
    )
    assert f"External Batch {jnl} (eSite Batch {esite_no})" in provider.where_to_look(
        Posting.objects.get(payment=payment, reversal=None)
    )


def test_ach_void_same_day_reaches_amsi_and_nets_the_batch(world, deliver):
    with deliver():
        keep = world.pay(THIRD, "100.00", "ach", when=world.at(DAY, 9))
        payment = world.pay(OTHER, "250.00", "ach", when=world.at(DAY, 10))
        reversal = services.void_payment(payment, now=world.at(DAY, 20))
    assert reversal.batch_id == payment.batch_id == keep.batch_id
    (entry,) = _entry(world, payment.batch.batch_id, payment, negative=True)
    assert entry["reason"] == "VOIDED"
    assert Decimal(world.ledger()[payment.batch.batch_id]["total"]) == Decimal("100.00")


def test_a_void_waiting_for_its_payment_follows_it_once_a_person_has_it_posted(
    world, deliver, settings
):
    """eSite answers AddPayment with an HTTP 500: the payment's outcome is unknown, so it waits
    for a person (duplicates not confirmed), and its void waits for it. The person looks, finds
    nothing and has it posted: the void is sent right after, not at its own next look."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "RETRY_BACKOFF_SECONDS": [60, 3600]}
    world.control.add_fault("http500", "AddPayment", count=1)
    with deliver():
        payment = world.pay(OTHER, "250.00", "ach", when=world.at(DAY, 10))
        reversal = services.void_payment(payment, now=world.at(DAY, 11))
    void = Posting.objects.get(reversal=reversal)
    assert world.posting(payment).state == PostingState.UNCONFIRMED
    assert void.state == PostingState.RETRYING and void.error_code == "WAITING_FOR_PAYMENT"
    assert void.next_attempt_at > timezone.now() + dt.timedelta(seconds=30)
    assert payment.batch.batch_id not in world.ledger()  # nothing reached eSite
    with deliver():
        assert world.resolve_unconfirmed() == 1  # not there: post it
    assert world.posting(payment).state == PostingState.POSTED
    void.refresh_from_db()
    assert void.state == PostingState.POSTED, void.last_error
    (entry,) = _entry(world, payment.batch.batch_id, payment, negative=True)
    assert entry["reason"] == "VOIDED"
    assert Decimal(world.ledger()[payment.batch.batch_id]["total"]) == Decimal("0.00")


def test_void_on_the_next_property_day_is_refused_and_nothing_reaches_amsi(world, deliver):
    with deliver():
        payment = world.pay(OTHER, "250.00", "ach", when=world.at(DAY, 23, 30))
    with pytest.raises(services.ServiceError, match="only be voided that day"):
        services.void_payment(payment, now=world.at(DAY + dt.timedelta(days=1), 0, 10))
    assert len(world.entries(payment.batch.batch_id)) == 1
    assert not Posting.objects.filter(kind="reversal").exists()


def test_ach_return_before_deposit_is_nsf_return_in_original_batch_with_r_code(world, deliver):
    with deliver():
        payment = world.pay(OTHER, "640.00", "ach", when=world.at(DAY))
        reversal = services.return_payment(payment, "R01", now=world.at(DAY + dt.timedelta(days=1)))
    assert reversal.batch_id == payment.batch_id
    (entry,) = _entry(world, payment.batch.batch_id, payment, negative=True)
    assert entry["entry_type"] == "Return"
    assert entry["reason"] == "NSF"
    assert entry["r_code"] == "R01"
    assert entry["description"].startswith("NSF R01 ")  # the R-code travels in Description
    lease = world.control.lease("001", "01", "102", "2")
    assert lease["nsf_count"] == 1


def test_ach_return_after_deposit_goes_to_a_separate_negative_batch(world, deliver):
    with deliver():
        payment = world.pay(THIRD, "720.00", "ach", when=world.at(DAY))
    world.close_batches(now=world.at(DAY, 22))
    with deliver():
        world.settle_and_deposit(payment, when=world.at(DAY + dt.timedelta(days=1), 18))
        reversal = services.return_payment(payment, "R02", now=world.at(DAY + dt.timedelta(days=3)))
    assert reversal.batch.kind == BatchKind.REVERSALS
    rev = world.ledger()[_txn(payment)]
    assert Decimal(rev["total"]) == Decimal("-720.00")
    assert rev["entries"][0]["entry_type"] == "Return"
    assert rev["entries"][0]["r_code"] == "R02"


def test_batches_are_settled_by_the_integration_after_the_cutoff(world, deliver):
    with deliver():
        a = world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
        b = world.pay(OTHER, "200.00", "card", when=world.at(DAY, 11))
        c = world.pay(THIRD, "300.00", "ach", when=world.at(DAY, 12))
    # Before the cutoff (22:00 Chicago) nothing is settled ...
    assert world.close_batches(now=world.at(DAY, 21, 59)) == []
    assert all(not b_["settled"] for b_ in world.ledger().values())
    # ... at the cutoff every batch of the day is, with our totals.
    lines = world.close_batches(now=world.at(DAY, 22, 0))
    assert len(lines) == 2, lines
    ledger = world.ledger()
    for batch, total in ((a.batch, "300.00"), (c.batch, "300.00")):
        assert ledger[batch.batch_id]["settled"] is True
        assert Decimal(ledger[batch.batch_id]["total"]) == Decimal(total)
        assert world.batch_link(batch).settled_amount == Decimal(total)
    assert b.batch_id == a.batch_id
    # Running the job again changes nothing.
    assert world.close_batches(now=world.at(DAY, 22, 5)) == []


def test_a_reversal_reopens_a_settled_batch_and_it_is_settled_again(world, deliver):
    world.control.set_variants(return_batch="original")  # eSite reopens the named batch
    with deliver():
        payment = world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
        other = world.pay(OTHER, "50.00", "card", when=world.at(DAY, 10))
    world.close_batches(now=world.at(DAY, 22))
    assert world.ledger()[payment.batch.batch_id]["settled"] is True
    with deliver():
        services.settle_payment(payment)
        services.charge_back_payment(payment, now=world.at(DAY + dt.timedelta(days=1), 9))
    assert world.ledger()[payment.batch.batch_id]["settled"] is False  # reopened in eSite
    world.close_batches(now=world.at(DAY + dt.timedelta(days=1), 9, 5))
    batch = world.ledger()[payment.batch.batch_id]
    assert batch["settled"] is True
    assert Decimal(batch["total"]) == other.amount


def test_batch_with_a_posting_needing_attention_is_not_settled_and_says_why(world, deliver):
    world.control.patch_lease("001", "01", "102", "2", BlockPaymentAccess="Y")
    with deliver():
        world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
        refused = world.pay(OTHER, "50.00", "card", when=world.at(DAY, 10))
    lines = world.close_batches(now=world.at(DAY, 23))
    assert lines[0].endswith("waiting, 1 posting needs attention")
    link = world.batch_link(refused.batch)
    assert link.needs_attention and link.settle_error.startswith(
        "1 posting in this batch needs attention"
    )
    assert world.ledger()[refused.batch.batch_id]["settled"] is False


def test_refused_settlement_total_needs_attention(world, deliver):
    with deliver():
        payment = world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
    # Someone keys an extra receipt into the same eSite batch by hand.
    from lxml import etree

    from integrations_amsi.client import get_client
    from integrations_amsi.conf import settings_for
    from integrations_amsi.xmldocs import PaymentDoc

    doc = PaymentDoc(
        "001",
        "01",
        "103",
        "3",
        "1001",
        "999999001",
        DAY,
        Decimal("5.00"),
        payment.batch.batch_id,
        "keyed by hand",
        "P",
    )
    get_client(settings_for(world.connection), key=world.connection.pk).ledger(
        "AddPayment", doc.xml(), record="999999001"
    )
    assert etree  # lxml imported for the document builder
    lines = world.close_batches(now=world.at(DAY, 23))
    assert "refused" in lines[0]
    link = world.batch_link(payment.batch)
    assert link.needs_attention
    assert "400" in link.settle_error or "does not equal" in link.settle_error


def test_deposit_report_is_emailed_once_with_every_item(world, deliver):
    with deliver():
        p1 = world.pay(ALLOWED, "100.00", "card", when=world.at(DAY, 9))
        p2 = world.pay(OTHER, "40.00", "card", when=world.at(DAY, 10))
        services.settle_payment(p1)
        services.settle_payment(p2)
        services.charge_back_payment(p2, now=world.at(DAY, 11))
        services.deposit_batch(p1.batch, now=world.at(DAY, 18))
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["manager@maple.example", "office@maple.example"]
    assert p1.batch.batch_id in message.subject
    name, csv_text, mimetype = message.attachments[0]
    assert mimetype == "text/csv"
    assert "001-01-101-1" in csv_text and "001-01-102-2" in csv_text
    assert "Net deposit,100.00" in csv_text
    report = build_report(p1.batch)
    assert report.net == Decimal("100.00")
    assert report.reversals_total == Decimal("-40.00")
    refs = {line.remote_reference for line in report.lines}
    assert "" not in refs  # every line carries its AMSI reference
    from integrations.reports import send_report

    assert send_report(p1.batch.pk) is False  # a repeated task sends nothing
    assert len(mail.outbox) == 1


def test_reconciliation_of_a_whole_day_has_zero_differences(world, deliver):
    today = dt.date.today()
    with deliver():
        a = world.pay(ALLOWED, "100.00", "card")
        b = world.pay(OTHER, "55.55", "ach")
        services.settle_payment(b)
        services.refund_payment(b)
        services.settle_payment(a)
        world.settle_and_deposit(a)
    result = reconcile(world.connection, today.replace(day=1))
    assert result.error == ""
    assert result.differences == [], result.differences
    assert result.summary().endswith("0 differences - our batches match eSite")


def test_reconciliation_lists_every_difference(world, deliver, settings):
    today = dt.date.today()
    with deliver():
        world.pay(ALLOWED, "100.00", "card")
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    missing = world.pay(THIRD, "33.00", "card")  # never delivered
    result = reconcile(world.connection, today.replace(day=1))
    kinds = {d.kind for d in result.differences}
    assert "missing_item" in kinds and "total_differs" in kinds
    assert any(missing.public_id[:10] in d.message for d in result.differences)
    assert not result.ok


def test_reconciliation_with_esite_unreachable_says_why_in_words(world):
    world.server.stop()  # (the world's close() stops it again: harmless)
    result = reconcile(world.connection, dt.date.today().replace(day=1))
    assert result.error.startswith("could not fetch the External Deposits report from http")
    refused = ": connection refused; upload the External Deposits report as a CSV file instead"
    assert refused in result.error
    assert "Error" not in result.error  # no exception class name (httpx.ConnectError)
