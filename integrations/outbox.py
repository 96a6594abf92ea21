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
postings wait, unspent, until a connection test passes. A disabled connection holds its
postings the same way (written with their payment, delivered once it is enabled again).

Nothing a person or a tool asks for skips the unknown-outcome wait: a retry, a forced delivery
or a claim taken over from a dead worker is not sent before the last attempt's end (for one that
never finished, its claim deadline) plus ``UNKNOWN_OUTCOME_DELAY_SECONDS``. Attempts that never
finish count: once the budget is spent, the claim gives up instead of claiming again.
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
    """The property's connection, enabled or not: a disabled one holds its postings until it
    is enabled again (none is lost while a property is switched off)."""
    return Connection.objects.filter(property=prop).first()


def _holds(connection: Connection) -> bool:
    """Whether a connection's postings wait (disabled, or paused after a refused login)."""
    return not connection.enabled or connection.paused_at is not None


def create_payment_posting(payment, *, connection: Connection | None = None) -> Posting | None:
    """Called inside the payment's transaction; idempotent (one posting per payment)."""
    connection = connection or connection_for(payment.batch.property)
    if connection is None:
        return None
    posting, created = Posting.objects.get_or_create(
        payment=payment,
        kind=PostingKind.PAYMENT,
        defaults={"connection": connection, "key": payment.reference.hex},
    )
    if created and not _holds(connection):
        enqueue_on_commit(posting.pk)
    return posting


def create_reversal_posting(reversal, *, connection: Connection | None = None) -> Posting | None:
    connection = connection or connection_for(reversal.batch.property)
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
    if created and not _holds(connection):
        enqueue_on_commit(posting.pk)
    return posting


def enqueue_on_commit(posting_id: int) -> None:
    transaction.on_commit(lambda: enqueue(posting_id))


def enqueue(posting_id: int) -> bool:
    """Queue a posting's delivery task. Never raises: it runs after the payment committed
    (``on_commit``), where an exception would turn a taken payment into an HTTP 500. When the
    broker cannot be reached (Redis down, the ORM broker's database error) the posting is left
    with ``enqueued_at`` empty and the retry sweep queues it once the broker is back."""
    if get_setting("DELIVERY") == "manual":
        return False
    try:
        Posting.objects.filter(pk=posting_id).update(enqueued_at=timezone.now())
        enqueue_task(
            "integrations.tasks.deliver_posting", posting_id, group="integrations.postings"
        )
    except Exception as err:  # noqa: BLE001  (the broker is down: the sweep will queue it)
        try:
            Posting.objects.filter(pk=posting_id).update(enqueued_at=None)
        except Exception:  # noqa: BLE001, S110  (the database is down too: enqueued_at may stay
            pass  # set; the sweep presumes such a task lost after QUEUE_GRACE_SECONDS)
        log.warning(
            "posting %s: its delivery could not be queued (%s: %s); it waits for the retry sweep",
            posting_id,
            type(err).__name__,
            mask(str(err))[:500],
        )
        return False
    return True


def enqueue_task(func: str, object_id: int, *, group: str = "integrations") -> None:
    """Queue a django-q2 task that takes one id (never anything secret). Raises when the broker
    cannot be reached (``enqueue`` catches that for postings)."""
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


def _can_check(connection: Connection) -> bool:
    """Whether the connection's provider may settle an unknown outcome unattended. A provider
    that cannot even read its settings cannot: the posting waits for a person."""
    try:
        return bool(connection.get_provider().checks_unknown_outcomes())
    except Exception:  # noqa: BLE001  (misconfigured: the safe answer is "no")
        log.warning("connection %s: cannot tell whether it checks unknown outcomes", connection.pk)
        return False


