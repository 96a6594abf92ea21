"""One delivery attempt: a reversal's wait for its payment, the provider call, the outcome."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from contextlib import nullcontext

from django.db import transaction
from django.utils import timezone

from integrations import signals
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
from integrations.models.posting import FINAL_STATES, AttemptOutcome
from rentplatform.prepared import update_row, update_then_update

from ._claims import claim
from ._common import _backoff, _can_check, _holds, log

WAITING_FOR_PAYMENT = "WAITING_FOR_PAYMENT"
PAYMENT_NOT_POSTED = "PAYMENT_NOT_POSTED"
PAYMENT_NEEDS_ATTENTION = "PAYMENT_NEEDS_ATTENTION"
PAYMENT_ABANDONED = "PAYMENT_ABANDONED"


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
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update(of=("self",), no_key=True)
            .select_related("connection", "payment")
            .filter(pk=posting_id, kind=PostingKind.REVERSAL)
            .first()
        )
        if posting is None:
            return None
        return _payment_wait(posting, timezone.now(), force)


def _payment_wait(posting: Posting, now: dt.datetime, force: bool) -> str | None:
    """``_wait_for_payment`` on a reversal posting already locked in the caller's transaction
    (``claim`` calls it so for ``deliver``)."""
    states = [PostingState.PENDING, PostingState.RETRYING]
    if force:
        states.append(PostingState.NEEDS_ATTENTION)
    if posting.state not in states or _holds(posting.connection):
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
            f"its payment {posting.payment.short_id} is not posted: it has no posting (it "
            f"was taken before this connection existed). Backfill it from the connection's "
            f"admin page, or enter it in {posting.connection.get_provider().name} by hand;" + then
        )
    elif paid.state == PostingState.ABANDONED:
        # A person decided the payment will never be posted: nothing to reverse remotely.
        code = PAYMENT_ABANDONED
        reason = (
            f"its payment {posting.payment.short_id} will never be posted: a person abandoned "
            f"its posting. There is nothing in {posting.connection.get_provider().name} to "
            "reverse: abandon this reversal too"
        )
    elif paid.state == PostingState.NEEDS_ATTENTION:
        code = PAYMENT_NEEDS_ATTENTION
        reason = (
            f"its payment {posting.payment.short_id} is not posted: it needs attention "
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
                f"waiting for its payment {posting.payment.short_id} "
                f"({paid.get_state_display().lower()}) to be posted; gives up after "
                f"{_duration(limit)}"
            )
            posting.next_attempt_at = now + _payment_wait_delay(now - since)
            posting.enqueued_at = None
            posting.save()
            return posting.state
        code = PAYMENT_NOT_POSTED
        last = f" (last error: {paid.last_error[:300]})" if paid.last_error else ""
        reason = (
            f"its payment {posting.payment.short_id} is not posted: still "
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


def deliver(posting_id: int, *, force: bool = False, peeked: Posting | None = None) -> str | None:
    """One delivery attempt. Returns the posting's new state, or None if it was not run.
    ``peeked``: the posting as a drain just read it (``claim``)."""
    # A reversal first waits for its payment: checked on the row the claim locks.
    claimed = claim(posting_id, force=force, reversal_wait=_payment_wait, peeked=peeked)
    if claimed is None or isinstance(claimed, str):
        return claimed  # not ours to run now (a held connection: claim says no), or waiting
    posting, attempt = claimed
    provider = posting.connection.get_provider()
    if posting.outcome_unknown and not _can_check(posting):
        return _finish(posting, attempt, AttemptOutcome.UNCONFIRMED, None, None)
    outcome = AttemptOutcome.POSTED
    error: Exception | None = None
    delivered = None
    try:
        delivered = provider.deliver(posting)
    except LoginRefused as err:
        error, outcome = err, AttemptOutcome.PAUSED
    except AlreadyDone as err:
        error, outcome = err, AttemptOutcome.ALREADY_DONE
    except AmbiguousOutcome as err:
        error, outcome = err, AttemptOutcome.UNKNOWN
    except RetryableError as err:
        error, outcome = err, AttemptOutcome.RETRY
    except PermanentError as err:
        error, outcome = err, AttemptOutcome.REFUSED
    except IntegrationError as err:
        error, outcome = err, AttemptOutcome.REFUSED
    except Exception as err:  # noqa: BLE001  (a bug must not lose the posting: ask a person)
        error, outcome = err, AttemptOutcome.CRASHED
        log.exception("posting %s crashed in %s", posting.key, provider.id)
    return _finish(posting, attempt, outcome, delivered, error)


# What an attempt's outcome may change on its posting (not the payment, key or documents' owner).
FINISH_FIELDS = [
    "state",
    "attempts",
    "posted_at",
    "outcome_unknown",
    "next_attempt_at",
    "claimed_until",
    "last_error",
    "error_code",
    "remote_reference",
    "remote_data",
    "request_document",
    "response_document",
    "updated_at",
]


ATTEMPT_FIELDS = ["finished_at", "outcome", "error"]


def _finish(posting: Posting, attempt: PostingAttempt, outcome: str, delivered, error) -> str:
    """Record an attempt's outcome on its posting and attempt rows, all or none.

    The claimed posting (with its payment, batch, reversal and connection loaded) is updated
    as it was claimed, on the condition that the claim is still ours (in flight, the same
    claim deadline): no second read of the row. Should the claim have been taken over in the
    meantime (a worker that outlived its deadline), the row is read again under its lock and
    the outcome applied to what it holds now, as before.

    A write that landed, whose provider gave the row that records where
    (``Delivered.landing``), is finished by one statement on PostgreSQL (the posting, its
    attempt and that row: all or none, and no BEGIN nor COMMIT to wait for); the provider's
    ``record_delivery`` is then not called. Its outcome changes nothing but these rows
    (``_apply``), so nothing else belongs in that transaction.
    """
    now = timezone.now()
    claimed = posting  # as claimed: its payment, batch, reversal and connection are loaded
    token = claimed.claimed_until
    message = mask(str(error)) if error else ""
    if outcome == AttemptOutcome.CRASHED:
        message = mask(
            f"{type(error).__name__}: {error}\n"
            + "".join(traceback.format_exception(error))[-2000:]
        )
    landing = getattr(delivered, "landing", None)
    if outcome not in (AttemptOutcome.POSTED, AttemptOutcome.ALREADY_DONE):
        landing = None
    # With its landing row, a posted outcome writes nothing but these rows (``_apply`` only
    # changes the posting in memory): no transaction of its own around the one statement.
    with nullcontext() if landing is not None else transaction.atomic():
        result = _apply(claimed, outcome, delivered, error, message, now)
        claimed.updated_at = now
        attempt.finished_at = now
        attempt.outcome = result
        attempt.error = message
        # One conditional UPDATE of the posting and, if it held, the attempt's (and the landing
        # row): one statement on PostgreSQL, their SQL built once (rentplatform/prepared.py; no
        # save(): the condition is the guard).
        if update_then_update(
            claimed,
            FINISH_FIELDS,
            where={"state": PostingState.IN_FLIGHT, "claimed_until": token},
            other=attempt,
            other_fields=ATTEMPT_FIELDS,
            upsert=landing,
        ):
            posting = claimed
            if posting.state == PostingState.POSTED:
                _posted(posting, claimed, delivered, landed=landing is not None)
        else:  # the claim was taken over: its statement wrote nothing
            with transaction.atomic(savepoint=False):
                posting, result = _late_locked(
                    claimed, attempt, outcome, delivered, error, message, now
                )
    return _logged(posting, result)


def _posted(posting: Posting, claimed: Posting, delivered, landed: bool = False) -> None:
    """Once ``posting`` is marked posted (inside that transaction, if it has one): the
    provider's bookkeeping of where it landed, unless that row was written with it
    (``landed``), and the signal once it is committed."""
    if delivered is not None and not landed:
        posting.connection.get_provider().record_delivery(claimed, delivered)
    transaction.on_commit(lambda p=posting: signals.posting_posted.send(sender=Posting, posting=p))


def _late_locked(claimed, attempt, outcome, delivered, error, message, now):
    """The finish of an attempt whose claim was taken over, on the row read again under its
    lock (inside the caller's transaction). Returns the posting and the attempt's outcome."""
    posting = (
        Posting.objects.select_for_update(of=("self",), no_key=True)
        .select_related("connection__property")
        .get(pk=claimed.pk)
    )
    result, applied = _late(posting, outcome, delivered, error, message, now)
    attempt.outcome = result
    update_row(attempt, ATTEMPT_FIELDS)
    if applied and posting.state == PostingState.POSTED:
        _posted(posting, claimed, delivered)
    return posting, result


def _logged(posting: Posting, result: str) -> str:
    level = logging.INFO if posting.state == PostingState.POSTED else logging.WARNING
    if log.isEnabledFor(level):
        log.log(
            level,
            "posting %s (%s %s) attempt %s: %s%s",
            posting.key,
            posting.kind,
            posting.connection.property.code,
            posting.attempts,
            result,
            f": {posting.last_error}" if posting.last_error else "",
        )
    return posting.state


def _late(posting: Posting, outcome: str, delivered, error, message: str, now) -> tuple[str, bool]:
    """The outcome of an attempt whose claim was taken over (its worker outlived the claim
    deadline), on the row as it is now. What happened since is newer than this attempt: a
    posting already posted or abandoned stays so, and a posting another worker holds, or one
    waiting for its next attempt, keeps its state, so that a late "retry" never sends a
    posted payment again nor frees a claim another worker is using. Only what this attempt
    proves is applied: that it landed (posted, whatever the row says, unless it is final),
    or that its outcome is unknown (the next attempt checks the remote first). Returns the
    outcome to record on the attempt and whether the posting was posted by it."""
    if posting.state in FINAL_STATES:
        if outcome in (AttemptOutcome.POSTED, AttemptOutcome.ALREADY_DONE) and (
            posting.state == PostingState.ABANDONED
            or (delivered is not None and delivered.remote_reference != posting.remote_reference)
        ):
            log.error(
                "posting %s (%s): a late attempt landed after the posting was %s; look in the "
                "accounting system for a second entry (reference %s)",
                posting.key,
                posting.kind,
                posting.get_state_display().lower(),
                getattr(delivered, "remote_reference", "") or "unknown",
            )
        return outcome, False
    if outcome in (AttemptOutcome.POSTED, AttemptOutcome.ALREADY_DONE):
        result = _apply(posting, outcome, delivered, error, message, now)
        posting.save(update_fields=FINISH_FIELDS)
        return result, True
    if outcome in (AttemptOutcome.UNKNOWN, AttemptOutcome.UNCONFIRMED) and not (
        posting.outcome_unknown
    ):
        posting.outcome_unknown = True
        posting.updated_at = now
        posting.save(update_fields=["outcome_unknown", "updated_at"])
    return outcome, False


def _apply(posting: Posting, outcome: str, delivered, error, message: str, now) -> str:
    """An attempt's outcome on the posting (in memory); the outcome as recorded on the attempt."""
    if isinstance(error, IntegrationError):
        posting.error_code = error.code[:40]
        if error.request:
            posting.request_document = error.request
        if error.response:
            posting.response_document = error.response
    posting.claimed_until = None
    if outcome in (AttemptOutcome.POSTED, AttemptOutcome.ALREADY_DONE):
        posting.state = PostingState.POSTED
        posting.posted_at = now
        posting.outcome_unknown = False
        posting.next_attempt_at = None
        posting.last_error = "" if outcome == AttemptOutcome.POSTED else message
        if delivered is not None:
            posting.remote_reference = delivered.remote_reference[:100]
            posting.remote_data = delivered.data
            posting.request_document = mask(delivered.request_document)
            posting.response_document = mask(delivered.response_document)
            if delivered.already_there:
                outcome = AttemptOutcome.FOUND_POSTED
        elif isinstance(error, AlreadyDone):
            posting.remote_reference = error.remote_reference[:100]
    elif outcome == AttemptOutcome.PAUSED:
        # Not this posting's fault: the attempt is given back and the connection paused.
        posting.state = PostingState.RETRYING
        posting.attempts = max(posting.attempts - 1, 0)
        posting.last_error = message
        posting.next_attempt_at = None
        _pause(posting.connection, message)
    elif outcome == AttemptOutcome.UNCONFIRMED or (
        outcome == AttemptOutcome.UNKNOWN and not _can_check(posting)
    ):
        posting.state = PostingState.UNCONFIRMED
        posting.outcome_unknown = True
        posting.next_attempt_at = None
        posting.last_error = (
            message
            or posting.last_error
            or ("the last attempt ended without a reply (its worker stopped mid-call)")
        )
        if outcome == AttemptOutcome.UNKNOWN:
            outcome = AttemptOutcome.UNCONFIRMED
    elif outcome in (AttemptOutcome.RETRY, AttemptOutcome.UNKNOWN):
        posting.last_error = message
        if outcome == AttemptOutcome.UNKNOWN:
            posting.outcome_unknown = True
        if posting.attempts >= get_setting("MAX_ATTEMPTS"):
            posting.state = PostingState.NEEDS_ATTENTION
            posting.last_error = f"gave up after {posting.attempts} attempts; last error: {message}"
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
    return outcome


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
