"""Real-time posting, end to end: platform event -> outbox -> django-q2 task (sync path) ->
zeep -> the sandbox's ledger over loopback HTTP."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations import outbox
from integrations.models import Posting, PostingState
from integrations.models.posting import AttemptOutcome
from integrations_amsi.identifiers import client_transaction_id
from integrations_amsi.models import AmsiBatchEntry, AmsiBatchLink

ALLOWED = "001-01-101-1"
OTHER = "001-01-102-2"
SHARED_RESI_ON_OTHER_UNIT = "001-02-101-1"  # same ResiID "1" as ALLOWED, another building
NO_CHECKS = "001-01-106-6"


def test_card_payment_posts_in_real_time_into_the_matching_batch(world, deliver):
    with deliver():
        payment = world.pay(ALLOWED, "1250.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED, posting.last_error
    batch = world.ledger()[payment.batch.batch_id]
    assert batch["batch_type"] == "X"
    assert batch["created_by"] == "edex_demo"
    (entry,) = batch["entries"]
    # The ids the client sends: integers of at most 9 digits (our cap; docs/amsi-evidence.md).
    assert entry["client_transaction_id"] == client_transaction_id(posting)
    assert entry["client_transaction_id"] == str(500_000_000 + posting.pk)
    assert re.fullmatch(r"[1-4][0-9]{8}", payment.batch.batch_id)
    assert entry["client_jnl_no"] == payment.batch.batch_id
    assert Decimal(entry["amount"]) == Decimal("1250.00")
    assert entry["payment_type"] == "P"
    assert (entry["bldg_id"], entry["unit_id"], entry["resi_id"]) == ("01", "101", "1")
    local_day = payment.accepted_at.astimezone(world.property.tz).date()
    assert entry["client_transaction_date"] == local_day.strftime("%m/%d/%Y")
    assert entry["client_merchant_id"] == "1001"
    assert posting.remote_reference == entry["evolution_reference"]
    link = world.batch_link(payment.batch)
    assert link.esite_batch_no == str(batch["batch_no"])
    assert link.bank_book == batch["bank_book"]


def test_ach_payment_is_type_c_and_shared_resi_id_goes_to_the_right_unit(world, deliver):
    with deliver():
        payment = world.pay(SHARED_RESI_ON_OTHER_UNIT, "975.50", "ach")
    (entry,) = world.entries(payment.batch.batch_id)
    assert entry["payment_type"] == "C"
    assert (entry["bldg_id"], entry["unit_id"], entry["resi_id"]) == ("02", "101", "1")


def test_card_and_ach_go_to_separate_batches(world, deliver):
    with deliver():
        card = world.pay(ALLOWED, "100.00", "card")
        ach = world.pay(OTHER, "200.00", "ach")
    assert card.batch.batch_id != ach.batch.batch_id
    ledger = world.ledger()
    assert Decimal(ledger[card.batch.batch_id]["total"]) == Decimal("100.00")
    assert Decimal(ledger[ach.batch.batch_id]["total"]) == Decimal("200.00")


def test_lease_blocked_in_amsi_but_not_yet_synced_needs_attention_with_reason(world, deliver):
    world.control.patch_lease("001", "01", "102", "2", BlockPaymentAccess="Y")
    with deliver():
        payment = world.pay(OTHER, "50.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.NEEDS_ATTENTION
    assert "Block Payment Access" in posting.last_error
    assert posting.error_code == "201"
    assert payment.batch.batch_id not in world.ledger()
    # A person fixes it in AMSI and retries from the admin: it posts, once.
    world.control.patch_lease("001", "01", "102", "2", BlockPaymentAccess="N")
    with deliver():
        outbox.retry(posting)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_unknown_lease_is_a_permanent_refusal_naming_the_lease(world, deliver, settings):
    # The lease vanished from AMSI after import.
    from integrations_amsi.models import AmsiLeaseLink
    from rentplatform.services import accept_payment

    lease = world.lease(OTHER)
    AmsiLeaseLink.objects.filter(lease=lease).update(resi_id="999")
    with deliver():
        payment = accept_payment(lease, "50.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.NEEDS_ATTENTION
    assert posting.error_code == "200"
    assert "001-01-102-999" in posting.last_error or "unknown lease" in posting.last_error


@pytest.mark.parametrize("mode", ["lost_reply", "latency"])
def test_ambiguous_outcome_waits_for_a_person_and_is_never_sent_blindly(world, deliver, mode):
    # Nothing public shows that eSite refuses a repeated ClientTransactionID: by default the
    # client does not send it again. The posting is "unconfirmed" until a person looks.
    extra = {"seconds": 4} if mode == "latency" else {}
    world.control.add_fault(mode, "AddPayment", count=1, **extra)
    with deliver():
        payment = world.pay(ALLOWED, "300.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED, posting.last_error
    if mode == "latency":
        import time

        time.sleep(1.5)  # the slow write lands after the client gave up
    entries = world.entries(payment.batch.batch_id)
    assert [e["client_transaction_id"] for e in entries] == [client_transaction_id(posting)]
    where = world.connection.get_provider().where_to_look(posting)
    assert payment.batch.batch_id in where and "300.00" in where and "001-01-101-1" in where
    # Where the evidence shows our batch id: External Deposits' External Batch column.
    jnl = payment.batch.batch_id
    assert f"External Deposits (By Payment) would list it under External Batch {jnl}" in where
    with pytest.raises(outbox.NotAllowed):
        outbox.retry(posting)  # a blind retry is refused, whoever asks
    with deliver():
        world.resolve_unconfirmed()  # the person finds it in eSite
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert posting.remote_reference == entries[0]["evolution_reference"]
    assert len(world.entries(payment.batch.batch_id)) == 1
    outcomes = list(posting.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["unconfirmed", "found_by_person"]


@pytest.mark.parametrize("mode", ["lost_reply", "latency"])
def test_with_duplicates_refused_confirmed_an_unknown_outcome_is_resent_and_posted_once(
    world, deliver, mode, settings
):
    # The operator confirmed that this eSite refuses a repeated ClientTransactionID: the
    # write is sent again (after the wait) and eSite's refusal of the repeat proves it landed.
    # The slow write lands 4 s after it was sent, 1 s after the client gave up (timeout 3 s).
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "UNKNOWN_OUTCOME_DELAY_SECONDS": 2}
    world.confirm_duplicates_refused()
    extra = {"seconds": 4} if mode == "latency" else {}
    world.control.add_fault(mode, "AddPayment", count=1, **extra)
    with deliver():
        payment = world.pay(ALLOWED, "300.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED, posting.last_error
    entries = world.entries(payment.batch.batch_id)
    assert [e["client_transaction_id"] for e in entries] == [client_transaction_id(posting)]
    outcomes = list(posting.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["unknown", "found_posted"]
    assert posting.remote_reference == entries[0]["evolution_reference"]


@pytest.mark.parametrize("mode", ["http500", "reset", "malformed"])
def test_transport_failures_after_sending_are_unconfirmed_then_posted_once(world, deliver, mode):
    world.control.add_fault(mode, "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "410.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED, posting.last_error
    assert payment.batch.batch_id not in world.ledger()  # these faults fire before the write
    with deliver():
        world.resolve_unconfirmed()  # not in eSite: the person says post it
    world.deliver_all()
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED, posting.last_error
    assert len(world.entries(payment.batch.batch_id)) == 1
    outcomes = list(posting.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["unconfirmed", "not_found_by_person", "posted"]


@pytest.mark.parametrize("mode", ["http500", "reset", "malformed"])
def test_transport_failures_with_duplicates_refused_retry_and_post_once(world, deliver, mode):
    world.confirm_duplicates_refused()
    world.control.add_fault(mode, "AddPayment", count=2)
    with deliver():
        payment = world.pay(ALLOWED, "410.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED, posting.last_error
    assert posting.attempts == 3
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_duplicates_accepted_by_esite_still_never_post_twice(world, deliver):
    # An eSite that books a repeated ClientTransactionID again: the client's default (wait
    # for a person) is what keeps the ledger right.
    world.control.set_variants(duplicates="accept")
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "120.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED
    with deliver():
        world.resolve_unconfirmed()
    world.deliver_all()
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_amsi_down_then_back(world, deliver, settings):
    port = world.server.port
    world.server.stop()
    with deliver():
        payment = world.pay(ALLOWED, "77.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.RETRYING
    assert "connect" in posting.last_error.lower()
    world.server.start()
    assert world.server.port == port
    world.deliver_all()
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_payment_at_2330_local_is_posted_with_that_day(world, deliver):
    day = dt.date(2026, 11, 20)
    with deliver():
        payment = world.pay(ALLOWED, "60.00", "card", when=world.at(day, 23, 30))
    (entry,) = world.entries(payment.batch.batch_id)
    assert entry["client_transaction_date"] == "11/20/2026"
    assert payment.batch.business_day == day


def test_no_checks_refuses_ach_on_the_platform_before_anything_is_sent(world):
    from rentplatform.services import PaymentRefused

    with pytest.raises(PaymentRefused) as refused:
        world.pay(NO_CHECKS, "100.00", "ach")
    assert refused.value.code == "cards_only"
    assert Posting.objects.count() == 0


def test_an_already_there_answer_to_a_write_never_in_doubt_stops_for_a_person(
    world, deliver, settings
):
    """A person looked, found nothing and said "not there, post it", but the write had landed:
    the sandbox refuses the repeat with its 206. What a real eSite means by 206 is not known,
    and this write was not in doubt any more, so the answer is not counted as posted: the
    posting needs attention with the code, and the person settles it."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "UNKNOWN_OUTCOME_DELAY_SECONDS": 0}
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "330.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED, posting.last_error
    with deliver():
        outbox.post_unconfirmed(posting, who="ops@example.test", note="not in the batch")
    world.deliver_all()
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION, posting.last_error
    assert posting.error_code == "206" and posting.posted_at is None
    assert len(world.entries(payment.batch.batch_id)) == 1  # booked once, never counted twice
    advice = world.connection.get_provider().explain(posting)
    assert "code 206" in advice.what_happened
    assert "Nothing was counted as posted" in advice.what_to_do
    assert "look in eSite" in advice.what_to_do
    outbox.resolve(posting, who="ops@example.test", note="found it in batch after all")
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED


