"""Claims: a worker takes a posting for one attempt in a short transaction."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from integrations.conf import get_setting
from integrations.models import Posting, PostingAttempt, PostingKind, PostingState
from rentplatform.prepared import Prepared, insert_row, update_row, update_then_insert

from ._common import _can_check, _holds, _unknown_outcome_not_before, log


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def _claim_read(pk, *, lock: bool = True):
    """The posting with its connection, property, payment, batch and reversal, and its
    attempts' last number (numbered over the posting's whole life: a person's retry resets
    ``attempts``, the budget, not the log). ``lock``: the posting's own row only (NO KEY: the
    attempt's foreign key to it still inserts); locking the joined connection too would make
    every payment of the property, whose posting's foreign key is checked at commit, wait for
    this claim. ``pk`` may be a subquery (a drain's next posting)."""
    postings = Posting.objects.select_related("connection__property", "payment__batch", "reversal")
    if lock:
        postings = postings.select_for_update(of=("self",), no_key=True)
    return (
        postings.annotate(
            last_number=Subquery(
                PostingAttempt.objects.filter(posting=OuterRef("pk"))
                .order_by("-number")
                .values("number")[:1]
            )
        )
        .filter(pk=pk)
        .order_by()
    )


# Compiled once (rentplatform/prepared.py): read for every attempt. The one without the lock
# is the quick claim's (see ``claim``); a drain's read of its next posting is the same read of
# the connection's oldest pending posting after the last one it took (``_drain``).
_CLAIM_READ = Prepared(lambda pk: _claim_read(pk))
_CLAIM_PEEK = Prepared(lambda pk: _claim_read(pk, lock=False))
# (The next posting's id is found first, on the pending postings' partial index: joined and
# then sorted, the read took 6 ms with 500 pending on PostgreSQL.)
_NEXT_PENDING = Prepared(
    lambda connection_id, after: _claim_read(
        Subquery(
            Posting.objects.filter(
                connection_id=connection_id, state=PostingState.PENDING, pk__gt=after
            )
            .order_by("pk")
            .values("pk")[:1]
        ),
        lock=False,
    )
)

# What a claim's decision reads from the posting's row: the quick claim writes on the condition
# that none of it changed since it was read.
DECIDED_ON = ["state", "attempts", "claimed_until", "next_attempt_at", "outcome_unknown"]

_LOCKED = object()  # the quick claim's answer: decide under the row's lock instead


CLAIM_FIELDS = [
    "state",
    "attempts",
    "claimed_until",
    "outcome_unknown",
    "enqueued_at",
    "updated_at",
]


def claim(
    posting_id: int,
    *,
    force: bool = False,
    reversal_wait: Callable | None = None,
    peeked: Posting | None = None,
) -> tuple[Posting, PostingAttempt] | str | None:
    """Take a posting for one attempt, or None when it is not ours to run now.

    ``force`` (a tool asking for an attempt now) skips the backoff, a "needs attention" stop and
    the attempt budget, never the unknown-outcome wait nor a held connection.

    ``reversal_wait(posting, now, force)`` (what ``deliver`` passes): for a reversal, called
    on the locked row first; a state it returns (the reversal waits for its payment, or
    stops) is returned instead of a claim. One transaction and one read for both.

    ``peeked``: the posting as ``_claim_read(lock=False)`` just read it (a drain's read of its
    next posting), used instead of the quick claim's own read.
    """
    now = timezone.now()
    quick = _quick_claim(posting_id, now, force, reversal_wait is not None, peeked)
    if quick is not _LOCKED:
        return quick
    with transaction.atomic():
        posting = _CLAIM_READ.first(posting_id)
        if posting is not None and reversal_wait and posting.kind == PostingKind.REVERSAL:
            waited = reversal_wait(posting, now, force)
            if waited is not None:
                return waited
        if posting is None or posting.state in (
            PostingState.POSTED,
            PostingState.ABANDONED,
            PostingState.UNCONFIRMED,
        ):
            return None  # final, or waiting for a person to say whether it is there
        if _holds(posting.connection):
            # Disabled, or credentials refused: nothing is sent until it is enabled again / a
            # connection test passes (which queues what waited). The task has been taken.
            if posting.enqueued_at is not None:
                posting.enqueued_at = None
                posting.save(update_fields=["enqueued_at"])
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
        if not force and posting.attempts >= get_setting("MAX_ATTEMPTS"):
            _give_up(posting, _can_check(posting))
            return None
        if posting.outcome_unknown and _can_check(posting):
            not_before = _unknown_outcome_not_before(posting)
            if not_before and not_before > now:
                # Too early to check: a slow write may still land. Wait (a force too).
                posting.state = PostingState.RETRYING
                posting.next_attempt_at = not_before
                posting.enqueued_at = None  # claimed_until stays: the dead attempt's deadline
                posting.save()
                return None
        attempt = _take(posting, now)
        # Written without Model.save (rentplatform/prepared.py): the row was read under its
        # lock just above, not abandoned, and nothing listens to these models' save signals.
        update_row(posting, CLAIM_FIELDS)
        insert_row(attempt)
    return posting, attempt


def _take(posting: Posting, now: dt.datetime) -> PostingAttempt:
    """The claim on the posting (in memory) and its attempt row (not yet written)."""
    posting.state = PostingState.IN_FLIGHT
    posting.enqueued_at = None  # the queued task has been taken
    posting.attempts += 1
    posting.claimed_until = now + dt.timedelta(seconds=get_setting("CLAIM_SECONDS"))
    posting.updated_at = now
    posting._loaded_state = posting.state
    return PostingAttempt(
        posting=posting,
        number=(posting.last_number or 0) + 1,
        started_at=now,
        checked_first=posting.outcome_unknown,
        worker=_worker_name(),
    )


def _quick_claim(
    posting_id: int, now: dt.datetime, force: bool, reversal: bool, peeked: Posting | None = None
):
    """The common claim in one round trip on PostgreSQL, without the row's lock: a payment's
    posting that is due, on a connection that does not hold it, with no unknown outcome and
    attempts left (or forced), is read, then claimed by one conditional write (the claim's
    UPDATE and its attempt's INSERT, ``update_then_insert``) that changes the row only if
    what the decision read (``DECIDED_ON``) is still what it is. Two workers that read the
    same row cannot both claim it: the second one's condition no longer holds (PostgreSQL
    re-checks it on the row the first one committed; SQLite writes one at a time).

    Returns the claim, None where the row as read is not ours to run (final, or another
    worker's claim still running: what the locked read would say a moment later), or
    ``_LOCKED`` for every other case and for a write whose condition failed: the caller then
    decides under the row's lock, as before.
    """
    posting = peeked if peeked is not None else _CLAIM_PEEK.first(posting_id)
    if posting is None:
        return None
    if posting.state in (PostingState.POSTED, PostingState.ABANDONED, PostingState.UNCONFIRMED):
        return None
    if posting.state == PostingState.IN_FLIGHT and posting.claimed_until:
        if posting.claimed_until > now:
            return None  # another worker holds it
    if (
        (reversal and posting.kind == PostingKind.REVERSAL)
        or posting.state not in (PostingState.PENDING, PostingState.RETRYING)
        or posting.outcome_unknown
        or _holds(posting.connection)
        or (
            not force
            and (
                (posting.next_attempt_at and posting.next_attempt_at > now)
                or posting.attempts >= get_setting("MAX_ATTEMPTS")
            )
        )
    ):
        return _LOCKED
    read = {name: getattr(posting, name) for name in DECIDED_ON}
    attempt = _take(posting, now)
    try:
        claimed = update_then_insert(posting, CLAIM_FIELDS, where=read, new=attempt)
    except IntegrityError:
        # The attempt's number was taken since the read (a person's action wrote one).
        return _LOCKED
    return (posting, attempt) if claimed else _LOCKED
