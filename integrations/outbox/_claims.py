"""Claims: a worker takes a posting for one attempt in a short transaction."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from integrations.conf import get_setting
from integrations.models import Posting, PostingAttempt, PostingKind, PostingState
from rentplatform.prepared import Prepared, insert_row, update_row

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


# The posting's own row only (NO KEY: the attempt's foreign key to it still inserts): locking
# the joined connection too would make every payment of the property, whose posting's foreign
# key is checked at commit, wait for this claim. The attempts' last number comes with it
# (numbered over the posting's whole life: a person's retry resets ``attempts``, the budget,
# not the log). Compiled once (rentplatform/prepared.py): it is read for every attempt.
_CLAIM_READ = Prepared(
    lambda pk: (
        Posting.objects.select_for_update(of=("self",), no_key=True)
        .select_related("connection__property", "payment__batch", "reversal")
        .annotate(
            last_number=Subquery(
                PostingAttempt.objects.filter(posting=OuterRef("pk"))
                .order_by("-number")
                .values("number")[:1]
            )
        )
        .filter(pk=pk)
        .order_by()
    )
)


CLAIM_FIELDS = [
    "state",
    "attempts",
    "claimed_until",
    "outcome_unknown",
    "enqueued_at",
    "updated_at",
]


def claim(
    posting_id: int, *, force: bool = False, reversal_wait: Callable | None = None
) -> tuple[Posting, PostingAttempt] | str | None:
    """Take a posting for one attempt, or None when it is not ours to run now.

    ``force`` (a tool asking for an attempt now) skips the backoff, a "needs attention" stop and
    the attempt budget, never the unknown-outcome wait nor a held connection.

    ``reversal_wait(posting, now, force)`` (what ``deliver`` passes): for a reversal, called
    on the locked row first; a state it returns (the reversal waits for its payment, or
    stops) is returned instead of a claim. One transaction and one read for both.
    """
    now = timezone.now()
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
        # Written without Model.save (rentplatform/prepared.py): the row was read under its
        # lock just above, not abandoned, and nothing listens to these models' save signals.
        update_row(posting, CLAIM_FIELDS)
        posting._loaded_state = posting.state
        attempt = insert_row(
            PostingAttempt(
                posting=posting,
                number=(posting.last_number or 0) + 1,
                started_at=now,
                checked_first=posting.outcome_unknown,
                worker=_worker_name(),
            )
        )
    return posting, attempt