def test_with_duplicates_refused_the_recorded_code_is_believed_only_for_a_write_in_doubt(
    world, deliver
):
    """The recorded code proves a repeat only where the write may have landed before. The
    same answer to a write nobody doubted (here: the same document sent again by hand through
    the provider) is refused as what it is, a refusal."""
    from integrations.exceptions import AlreadyDone, PermanentError

    world.confirm_duplicates_refused()
    with deliver():
        payment = world.pay(ALLOWED, "275.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED and not posting.outcome_unknown
    provider = world.connection.get_provider()
    with pytest.raises(PermanentError) as refused:
        provider.post_payment(posting)
    assert refused.value.code == "206" and not isinstance(refused.value, AlreadyDone)
    posting.outcome_unknown = True  # an attempt that checks a write that may have landed
    found = provider.post_payment(posting)
    assert found.already_there
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_a_reversal_is_never_resent_unattended_and_its_301_is_not_believed(
    world, deliver, settings
):
    """Nothing shows what eSite answers for a repeated ReturnPayment: with duplicates refused
    confirmed (for payments) a reversal whose reply was lost still waits for a person, and the
    sandbox's "already returned" (301) to a person's wrong "not there" needs attention."""
    from rentplatform import services

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "UNKNOWN_OUTCOME_DELAY_SECONDS": 0}
    world.confirm_duplicates_refused()
    with deliver():
        payment = world.pay(ALLOWED, "190.00", "card")
        services.settle_payment(payment)
    world.control.add_fault("lost_reply", "ReturnPayment", count=1)
    with deliver():
        services.charge_back_payment(payment)
    world.deliver_all()
    reversal = world.posting(payment, "reversal")
    assert reversal.state == PostingState.UNCONFIRMED, reversal.last_error
    assert not world.connection.get_provider().checks_unknown_outcomes(reversal)
    assert world.connection.get_provider().checks_unknown_outcomes(world.posting(payment))
    with deliver():
        outbox.post_unconfirmed(reversal, who="ops@example.test", note="no return seen")
    world.deliver_all()
    reversal.refresh_from_db()
    assert reversal.state == PostingState.NEEDS_ATTENTION, reversal.last_error
    assert reversal.error_code == "301"
    returns = [e for e in world.entries(payment.batch.batch_id) if e["amount"].startswith("-")]
    assert len(returns) == 1


