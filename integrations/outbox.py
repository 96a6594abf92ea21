"""The outbox: write postings with the event, deliver them at least once, effect exactly once.

Delivery claims a posting (state "in flight" with a claim deadline longer than the task timeout,
which is longer than the SOAP timeout), so two workers can never send the same posting at once;
a claim that outlives its deadline (a worker killed mid-call) marks the outcome unknown, and the
provider checks the remote before any new write. Bounded attempts, then "needs attention".
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import traceback

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from integrations.conf import get_setting
from integrations.exceptions import (
    AlreadyDone,
    AmbiguousOutcome,
    IntegrationError,
    PermanentError,
    RetryableError,
)
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingAttempt, PostingKind, PostingState

log = logging.getLogger(__name__)

ACTIVE_STATES = (PostingState.PENDING, PostingState.RETRYING, PostingState.IN_FLIGHT)


def connection_for(prop) -> Connection | None:
    return Connection.objects.filter(property=prop, enabled=True).first()


def create_payment_posting(payment) -> Posting | None:
    """Called inside the payment's transaction; idempotent (one posting per payment)."""
    connection = connection_for(payment.batch.property)
    if connection is None:
        return None
    posting, created = Posting.objects.get_or_create(
        payment=payment,
        kind=PostingKind.PAYMENT,
        defaults={"connection": connection, "key": payment.reference.hex},
    )
    if created:
        enqueue_on_commit(posting.pk)
    return posting


def create_reversal_posting(reversal) -> Posting | None:
    connection = connection_for(reversal.batch.property)
    if connection is None:
        return None
    posting, created = Posting.objects.get_or_create(
        reversal=reversal,
        kind=PostingKind.REVERSAL,
        defaults={
            "connection": connection,
            "payment": reversal.payment,
            "key": reversal.reference.hex,
        },
    )
    if created:
        enqueue_on_commit(posting.pk)
    return posting


def enqueue_on_commit(posting_id: int) -> None:
    transaction.on_commit(lambda: enqueue(posting_id))


def enqueue(posting_id: int) -> None:
    if get_setting("DELIVERY") == "manual":
        return
    Posting.objects.filter(pk=posting_id).update(enqueued_at=timezone.now())
    enqueue_task("integrations.tasks.deliver_posting", posting_id, group="integrations.postings")


def enqueue_task(func: str, object_id: int, *, group: str = "integrations") -> None:
    """Queue a django-q2 task that takes one id (never anything secret)."""
    from django_q.tasks import async_task

    async_task(
        func,
        object_id,
        task_name=f"{func.rsplit('.', 1)[-1]}-{object_id}-{timezone.now().timestamp():.3f}",
        group=group,
        sync=(get_setting("DELIVERY") == "sync"),
    )


def _backoff(attempts: int) -> dt.timedelta:
    steps = list(get_setting("RETRY_BACKOFF_SECONDS")) or [60]
    return dt.timedelta(seconds=steps[min(attempts, len(steps)) - 1])


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(posting_id: int, *, force: bool = False) -> tuple[Posting, PostingAttempt] | None:
    """Take a posting for one attempt, or None when it is not ours to run now."""
    now = timezone.now()
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update()
            .select_related("connection")
            .filter(pk=posting_id)
            .first()
        )
        if posting is None or posting.state == PostingState.POSTED:
            return None
        if posting.state == PostingState.NEEDS_ATTENTION and not force:
            return None
        if posting.state == PostingState.IN_FLIGHT:
            if posting.claimed_until and posting.claimed_until > now:
                return None  # another worker holds it
            # The holder died or hung mid-call: whatever it sent may have landed.
            posting.outcome_unknown = True
        elif posting.next_attempt_at and posting.next_attempt_at > now and not force:
            return None
        posting.state = PostingState.IN_FLIGHT
        posting.enqueued_at = None  # the queued task has been taken
        posting.attempts += 1
        posting.claimed_until = now + dt.timedelta(seconds=get_setting("CLAIM_SECONDS"))
        posting.save(
            update_fields=[
                "state",
                "attempts",
                "claimed_until",
                "outcome_unknown",
                "enqueued_at",
                "updated_at",
            ]
        )
        # Numbered over the posting's whole life (a person's retry resets ``attempts``, the
        # budget, not the log).
        number = (posting.attempt_log.aggregate(n=Max("number"))["n"] or 0) + 1
        attempt = PostingAttempt.objects.create(
            posting=posting,
            number=number,
            started_at=now,
            checked_first=posting.outcome_unknown,
            worker=_worker_name(),
        )
    return posting, attempt