def _unknown_outcome_not_before(posting: Posting) -> dt.datetime | None:
    """When a write whose outcome is unknown may be checked (or sent again): the last
    attempt's end (for one that never finished, its claim deadline: its worker was stopped by
    then) plus ``UNKNOWN_OUTCOME_DELAY_SECONDS``. A slow remote may still be booking it before."""
    last = posting.attempt_log.exclude(worker__startswith="person:").order_by("-number").first()
    if last is None:
        return None
    if last.finished_at is not None:
        ended = last.finished_at
    else:
        # A posting's ``claimed_until`` is kept until its attempt finishes: for a dead one it
        # still holds that attempt's deadline.
        ended = posting.claimed_until or (
            last.started_at + dt.timedelta(seconds=get_setting("CLAIM_SECONDS"))
        )
    return ended + dt.timedelta(seconds=get_setting("UNKNOWN_OUTCOME_DELAY_SECONDS"))


def _give_up(posting: Posting, checks: bool) -> None:
    """The attempt budget is spent by attempts that never finished (worker killed, hung, task
    timeout): stop here, for a person, instead of claiming again (inside claim's transaction)."""
    unknown = posting.outcome_unknown
    detail = posting.last_error or "none recorded"
    if unknown and not checks:
        posting.state = PostingState.UNCONFIRMED
        posting.last_error = (
            f"gave up after {posting.attempts} attempts; the last one never finished (its "
            "worker stopped or timed out mid-call), so it may have been written: look for it "
            f"before posting it again. Last error: {detail}"
        )
    else:
        posting.state = PostingState.NEEDS_ATTENTION
        posting.last_error = f"gave up after {posting.attempts} attempts; " + (
            "the last one never finished (its worker stopped or timed out mid-call; a retry "
            f"checks first whether it was written). Last error: {detail}"
            if unknown
            else f"last error: {detail}"
        )
    posting.next_attempt_at = None
    posting.enqueued_at = None  # claimed_until stays: the dead attempt's deadline
    posting.save()
    log.warning("posting %s: %s", posting.key, posting.last_error)


def claim(posting_id: int, *, force: bool = False) -> tuple[Posting, PostingAttempt] | None:
    """Take a posting for one attempt, or None when it is not ours to run now.

    ``force`` (a tool asking for an attempt now) skips the backoff, a "needs attention" stop and
    the attempt budget, never the unknown-outcome wait nor a held connection.
    """
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
        if _holds(posting.connection):
            return None  # disabled or paused: held, unspent
        if posting.state == PostingState.NEEDS_ATTENTION and not force:
            return None
        if posting.state == PostingState.IN_FLIGHT:
            if posting.claimed_until and posting.claimed_until > now:
                return None  # another worker holds it
            # The holder died or hung mid-call: whatever it sent may have landed.
            posting.outcome_unknown = True
        elif posting.next_attempt_at and posting.next_attempt_at > now and not force:
            return None
        if not force and posting.attempts >= get_setting("MAX_ATTEMPTS"):
            _give_up(posting, _can_check(posting.connection))
            return None
        if posting.outcome_unknown and _can_check(posting.connection):
            not_before = _unknown_outcome_not_before(posting)
            if not_before and not_before > now:
                # Too early to check: a slow write may still land. Wait (a force too).
                posting.state = PostingState.RETRYING
                posting.next_attempt_at = not_before
                posting.enqueued_at = None  # claimed_until stays: the dead attempt's deadline
                posting.save()
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
PAYMENT_NOT_POSTED = "PAYMENT_NOT_POSTED"
PAYMENT_NEEDS_ATTENTION = "PAYMENT_NEEDS_ATTENTION"


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _payment_wait_delay(waited: dt.timedelta) -> dt.timedelta:
    """Growing waits for a reversal's payment: as long as it has waited so far, between the
    first and the last backoff step (5 s, 5 s, 10 s, 20 s ... 1 h with the defaults)."""
    steps = list(get_setting("RETRY_BACKOFF_SECONDS")) or [60]
    seconds = min(max(waited.total_seconds(), float(steps[0])), float(steps[-1]))
    return dt.timedelta(seconds=seconds)


