"""What a person or a connection test does to postings: pause, resume, enable, retry, the
answers to "is it there?" ("found" / "not there, post it"), and the two ways a person closes a
posting the integration cannot finish: "resolved" (they entered it in the accounting system
themselves) and "abandoned" (it will never be posted).

Which state each action is allowed from, and why none can post twice or lose a posting, is in
docs/reliability.md ("A person's actions"). Every one is recorded as a person's attempt row
(``worker`` "person:<who>", the note in ``error``)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from integrations import signals
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingAttempt, PostingState
from integrations.models.posting import FINAL_STATES, AttemptOutcome

from ._common import NotAllowed, _can_check, _unknown_outcome_not_before, log
from ._delivery import _pause
from ._queue import enqueue_on_commit, queue_waiting, wake_waiting_reversals


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
            Posting.objects.select_for_update(of=("self",), no_key=True)
            .select_related("connection")
            .get(pk=posting.pk)
        )
        if posting.state in (PostingState.POSTED, PostingState.ABANDONED):
            raise NotAllowed(
                f"posting {posting.key} is {posting.get_state_display().lower()}: nothing to retry"
            )
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
        if posting.outcome_unknown and not _can_check(posting):
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


def _lock(posting: Posting) -> Posting:
    return (
        Posting.objects.select_for_update(of=("self",), no_key=True)
        .select_related("connection")
        .get(pk=posting.pk)
    )


def _not_yet(posting: Posting) -> str:
    """Why a posting still being delivered cannot be closed by a person ("" if it can be)."""
    if posting.state in (PostingState.PENDING, PostingState.RETRYING, PostingState.IN_FLIGHT):
        return (
            f"posting {posting.key} is {posting.get_state_display().lower()}: the integration "
            "may still send it, so closing it by hand could post it twice. Wait until it is "
            "posted or needs attention"
        )
    if posting.state in FINAL_STATES:
        return f"posting {posting.key} is {posting.get_state_display().lower()}: it is final"
    return ""


def resolve(posting: Posting, *, who: str, note: str, receipt: str = "") -> Posting:
    """A person entered a posting that needs attention in the accounting system themselves:
    it counts as posted (its reversal may go on, its batch may be settled) and is never sent.

    Only from "needs attention": one still being delivered could land a second time, and an
    unconfirmed one is answered with "found" (its receipt) instead.
    """
    note, receipt = (note or "").strip(), (receipt or "").strip()
    if not note:
        raise NotAllowed("say in a note how it was settled (where it was entered, by whom)")
    with transaction.atomic():
        posting = _lock(posting)
        refusal = _not_yet(posting)
        if posting.state == PostingState.UNCONFIRMED:
            refusal = (
                f"posting {posting.key} is unconfirmed: look for it in the accounting system, "
                "then choose 'found' (with its receipt) or 'not there, post it'"
            )
        if refusal:
            raise NotAllowed(refusal)
        posting.connection.get_provider().confirmed_by_person(posting, receipt)
        posting.state = PostingState.POSTED
        posting.posted_at = timezone.now()
        posting.outcome_unknown = False
        posting.next_attempt_at = None
        posting.enqueued_at = None
        posting.waiting_since = None
        if receipt:
            posting.remote_reference = receipt[:100]
        posting.save()
        text = f"receipt {receipt}. {note}" if receipt else note
        _person_attempt(posting, AttemptOutcome.RESOLVED_BY_PERSON, who, text)
        transaction.on_commit(
            lambda p=posting: signals.posting_posted.send(sender=Posting, posting=p)
        )
    log.info("posting %s resolved by %s: %s", posting.key, who, mask(note))
    return posting


def abandon(posting: Posting, *, who: str, note: str) -> Posting:
    """A person decided a posting will never be posted (its payment was voided before it
    reached the ledger, say): final; nothing sends it again.

    From "needs attention" or "unconfirmed" only. When the last write's outcome is unknown it
    may still land: refused before the unknown-outcome wait is over, and the note stands for
    "I looked and it is not there".
    """
    note = (note or "").strip()
    if not note:
        raise NotAllowed("say in a note why it will never be posted")
    with transaction.atomic():
        posting = _lock(posting)
        refusal = _not_yet(posting)
        if refusal:
            raise NotAllowed(refusal)
        if posting.outcome_unknown:
            _refuse_while_a_write_may_land(posting, "look for it again")
        posting.state = PostingState.ABANDONED
        posting.outcome_unknown = False
        posting.next_attempt_at = None
        posting.enqueued_at = None
        posting.waiting_since = None
        posting.save()
        _person_attempt(posting, AttemptOutcome.ABANDONED_BY_PERSON, who, note)
        # Its waiting reversals stop for a person now ("nothing to reverse"), not at their
        # next look.
        transaction.on_commit(lambda p=posting: wake_waiting_reversals(p))
    log.warning("posting %s abandoned by %s: %s", posting.key, who, mask(note))
    return posting


def mark_found(posting: Posting, *, receipt: str, who: str, note: str = "") -> Posting:
    """A person found an unconfirmed posting in the accounting system: it is posted."""
    receipt = (receipt or "").strip()
    if not receipt:
        raise NotAllowed("give the receipt (reference) number shown in the accounting system")
    with transaction.atomic():
        posting = Posting.objects.select_for_update(of=("self",), no_key=True).get(pk=posting.pk)
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
        _person_attempt(
            posting, AttemptOutcome.FOUND_BY_PERSON, who, f"receipt {receipt}. {note}".strip()
        )
        transaction.on_commit(
            lambda p=posting: signals.posting_posted.send(sender=Posting, posting=p)
        )
    log.info("posting %s marked found (receipt %s) by %s", posting.key, receipt, who)
    return posting


def post_unconfirmed(posting: Posting, *, who: str, note: str = "") -> Posting:
    """A person looked and the posting is not in the accounting system: send it (once)."""
    with transaction.atomic():
        posting = Posting.objects.select_for_update(of=("self",), no_key=True).get(pk=posting.pk)
        if posting.state != PostingState.UNCONFIRMED:
            raise NotAllowed(
                f"posting {posting.key} is {posting.get_state_display()}, not unconfirmed"
            )
        _refuse_while_a_write_may_land(posting, "look again", " before posting it")
        posting.state = PostingState.RETRYING
        posting.outcome_unknown = False
        posting.attempts = 0
        posting.next_attempt_at = None
        posting.save()
        _person_attempt(
            posting, AttemptOutcome.NOT_FOUND_BY_PERSON, who, note or "not found: post it"
        )
        enqueue_on_commit(posting.pk)
    log.info("posting %s: not found in the accounting system by %s, posting it", posting.key, who)
    return posting


def _refuse_while_a_write_may_land(posting: Posting, look: str, then: str = "") -> None:
    """NotAllowed until the last attempt's end (for one that never finished, its worker died,
    its claim deadline) plus the unknown-outcome delay: a slow write may still land until then."""
    not_before = _unknown_outcome_not_before(posting)
    if not_before and not_before > timezone.now():
        raise NotAllowed(
            f"posting {posting.key}: a write that was slow may still land; {look} after "
            f"{timezone.localtime(not_before):%H:%M:%S}{then}"
        )
