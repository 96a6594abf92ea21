"""Queueing a posting's own task (drains off) with as few commits as the broker allows, and a
finish that updates the claimed posting only while the claim is still its own
(docs/performance.md)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import connection as db
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from integrations import outbox, tasks
from integrations.exceptions import RetryableError
from integrations.models import FakeRemoteEntry, Posting, PostingState
from integrations.models.posting import AttemptOutcome
from rentplatform import services


@pytest.fixture
def delivery(settings):
    """The delivery mode, with a task per posting (drains off): what these tests are about.
    New postings' drains are tested in test_outbox_drains.py."""

    def set_mode(mode: str, drain: bool = False) -> None:
        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": mode, "DRAIN": drain}

    return set_mode


def _statements(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries]


def _commits(sql: list[str]) -> list[int]:
    return [i for i, text in enumerate(sql) if text.startswith("COMMIT")]


@pytest.mark.django_db(transaction=True)
def test_the_task_row_is_written_in_the_payment_transaction(connection, lease, delivery):
    """With django-q2's ORM broker a payment taken is one commit: payment, posting and the
    posting's task row together; nothing is written after it."""
    delivery("async")
    with CaptureQueriesContext(db) as ctx:
        payment = services.accept_payment(lease, "100.00", "card")
    sql = _statements(ctx)
    assert len(_commits(sql)) == 1, sql
    task_insert = [i for i, text in enumerate(sql) if 'INSERT INTO "django_q_ormq"' in text]
    assert len(task_insert) == 1 and task_insert[0] < _commits(sql)[0], sql
    assert _commits(sql)[0] == len(sql) - 1, sql[_commits(sql)[0] :]
    posting = Posting.objects.get(payment=payment)
    assert posting.enqueued_at is not None
    # The row is django-q2's own signed package, for the cluster to run as any other task.
    (row,) = OrmQ.objects.all()
    task = SignedPackage.loads(row.payload)
    assert task["func"] == "integrations.tasks.deliver_posting"
    assert task["args"] == (posting.pk,)
    assert tasks.deliver_posting(*task["args"]) == PostingState.POSTED
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