def _finish_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if "amsibatchentry" in q["sql"].lower()]


def test_a_payment_into_a_batch_already_known_is_finished_with_its_landing_in_one_write(
    world, caplog
):
    """The batch's link is read with the lease link, before the call; the posting, its
    attempt and its entry are then written by one statement on PostgreSQL (no BEGIN, no
    COMMIT of a transaction of its own), and nothing is read after the call."""
    first = world.pay(ALLOWED, "100.00", "card")
    assert outbox.deliver(world.posting(first).pk) == PostingState.POSTED
    second = world.pay(OTHER, "200.00", "card")
    assert second.batch == first.batch
    posting = world.posting(second)
    with CaptureQueriesContext(connection) as queries:
        assert outbox.deliver(posting.pk) == PostingState.POSTED
    sql = [q["sql"] for q in queries]
    (read,) = [s for s in sql if '"integrations_amsi_amsibatchlink"' in s]
    assert '"integrations_amsi_amsileaselink"' in read  # the lease link's read, annotated
    (finish,) = _finish_statements(queries)
    if connection.vendor == "postgresql":
        assert finish.startswith("WITH changed AS (UPDATE") and '"integrations_posting"' in finish
        assert sql[-1] == finish  # the last statement: nothing after it
    entry = AmsiBatchEntry.objects.get(posting=posting)
    link = world.batch_link(second.batch)
    assert (entry.link, entry.amount) == (link, Decimal("200.00"))
    assert link.entries.count() == 2
    assert Decimal(world.ledger()[second.batch.batch_id]["total"]) == Decimal("300.00")
    # The log says where it landed, as record_landing says it.
    said = f"payment {posting.key} landed in eSite batch {link.esite_batch_no} (external "
    assert any(said in r.getMessage() for r in caplog.records), caplog.text