WAITING_FOR_PAYMENT = "WAITING_FOR_PAYMENT"


def _payment_state(posting: Posting) -> str | None:
    """For a reversal: the state of its payment's posting (None for a payment or no posting)."""
    if posting.kind != PostingKind.REVERSAL:
        return None
    return (
        Posting.objects.filter(payment_id=posting.payment_id, kind=PostingKind.PAYMENT)
        .values_list("state", flat=True)
        .first()
    )


def deliver(posting_id: int, *, force: bool = False) -> str | None:
    """One delivery attempt. Returns the posting's new state, or None if it was not run."""
    claimed = claim(posting_id, force=force)
    if claimed is None:
        return None
    posting, attempt = claimed
    provider = posting.connection.get_provider()
    outcome = "posted"
    error: Exception | None = None
    delivered = None
    try:
        payment_state = _payment_state(posting)
        if payment_state == PostingState.NEEDS_ATTENTION:
            raise PermanentError(
                "the original payment needs attention; retry this reversal once it is posted",
                provider=provider.id,
                operation="reversal",
                record=posting.key,
                code="PAYMENT_NEEDS_ATTENTION",
            )
        if posting.kind == PostingKind.REVERSAL and payment_state != PostingState.POSTED:
            raise RetryableError(
                "the original payment is not posted yet; the reversal waits for it",
                provider=provider.id,
                operation="reversal",
                record=posting.key,
                code=WAITING_FOR_PAYMENT,
            )
        delivered = provider.deliver(posting)
    except AlreadyDone as err:
        error, outcome = err, "already_done"
    except AmbiguousOutcome as err:
        error, outcome = err, "unknown"
    except RetryableError as err:
        error, outcome = err, "retry"
    except PermanentError as err:
        error, outcome = err, "refused"
    except IntegrationError as err:
        error, outcome = err, "refused"
    except Exception as err:  # noqa: BLE001  (a bug must not lose the posting: ask a person)
        error, outcome = err, "crashed"
        log.exception("posting %s crashed in %s", posting.key, provider.id)
    return _finish(posting, attempt, outcome, delivered, error)


def _finish(posting: Posting, attempt: PostingAttempt, outcome: str, delivered, error) -> str:
    now = timezone.now()
    with transaction.atomic():
        posting = Posting.objects.select_for_update().get(pk=posting.pk)
        message = mask(str(error)) if error else ""
        if outcome == "crashed":
            message = mask(
                f"{type(error).__name__}: {error}\n"
                + "".join(traceback.format_exception(error))[-2000:]
            )
        if isinstance(error, IntegrationError):
            posting.error_code = error.code[:40]
            if error.request:
                posting.request_document = error.request
            if error.response:
                posting.response_document = error.response
        posting.claimed_until = None
        if outcome in ("posted", "already_done"):
            posting.state = PostingState.POSTED
            posting.posted_at = now
            posting.outcome_unknown = False
            posting.next_attempt_at = None
            posting.last_error = "" if outcome == "posted" else message
            if delivered is not None:
                posting.remote_reference = delivered.remote_reference[:100]
                posting.remote_data = delivered.data
                posting.request_document = mask(delivered.request_document)
                posting.response_document = mask(delivered.response_document)
                if delivered.already_there:
                    outcome = "found_posted"
            elif isinstance(error, AlreadyDone):
                posting.remote_reference = error.remote_reference[:100]
        elif outcome in ("retry", "unknown"):
            posting.last_error = message
            if isinstance(error, IntegrationError) and error.code == WAITING_FOR_PAYMENT:
                # Waiting for the payment is not a failed attempt: it must not spend the
                # reversal's budget (a payment with a slow unknown outcome would otherwise
                # push its reversal into "needs attention" while both are fine).
                posting.attempts = max(posting.attempts - 1, 0)
            if outcome == "unknown":
                posting.outcome_unknown = True
            if posting.attempts >= get_setting("MAX_ATTEMPTS"):
                posting.state = PostingState.NEEDS_ATTENTION
                posting.last_error = (
                    f"gave up after {posting.attempts} attempts; last error: {message}"
                )
                posting.next_attempt_at = None
            else:
                posting.state = PostingState.RETRYING
                delay = _backoff(max(posting.attempts, 1))
                if posting.outcome_unknown:
                    delay = max(
                        delay, dt.timedelta(seconds=get_setting("UNKNOWN_OUTCOME_DELAY_SECONDS"))
                    )
                posting.next_attempt_at = now + delay
        else:
            posting.state = PostingState.NEEDS_ATTENTION
            posting.last_error = message
            posting.next_attempt_at = None
        posting.save()
        attempt.finished_at = now
        attempt.outcome = outcome
        attempt.error = message
        attempt.save(update_fields=["finished_at", "outcome", "error"])
        if posting.state == PostingState.POSTED:
            from integrations import signals

            transaction.on_commit(
                lambda p=posting: signals.posting_posted.send(sender=Posting, posting=p)
            )
    level = logging.INFO if posting.state == PostingState.POSTED else logging.WARNING
    log.log(
        level,
        "posting %s (%s %s) attempt %s: %s%s",
        posting.key,
        posting.kind,
        posting.connection.property.code,
        posting.attempts,
        outcome,
        f": {posting.last_error}" if posting.last_error else "",
    )
    return posting.state


