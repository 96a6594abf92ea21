"""Queueing a posting's task with as few commits as the broker allows, and a finish that
updates the claimed posting only while the claim is still its own (docs/performance.md)."""

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
from integrations.models import Connection, FakeRemoteEntry, Posting, PostingState
from integrations.models.posting import AttemptOutcome
from rentplatform import services
from tests.factories import lease_with_resident


@pytest.fixture
def lease():
    lease, _ = lease_with_resident()
    return lease


@pytest.fixture
def connection(lease):
    return Connection.objects.create(property=lease.property, provider="fake")


@pytest.fixture
def delivery(settings):
    def set_mode(mode: str) -> None:
        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": mode}

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
    queued.assert_called_once()
    assert "broker" not in queued.call_args.kwargs
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


@pytest.mark.django_db
def test_a_finish_after_its_claim_was_taken_over_applies_to_the_row_as_it_is(
    connection, lease, delivery
):
    """A worker that outlived its claim deadline finishes after another took the posting
    over: its outcome is applied to the row as it is now (read under its lock), not to the
    copy it claimed (which would put the attempt count back)."""
    delivery("manual")
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    late, late_attempt = outbox.claim(posting.pk)
    Posting.objects.filter(pk=posting.pk).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    taken_over, _attempt = outbox.claim(posting.pk)
    assert taken_over.attempts == 2 and taken_over.outcome_unknown
    state = outbox._finish(
        late, late_attempt, AttemptOutcome.RETRY, None, RetryableError("late reply")
    )
    assert state == PostingState.RETRYING
    posting.refresh_from_db()
    assert posting.attempts == 2 and posting.outcome_unknown
    assert "late reply" in posting.last_error
    late_attempt.refresh_from_db()
    assert late_attempt.outcome == AttemptOutcome.RETRY and late_attempt.finished_at


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