def _wait_for_payment(posting_id: int, *, force: bool = False) -> str | None:
    """A reversal is not sent before its payment is posted. Returns the reversal's new state
    when it must wait or stop, None when it may go on to a normal attempt.

    Waiting spends no attempt and writes no attempt row; the waits grow, and are bounded by
    ``PAYMENT_WAIT_SECONDS`` from when it started waiting, after which the reversal needs
    attention. A payment with no posting at all (taken before the connection existed) or one
    needing attention stops the reversal at once, saying so.
    """
    now = timezone.now()
    states = [PostingState.PENDING, PostingState.RETRYING]
    if force:
        states.append(PostingState.NEEDS_ATTENTION)
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update()
            .select_related("connection", "payment")
            .filter(pk=posting_id, kind=PostingKind.REVERSAL, state__in=states)
            .first()
        )
        if posting is None or _holds(posting.connection):
            return None
        if posting.next_attempt_at and posting.next_attempt_at > now and not force:
            return None
        paid = (
            Posting.objects.filter(payment_id=posting.payment_id, kind=PostingKind.PAYMENT)
            .only("key", "state", "last_error")
            .first()
        )
        if paid is not None and paid.state == PostingState.POSTED:
            if posting.waiting_since is not None:
                posting.waiting_since = None
                posting.save(update_fields=["waiting_since", "updated_at"])
            return None
        then = " then retry this reversal"
        if paid is None:
            code = PAYMENT_NOT_POSTED
            reason = (
                f"its payment {posting.payment.public_id} is not posted: it has no posting (it "
                f"was taken before this connection existed). Backfill it from the connection's "
                f"admin page, or enter it in {posting.connection.get_provider().name} by hand;"
                + then
            )
        elif paid.state == PostingState.NEEDS_ATTENTION:
            code = PAYMENT_NEEDS_ATTENTION
            reason = (
                f"its payment {paid.key} is not posted: it needs attention "
                f"({paid.last_error[:300]}); once it is posted,{then}"
            )
        else:
            since = posting.waiting_since or now
            limit = float(get_setting("PAYMENT_WAIT_SECONDS"))
            if (now - since).total_seconds() < limit:
                posting.state = PostingState.RETRYING
                posting.waiting_since = since
                posting.error_code = WAITING_FOR_PAYMENT
                posting.last_error = (
                    f"waiting for its payment {paid.key} ({paid.get_state_display().lower()}) "
                    f"to be posted; gives up after {_duration(limit)}"
                )
                posting.next_attempt_at = now + _payment_wait_delay(now - since)
                posting.enqueued_at = None
                posting.save()
                return posting.state
            code = PAYMENT_NOT_POSTED
            last = f" (last error: {paid.last_error[:300]})" if paid.last_error else ""
            reason = (
                f"its payment {paid.key} is not posted: still "
                f"{paid.get_state_display().lower()} after {_duration(limit)} of waiting{last}; "
                f"once it is posted,{then}"
            )
        posting.state = PostingState.NEEDS_ATTENTION
        posting.waiting_since = None
        posting.error_code = code
        posting.last_error = reason
        posting.next_attempt_at = None
        posting.enqueued_at = None
        posting.save()
    log.warning("reversal posting %s needs attention: %s", posting.key, reason)
    return posting.state