def sweepable_postings(now: dt.datetime | None = None, *, grace: float | None = None):
    """Due postings whose delivery task is not already waiting in the queue (or was queued so
    long ago that it must have been lost)."""
    now = now or timezone.now()
    if grace is None:
        grace = get_setting("QUEUE_GRACE_SECONDS")
    lost = now - dt.timedelta(seconds=grace)
    return due_postings(now).filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost))


def _queue_backlog() -> int:
    try:
        from django_q.brokers import get_broker

        return int(get_broker().queue_size() or 0)
    except Exception:  # noqa: BLE001  (an unreachable broker: the sweep's enqueue will say so)
        return 0


def sweep(*, grace: float | None = None, limit: int = 500) -> int:
    """Queue delivery for due postings: what the retry-sweep schedule runs.

    While the broker holds a backlog, a task queued earlier is most likely still waiting in it,
    so only postings with no task queued (a retry whose backoff elapsed, a claim that expired)
    are queued; once the queue has drained, a task queued more than ``grace`` seconds ago is
    presumed lost and queued again. Either way nothing floods the queue with duplicates.
    """
    candidates = sweepable_postings(grace=grace)
    if _queue_backlog() > get_setting("SWEEP_QUEUE_LIMIT"):
        candidates = candidates.filter(enqueued_at__isnull=True)
    ids = list(candidates.values_list("pk", flat=True)[:limit])
    for posting_id in ids:
        enqueue(posting_id)
    return len(ids)


def due_postings(now: dt.datetime | None = None):
    """Postings a sweep should (re)deliver: pending/retrying and due, or stale in flight."""
    now = now or timezone.now()
    return Posting.objects.filter(
        Q(state__in=[PostingState.PENDING, PostingState.RETRYING])
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        | Q(state=PostingState.IN_FLIGHT, claimed_until__lt=now)
    ).order_by("created_at")


def retry(posting: Posting) -> None:
    """A person asked for another try (admin action): reset the budget, deliver now."""
    with transaction.atomic():
        posting = Posting.objects.select_for_update().get(pk=posting.pk)
        if posting.state == PostingState.POSTED:
            return
        if (
            posting.state == PostingState.IN_FLIGHT
            and posting.claimed_until
            and (posting.claimed_until > timezone.now())
        ):
            return
        if posting.state == PostingState.NEEDS_ATTENTION:
            posting.attempts = 0  # a fresh budget of attempts
        posting.state = PostingState.RETRYING
        posting.next_attempt_at = None
        posting.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        enqueue_on_commit(posting.pk)
