"""The outbox: postings are written with the event, once, and delivered by a django-q2 task."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from integrations import outbox
from integrations.models import (
    FakeRemoteEntry,
    Posting,
    PostingKind,
    PostingState,
)
from rentplatform import services, signals

pytestmark = pytest.mark.django_db


def test_rolled_back_payment_leaves_no_posting(connection, lease):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.accept_payment(lease, "100.00", "card")
            assert Posting.objects.count() == 1  # written inside the event's transaction
            raise RuntimeError("the request failed after the payment was accepted")
    assert Posting.objects.count() == 0
    assert FakeRemoteEntry.objects.count() == 0


def test_repeated_signal_makes_one_posting(connection, lease, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.accept_payment(lease, "100.00", "card")
        signals.payment_accepted.send(sender=type(payment), payment=payment)
        signals.payment_accepted.send(sender=type(payment), payment=payment)
    assert Posting.objects.filter(payment=payment).count() == 1
    assert FakeRemoteEntry.objects.filter(key=payment.reference.hex).count() == 1


def test_accepted_payment_is_delivered_by_the_task(
    connection, lease, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.accept_payment(lease, "100.00", "ach")
    posting = Posting.objects.get(payment=payment)
    assert posting.state == PostingState.POSTED
    assert posting.kind == PostingKind.PAYMENT
    assert posting.key == payment.reference.hex
    assert posting.remote_reference.startswith("FAKE-")
    assert posting.attempt_log.count() == 1
    # The task succeeded; django-q2 keeps no row for a success (save_limit -1): the attempt
    # row is the record, and no failed task was stored.
    from django_q.models import Task

    assert not Task.objects.filter(func="integrations.tasks.deliver_posting").exists()


def test_no_connection_no_posting(lease):
    services.accept_payment(lease, "100.00", "card")
    assert Posting.objects.count() == 0


def test_retryable_failure_retries_then_posts(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    connection.settings = {"fail": {"mode": "retryable", "count": 2}}
    connection.save()
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    assert outbox.deliver(posting.pk) == PostingState.RETRYING
    posting.refresh_from_db()
    assert "unavailable" in posting.last_error and posting.error_code == "BUSY"
    assert outbox.deliver(posting.pk) == PostingState.RETRYING
    assert outbox.deliver(posting.pk) == PostingState.POSTED
    posting.refresh_from_db()
    assert posting.attempts == 3
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_permanent_failure_needs_attention_and_admin_retry_posts(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    connection.settings = {"fail": {"mode": "permanent", "count": 1}}
    connection.save()
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    assert outbox.deliver(posting.pk) == PostingState.NEEDS_ATTENTION
    posting.refresh_from_db()
    assert "refused" in posting.last_error
    # A sweep does not pick it up again on its own ...
    assert outbox.deliver(posting.pk) is None
    assert not outbox.due_postings().filter(pk=posting.pk).exists()
    # ... a person's retry does.
    outbox.retry(posting)
    assert outbox.deliver(posting.pk) == PostingState.POSTED


def test_attempts_are_bounded(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual", "MAX_ATTEMPTS": 3}
    connection.settings = {"fail": {"mode": "retryable", "count": 10}}
    connection.save()
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    states = [outbox.deliver(posting.pk) for _ in range(3)]
    assert states == [PostingState.RETRYING, PostingState.RETRYING, PostingState.NEEDS_ATTENTION]
    posting.refresh_from_db()
    assert posting.last_error.startswith("gave up after 3 attempts")
    assert FakeRemoteEntry.objects.count() == 0


def test_claimed_posting_is_not_run_twice(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    claimed = outbox.claim(posting.pk)
    assert claimed is not None
    # A second worker (django-q2 re-delivery) finds it in flight and leaves it alone.
    assert outbox.claim(posting.pk) is None
    assert outbox.deliver(posting.pk) is None


def test_worker_killed_mid_call_is_checked_before_reposting(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    # The first worker claims, writes remotely, and dies before recording the outcome.
    posting, _attempt = outbox.claim(posting.pk)
    posting.connection.get_provider().post_payment(posting)
    Posting.objects.filter(pk=posting.pk).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert outbox.due_postings().filter(pk=posting.pk).exists()
    assert outbox.deliver(posting.pk) == PostingState.POSTED
    posting.refresh_from_db()
    assert posting.attempt_log.last().outcome == "found_posted"
    assert posting.attempt_log.last().checked_first
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_reversal_waits_for_its_payment(connection, lease, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payment = services.accept_payment(lease, "100.00", "card")
    reversal = services.void_payment(payment)
    rp = Posting.objects.get(reversal=reversal)
    assert outbox.deliver(rp.pk) == PostingState.RETRYING
    rp.refresh_from_db()
    assert rp.error_code == "WAITING_FOR_PAYMENT"
    assert outbox.deliver(Posting.objects.get(payment=payment, kind="payment").pk) == "posted"
    assert outbox.deliver(rp.pk) == PostingState.POSTED
    entry = FakeRemoteEntry.objects.get(key=rp.key)
    assert entry.amount == -payment.amount
    assert entry.batch_id == payment.batch.batch_id


def test_stored_documents_and_errors_are_masked(connection, lease, settings):
    from integrations.exceptions import RetryableError
    from integrations.logging import mask, register_secret

    register_secret("hunter2-secret")
    err = RetryableError(
        "bad login for hunter2-secret",
        response="<Password>hunter2-secret</Password>",
        operation="AddPayment",
    )
    text = str(err)
    assert "hunter2-secret" not in text and "AddPayment" in text
    assert mask("<UserID>u</UserID><Password>x1</Password>") == (
        "<UserID>u</UserID><Password>********</Password>"
    )


def test_retry_sweep_does_not_requeue_a_posting_whose_task_is_waiting(
    connection, lease, settings, django_capture_on_commit_callbacks
):
    """In a backlog the sweep must not flood the queue with duplicates of waiting tasks; a
    task that waited past QUEUE_GRACE_SECONDS is presumed lost and queued again. (A task per
    posting, drains off; with drains: test_outbox_drains.py.)"""
    from django_q.models import OrmQ

    from integrations import tasks

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": False}
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.accept_payment(lease, "100.00", "card")
    posting = Posting.objects.get(payment=payment)
    assert posting.enqueued_at is not None
    queued = OrmQ.objects.count()
    assert queued == 1
    assert tasks.retry_sweep() == 0
    assert OrmQ.objects.count() == queued
    Posting.objects.filter(pk=posting.pk).update(
        enqueued_at=timezone.now() - dt.timedelta(seconds=301)
    )
    assert tasks.retry_sweep() == 1
    assert OrmQ.objects.count() == queued + 1
    # A worker taking the task clears the mark.
    claimed, _attempt = outbox.claim(posting.pk)
    assert claimed.enqueued_at is None


def test_sweep_during_a_backlog_only_queues_postings_without_a_task(
    connection, lease, settings, django_capture_on_commit_callbacks
):
    """With a backlog in the broker, a task queued long ago is most likely still waiting:
    only a posting with no task queued at all (a due retry) is swept. (A task per posting,
    drains off, makes the backlog: a drain would queue one task for both payments.)"""
    from django_q.models import OrmQ

    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "DELIVERY": "async",
        "DRAIN": False,
        "SWEEP_QUEUE_LIMIT": 1,
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = services.accept_payment(lease, "100.00", "card")
        second = services.accept_payment(lease, "50.00", "card")
    old = timezone.now() - dt.timedelta(seconds=600)
    Posting.objects.filter(payment=first).update(enqueued_at=old)
    Posting.objects.filter(payment=second).update(enqueued_at=None, state=PostingState.RETRYING)
    assert OrmQ.objects.count() == 2  # a backlog over the limit of 1
    assert outbox.sweep() == 1
    assert Posting.objects.get(payment=second).enqueued_at is not None
    assert Posting.objects.get(payment=first).enqueued_at == old
    # Once the queue has drained, the long-waiting task is presumed lost and queued again.
    OrmQ.objects.all().delete()
    assert outbox.sweep() == 1
    assert Posting.objects.get(payment=first).enqueued_at > old