def deliver(posting_id: int, *, force: bool = False) -> str | None:
    """One delivery attempt. Returns the posting's new state, or None if it was not run."""
    held = Connection.objects.filter(postings__pk=posting_id).filter(
        Q(enabled=False) | Q(paused_at__isnull=False)
    )
    if held.exists():
        # Disabled, or credentials refused: nothing is sent until it is enabled again / a
        # connection test passes (which queues what waited). The task has been taken.
        Posting.objects.filter(pk=posting_id, enqueued_at__isnull=False).update(enqueued_at=None)
        return None
    waited = _wait_for_payment(posting_id, force=force)
    if waited is not None:
        return waited
    claimed = claim(posting_id, force=force)
    if claimed is None:
        return None
    posting, attempt = claimed
    provider = posting.connection.get_provider()
    if posting.outcome_unknown and not _can_check(posting.connection):
        return _finish(posting, attempt, "unconfirmed", None, None)
    outcome = "posted"
    error: Exception | None = None
    delivered = None
    try:
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
            outcome == "unknown" and not _can_check(posting.connection)
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
    connection that is enabled and not paused."""
    now = now or timezone.now()
    return Posting.objects.filter(
        Q(state__in=[PostingState.PENDING, PostingState.RETRYING])
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        | Q(state=PostingState.IN_FLIGHT, claimed_until__lt=now),
        connection__enabled=True,
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
    return queue_waiting(connection)


def queue_waiting(connection: Connection) -> int:
    """Queue (after commit) every posting of the connection that is due: what a disabled or
    paused connection held. Returns how many; none while it is still held."""
    ids = list(due_postings().filter(connection=connection).values_list("pk", flat=True))
    for posting_id in ids:
        enqueue_on_commit(posting_id)
    return len(ids)


def enable_connection(connection: Connection) -> int:
    """Enable a connection and queue the postings it held while disabled. Returns how many."""
    with transaction.atomic():
        changed = Connection.objects.filter(pk=connection.pk, enabled=False).update(
            enabled=True, updated_at=timezone.now()
        )
        connection.enabled = True
        queued = queue_waiting(connection)
    if changed:
        log.info(
            "connection %s (%s) enabled: %s held posting(s) queued",
            connection.property.code,
            connection.provider,
            queued,
        )
    return queued


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


def retry(posting: Posting) -> dt.datetime | None:
    """A person asked for another try (admin action): reset the budget, deliver now.

    Never a blind write: a posting whose last attempt may have written (an unknown outcome, or
    a claim that expired because its worker died) is only tried again by a provider that checks
    unattended, and not before the unknown-outcome wait has passed (returned: when it will
    run; None: now). Otherwise it becomes "unconfirmed" and NotAllowed says what to do: the
    person looks in the accounting system first (``mark_found`` / ``post_unconfirmed``).
    """
    now = timezone.now()
    refusal = ""
    when = None
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update().select_related("connection").get(pk=posting.pk)
        )
        if posting.state == PostingState.POSTED:
            return None
        if (
            posting.state == PostingState.IN_FLIGHT
            and posting.claimed_until
            and (posting.claimed_until > now)
        ):
            return None  # an attempt is running now
        if posting.state == PostingState.IN_FLIGHT:
            # Its worker died mid-call (the claim expired): whatever it sent may have landed.
            posting.outcome_unknown = True
            if not posting.last_error:
                posting.last_error = "the last attempt ended without a reply (its worker stopped)"
        if posting.outcome_unknown and not _can_check(posting.connection):
            refusal = (
                f"posting {posting.key} may already be in the accounting system: look for it "
                "there, then choose 'found' or 'not there, post it'"
            )
            if posting.state != PostingState.UNCONFIRMED:
                posting.state = PostingState.UNCONFIRMED
                posting.next_attempt_at = None
                posting.enqueued_at = None
                posting.save()
        else:
            if posting.state == PostingState.NEEDS_ATTENTION:
                posting.attempts = 0  # a fresh budget of attempts
            if posting.outcome_unknown:
                not_before = _unknown_outcome_not_before(posting)
                when = not_before if not_before and not_before > now else None
            posting.state = PostingState.RETRYING
            posting.next_attempt_at = when
            posting.waiting_since = None  # a reversal waits for its payment afresh
            posting.save()
            if when is None:
                enqueue_on_commit(posting.pk)
            # else: the retry sweep queues it once the wait is over
    if refusal:
        raise NotAllowed(refusal)
    return when


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
        # From the last attempt's end, or for one that never finished (its worker died) from
        # its claim deadline: a write that was slow may still land until then.
        not_before = _unknown_outcome_not_before(posting)
        if not_before and not_before > timezone.now():
            raise NotAllowed(
                f"posting {posting.key}: a write that was slow may still land; look again "
                f"after {timezone.localtime(not_before):%H:%M:%S} before posting it"
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