def test_a_reply_naming_another_esite_batch_is_followed_as_before(world):
    """What the link knows is compared with the reply: a batch number it does not know yet
    goes through record_landing, which learns it."""
    first = world.pay(ALLOWED, "100.00", "card")
    outbox.deliver(world.posting(first).pk)
    link = world.batch_link(first.batch)
    sandbox_batch_no = link.esite_batch_no
    AmsiBatchLink.objects.filter(pk=link.pk).update(esite_batch_no="999999")
    second = world.pay(OTHER, "200.00", "card")
    assert outbox.deliver(world.posting(second).pk) == PostingState.POSTED
    link.refresh_from_db()
    assert link.esite_batch_no == sandbox_batch_no
    assert AmsiBatchEntry.objects.get(posting=world.posting(second)).link == link


@pytest.mark.parametrize("other_worker", ["holds it", "posted it"])
def test_a_late_attempt_with_its_landing_known_lands_once(world, other_worker):
    """A worker that outlived its claim finishes a write that landed, its landing known: the
    one statement changes nothing (the claim is not its own), and the finish under the row's
    lock applies what the attempt proves, recording the entry once (or not at all, when the
    other worker had it posted already)."""
    first = world.pay(ALLOWED, "100.00", "card")
    outbox.deliver(world.posting(first).pk)
    second = world.pay(OTHER, "200.00", "card")
    pk = world.posting(second).pk
    late, late_attempt = outbox.claim(pk)
    delivered = late.connection.get_provider().deliver(late)
    assert delivered.landing is not None
    Posting.objects.filter(pk=pk).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    taken_over, _ = outbox.claim(pk)
    if other_worker == "posted it":
        Posting.objects.filter(pk=pk).update(
            state=PostingState.POSTED,
            claimed_until=None,
            posted_at=timezone.now(),
            remote_reference=delivered.remote_reference,
        )
    state = outbox._finish(late, late_attempt, AttemptOutcome.POSTED, delivered, None)
    assert state == PostingState.POSTED
    entries = AmsiBatchEntry.objects.filter(posting_id=pk)
    assert entries.count() == (1 if other_worker == "holds it" else 0)
    late_attempt.refresh_from_db()
    assert late_attempt.outcome == AttemptOutcome.POSTED and late_attempt.finished_at