@pytest.mark.django_db
def test_a_rolled_back_payment_leaves_no_task(connection, lease, delivery):
    delivery("async")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.accept_payment(lease, "100.00", "card")
            assert OrmQ.objects.count() == 1
            raise RuntimeError("the request failed after the payment was accepted")
    assert OrmQ.objects.count() == 0 and Posting.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_marks_and_queues_in_one_commit(connection, lease, delivery):
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    assert posting.enqueued_at is None and OrmQ.objects.count() == 0
    delivery("async")
    with CaptureQueriesContext(db) as ctx:
        assert outbox.enqueue(posting.pk)
    sql = _statements(ctx)
    assert len(_commits(sql)) == 1, sql
    assert any('INSERT INTO "django_q_ormq"' in text for text in sql)
    assert Posting.objects.get(pk=posting.pk).enqueued_at is not None
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_other_brokers_are_called_after_the_commit(
    connection, lease, delivery, django_capture_on_commit_callbacks
):
    """Redis (or any broker but the ORM one on the postings' database) cannot join the
    transaction: the task is queued once the payment committed, as before."""
    delivery("async")
    with (
        mock.patch("django_q.conf.Conf.ORM", None),
        mock.patch("django_q.tasks.async_task") as queued,
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            payment = services.accept_payment(lease, "100.00", "card")
        queued.assert_not_called()
        for callback in callbacks:
            callback()
        configured = outbox._queue.shared_broker()
    queued.assert_called_once()
    # The process's broker of the configured kind (not one built per task, nor the ORM one
    # that joins the transaction).
    assert queued.call_args.kwargs["broker"] is configured
    assert type(configured).__name__ == "Redis"
    assert queued.call_args.args == (
        "integrations.tasks.deliver_posting",
        Posting.objects.get(payment=payment).pk,
    )


@pytest.mark.django_db
def test_a_task_row_that_cannot_be_written_is_queued_after_the_commit(
    connection, lease, delivery, django_capture_on_commit_callbacks, caplog
):
    delivery("async")
    with mock.patch("django_q.tasks.async_task", side_effect=[ValueError("bad"), None]) as q:
        with django_capture_on_commit_callbacks(execute=True):
            payment = services.accept_payment(lease, "100.00", "card")
    assert q.call_count == 2  # in the transaction (failed), then after the commit
    assert Posting.objects.get(payment=payment).enqueued_at is not None
    assert "queued after commit" in caplog.text


def _taken_over(lease):
    """A posting claimed by a worker that outlived its claim deadline, then claimed again by
    another: (the late worker's copy, its attempt, the posting's pk)."""
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    late, late_attempt = outbox.claim(posting.pk)
    Posting.objects.filter(pk=posting.pk).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    taken_over, _attempt = outbox.claim(posting.pk)
    assert taken_over.attempts == 2 and taken_over.outcome_unknown
    return late, late_attempt, posting.pk


@pytest.mark.django_db
def test_a_late_retry_leaves_the_claim_another_worker_holds(connection, lease, delivery):
    """A worker that outlived its claim deadline finishes after another took the posting
    over: its "retry" is recorded on its attempt, and the row stays the other worker's (in
    flight, its claim): freeing it would let a third worker send it while the second does."""
    delivery("manual")
    late, late_attempt, pk = _taken_over(lease)
    holding = Posting.objects.get(pk=pk)
    state = outbox._finish(
        late, late_attempt, AttemptOutcome.RETRY, None, RetryableError("late reply")
    )
    assert state == PostingState.IN_FLIGHT
    posting = Posting.objects.get(pk=pk)
    assert posting.state == PostingState.IN_FLIGHT
    assert posting.claimed_until == holding.claimed_until and posting.attempts == 2
    late_attempt.refresh_from_db()
    assert late_attempt.outcome == AttemptOutcome.RETRY and late_attempt.finished_at
    assert "late reply" in late_attempt.error


@pytest.mark.django_db
def test_a_late_retry_never_unposts_a_posted_posting(connection, lease, delivery):
    delivery("manual")
    late, late_attempt, pk = _taken_over(lease)
    Posting.objects.filter(pk=pk).update(
        state=PostingState.POSTED,
        claimed_until=None,
        remote_reference="R-2",
        posted_at=timezone.now(),
    )
    state = outbox._finish(
        late, late_attempt, AttemptOutcome.RETRY, None, RetryableError("late reply")
    )
    assert state == PostingState.POSTED
    posting = Posting.objects.get(pk=pk)
    assert posting.state == PostingState.POSTED and posting.next_attempt_at is None


@pytest.mark.django_db
def test_a_late_unknown_outcome_makes_the_next_attempt_check_first(connection, lease, delivery):
    delivery("manual")
    late, late_attempt, pk = _taken_over(lease)
    Posting.objects.filter(pk=pk).update(
        state=PostingState.RETRYING, claimed_until=None, outcome_unknown=False
    )
    state = outbox._finish(
        late, late_attempt, AttemptOutcome.UNKNOWN, None, RetryableError("timed out")
    )
    assert state == PostingState.RETRYING
    assert Posting.objects.get(pk=pk).outcome_unknown


@pytest.mark.django_db
def test_a_late_attempt_that_landed_posts_the_posting(connection, lease, delivery):
    delivery("manual")
    late, late_attempt, pk = _taken_over(lease)
    Posting.objects.filter(pk=pk).update(state=PostingState.RETRYING, claimed_until=None)
    state = outbox._finish(late, late_attempt, AttemptOutcome.ALREADY_DONE, None, None)
    assert state == PostingState.POSTED
    posting = Posting.objects.get(pk=pk)
    assert posting.state == PostingState.POSTED and posting.posted_at is not None


@pytest.mark.django_db
def test_a_finish_while_the_claim_is_its_own_reads_nothing_again(connection, lease, delivery):
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting, attempt = outbox.claim(Posting.objects.get(payment=payment).pk)
    with CaptureQueriesContext(db) as ctx:
        assert (
            outbox._finish(posting, attempt, AttemptOutcome.RETRY, None, RetryableError("x"))
            == PostingState.RETRYING
        )
    selects = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT")]
    assert selects == []
    posting.refresh_from_db()
    assert posting.state == PostingState.RETRYING and posting.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_due_posting_is_claimed_in_one_read_and_one_write(connection, lease, delivery):
    """The common claim (a payment's posting, due, nothing unknown): the row is read, then
    claimed by one conditional write; on PostgreSQL no BEGIN/COMMIT round trips."""
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting_id = Posting.objects.get(payment=payment).pk
    with CaptureQueriesContext(db) as ctx:
        posting, attempt = outbox.claim(posting_id)
    sql = _statements(ctx)
    if db.vendor == "postgresql":
        assert len(sql) == 2 and sql[1].startswith("WITH changed AS (UPDATE"), sql
    assert not any("FOR NO KEY UPDATE" in text or "FOR UPDATE" in text for text in sql)
    stored = Posting.objects.get(pk=posting_id)
    assert stored.state == PostingState.IN_FLIGHT and stored.attempts == 1
    assert stored.claimed_until == posting.claimed_until and stored.enqueued_at is None
    assert list(stored.attempt_log.values_list("pk", "number")) == [(attempt.pk, 1)]


@pytest.mark.django_db(transaction=True)
def test_a_claim_whose_row_changed_after_its_read_is_decided_under_the_lock(
    connection, lease, delivery
):
    """Two workers read the same due posting; the other one claims it between this one's read
    and write: this one's write finds its condition gone, writes nothing, and the decision is
    taken again on the locked row (in flight, another worker's: not ours)."""
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting_id = Posting.objects.get(payment=payment).pk
    from integrations.outbox import _claims

    real = _claims.update_then_insert
    others = []

    def another_worker_first(*args, **kwargs):
        if not others:
            others.append(None)
            others[0] = outbox.claim(posting_id)  # reads, claims and commits first
        return real(*args, **kwargs)

    with mock.patch.object(_claims, "update_then_insert", another_worker_first):
        assert outbox.claim(posting_id) is None
    (other, other_attempt) = others[0]
    stored = Posting.objects.get(pk=posting_id)
    assert stored.state == PostingState.IN_FLIGHT and stored.attempts == 1
    assert stored.claimed_until == other.claimed_until
    assert list(stored.attempt_log.values_list("pk", flat=True)) == [other_attempt.pk]


@pytest.mark.django_db(transaction=True)
def test_an_attempt_number_taken_since_the_read_is_decided_under_the_lock(
    connection, lease, delivery
):
    """A person's action wrote an attempt row between the read and the write (same state and
    attempts): the write's insert is refused by the attempt numbers' unique constraint, the
    posting's row is left as it was, and the locked claim numbers the attempt after it."""
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    from integrations.models import PostingAttempt
    from integrations.outbox import _claims

    real = _claims.update_then_insert

    def a_person_first(*args, **kwargs):
        if not PostingAttempt.objects.filter(posting=posting).exists():
            PostingAttempt.objects.create(
                posting=posting, number=1, started_at=timezone.now(), worker="person:ops"
            )
        return real(*args, **kwargs)

    with mock.patch.object(_claims, "update_then_insert", a_person_first):
        claimed, attempt = outbox.claim(posting.pk)
    assert attempt.number == 2 and claimed.attempts == 1
    stored = Posting.objects.get(pk=posting.pk)
    assert stored.state == PostingState.IN_FLIGHT and stored.attempts == 1
    assert list(stored.attempt_log.values_list("number", flat=True)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_claim_never_writes_over_a_state_changed_since_its_read(connection, lease, delivery):
    """Between the read and the write the posting stopped for a person (no attempt row was
    written, so only the write's condition can see it): nothing is claimed nor written."""
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting_id = Posting.objects.get(payment=payment).pk
    from integrations.outbox import _claims

    real = _claims.update_then_insert

    def stopped_first(*args, **kwargs):
        Posting.objects.filter(pk=posting_id).update(state=PostingState.NEEDS_ATTENTION)
        return real(*args, **kwargs)

    with mock.patch.object(_claims, "update_then_insert", stopped_first):
        assert outbox.claim(posting_id) is None
    stored = Posting.objects.get(pk=posting_id)
    assert stored.state == PostingState.NEEDS_ATTENTION and stored.attempts == 0
    assert not stored.attempt_log.exists()


@pytest.mark.django_db(transaction=True)
def test_a_payment_posting_is_one_insert_from_its_connection(connection, lease, delivery):
    """The posting of a payment taken on an enabled connection: one INSERT ... SELECT from
    the connection's row (no read of it first), written marked queued; the signal repeated
    writes nothing more; a disabled connection's posting is read and written unqueued."""
    delivery("manual")
    with CaptureQueriesContext(db) as ctx:
        payment = services.accept_payment(lease, "100.00", "card")
    sql = _statements(ctx)
    assert not any(text.startswith("SELECT") and "integrations_connection" in text for text in sql)
    (insert,) = [text for text in sql if 'INSERT INTO "integrations_posting"' in text]
    assert 'FROM "integrations_connection" c WHERE c.property_id' in insert
    posting = Posting.objects.get(payment=payment)
    assert posting.connection_id == connection.pk and posting.enqueued_at is None  # manual
    with transaction.atomic():
        again = outbox.create_payment_posting(payment)  # the signal again: the same posting
    assert again.pk == posting.pk and Posting.objects.filter(payment=payment).count() == 1
    delivery("async")
    queued = Posting.objects.get(payment=services.accept_payment(lease, "101.00", "card"))
    assert queued.enqueued_at is not None and OrmQ.objects.count() == 1
    connection.enabled = False
    connection.save()
    held = Posting.objects.get(payment=services.accept_payment(lease, "102.00", "card"))
    assert held.connection_id == connection.pk and held.enqueued_at is None
    assert OrmQ.objects.count() == 1
