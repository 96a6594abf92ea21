"""The outbox: write postings with the event, deliver them at least once, effect exactly once.

Delivery claims a posting (state "in flight" with a claim deadline longer than the task timeout,
which is longer than the SOAP timeout), so two workers can never send the same posting at once;
a claim that outlives its deadline (a worker killed mid-call) marks the outcome unknown. Bounded
attempts, then "needs attention".

An unknown outcome (a reply lost, a timeout, a worker killed mid-call) is never followed by a
blind second write. A provider that can check the remote unattended
(``checks_unknown_outcomes``) checks before writing again; otherwise the posting becomes
"unconfirmed" and waits for a person, who looks in the accounting system and says "found"
(with the receipt) or "not there, post it". A refused login pauses the whole connection: its
postings wait, unspent, until a connection test passes.
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
    LoginRefused,
    PermanentError,
    RetryableError,
)
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingAttempt, PostingKind, PostingState

log = logging.getLogger(__name__)

ACTIVE_STATES = (PostingState.PENDING, PostingState.RETRYING, PostingState.IN_FLIGHT)


class NotAllowed(Exception):
    """A person's action that does not fit the posting's state; the message says why."""


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
        if posting is None or posting.state in (PostingState.POSTED, PostingState.UNCONFIRMED):
            return None  # posted, or waiting for a person to say whether it is there
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
    if Connection.objects.filter(postings__pk=posting_id, paused_at__isnull=False).exists():
        return None  # credentials refused: nothing is sent until a connection test passes
    claimed = claim(posting_id, force=force)
    if claimed is None:
        return None
    posting, attempt = claimed
    provider = posting.connection.get_provider()
    if posting.outcome_unknown and not provider.checks_unknown_outcomes():
        return _finish(posting, attempt, "unconfirmed", None, None)
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
    except LoginRefused as err:
        error, outcome = err, "paused"
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
        elif outcome == "paused":
            # Not this posting's fault: the attempt is given back and the connection paused.
            posting.state = PostingState.RETRYING
            posting.attempts = max(posting.attempts - 1, 0)
            posting.last_error = message
            posting.next_attempt_at = None
            _pause(posting.connection, message)
        elif outcome == "unconfirmed" or (
            outcome == "unknown" and not posting.connection.get_provider().checks_unknown_outcomes()
        ):
            posting.state = PostingState.UNCONFIRMED
            posting.outcome_unknown = True
            posting.next_attempt_at = None
            posting.last_error = (
                message
                or posting.last_error
                or ("the last attempt ended without a reply (its worker stopped mid-call)")
            )
            if outcome == "unknown":
                outcome = "unconfirmed"
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
    """Postings a sweep should (re)deliver: pending/retrying and due, or stale in flight, on a
    connection that is not paused."""
    now = now or timezone.now()
    return Posting.objects.filter(
        Q(state__in=[PostingState.PENDING, PostingState.RETRYING])
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        | Q(state=PostingState.IN_FLIGHT, claimed_until__lt=now),
        connection__paused_at__isnull=True,
    ).order_by("created_at")


def _pause(connection: Connection, reason: str) -> None:
    """Pause a connection's deliveries once (one alert, not one per posting)."""
    updated = Connection.objects.filter(pk=connection.pk, paused_at__isnull=True).update(
        paused_at=timezone.now(), paused_reason=mask(reason)[:2000]
    )
    if updated:
        log.error(
            "connection %s (%s): credentials refused, every posting paused until a connection "
            "test passes: %s",
            connection.property.code,
            connection.provider,
            mask(reason),
        )


def pause_connection(connection: Connection, reason: str) -> None:
    _pause(connection, reason)


def resume_connection(connection: Connection) -> int:
    """Un-pause after a passing connection test; queue what waited. Returns how many."""
    if not Connection.objects.filter(pk=connection.pk, paused_at__isnull=False).update(
        paused_at=None, paused_reason=""
    ):
        return 0
    log.info("connection %s: credentials accepted again, postings resume", connection.pk)
    ids = list(due_postings().filter(connection=connection).values_list("pk", flat=True))
    for posting_id in ids:
        enqueue_on_commit(posting_id)
    return len(ids)


def _person_attempt(posting: Posting, outcome: str, who: str, note: str) -> None:
    now = timezone.now()
    number = (posting.attempt_log.aggregate(n=Max("number"))["n"] or 0) + 1
    PostingAttempt.objects.create(
        posting=posting,
        number=number,
        started_at=now,
        finished_at=now,
        outcome=outcome,
        error=mask(note)[:2000],
        worker=f"person:{who}"[:100],
    )


def retry(posting: Posting) -> None:
    """A person asked for another try (admin action): reset the budget, deliver now.

    An unconfirmed posting is not retried blindly: unless its provider can check the remote
    unattended, the person must first say whether it is there (``mark_found`` /
    ``post_unconfirmed``).
    """
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
        if (
            posting.outcome_unknown
            and not posting.connection.get_provider().checks_unknown_outcomes()
        ):
            raise NotAllowed(
                f"posting {posting.key} may already be in the accounting system: look for it "
                "there, then choose 'found' or 'not there, post it'"
            )
        if posting.state == PostingState.NEEDS_ATTENTION:
            posting.attempts = 0  # a fresh budget of attempts
        posting.state = PostingState.RETRYING
        posting.next_attempt_at = None
        posting.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        enqueue_on_commit(posting.pk)


def mark_found(posting: Posting, *, receipt: str, who: str, note: str = "") -> Posting:
    """A person found an unconfirmed posting in the accounting system: it is posted."""
    receipt = (receipt or "").strip()
    if not receipt:
        raise NotAllowed("give the receipt (reference) number shown in the accounting system")
    with transaction.atomic():
        posting = Posting.objects.select_for_update().get(pk=posting.pk)
        if posting.state != PostingState.UNCONFIRMED:
            raise NotAllowed(
                f"posting {posting.key} is {posting.get_state_display()}, not unconfirmed"
            )
        posting.connection.get_provider().confirmed_by_person(posting, receipt)
        posting.state = PostingState.POSTED
        posting.posted_at = timezone.now()
        posting.outcome_unknown = False
        posting.next_attempt_at = None
        posting.remote_reference = receipt[:100]
        posting.last_error = ""
        posting.save()
        _person_attempt(posting, "found_by_person", who, f"receipt {receipt}. {note}".strip())
        from integrations import signals

        transaction.on_commit(
            lambda p=posting: signals.posting_posted.send(sender=Posting, posting=p)
        )
    log.info("posting %s marked found (receipt %s) by %s", posting.key, receipt, who)
    return posting


def post_unconfirmed(posting: Posting, *, who: str, note: str = "") -> Posting:
    """A person looked and the posting is not in the accounting system: send it (once)."""
    with transaction.atomic():
        posting = Posting.objects.select_for_update().get(pk=posting.pk)
        if posting.state != PostingState.UNCONFIRMED:
            raise NotAllowed(
                f"posting {posting.key} is {posting.get_state_display()}, not unconfirmed"
            )
        last = posting.attempt_log.exclude(finished_at=None).order_by("-number").first()
        wait = dt.timedelta(seconds=get_setting("UNKNOWN_OUTCOME_DELAY_SECONDS"))
        if last and last.finished_at + wait > timezone.now():
            raise NotAllowed(
                f"posting {posting.key}: a write that was slow may still land; look again "
                f"after {timezone.localtime(last.finished_at + wait):%H:%M:%S} before posting it"
            )
        posting.state = PostingState.RETRYING
        posting.outcome_unknown = False
        posting.attempts = 0
        posting.next_attempt_at = None
        posting.save()
        _person_attempt(posting, "not_found_by_person", who, note or "not found: post it")
        enqueue_on_commit(posting.pk)
    log.info("posting %s: not found in the accounting system by %s, posting it", posting.key, who)
    return posting
