"""What the posting console says: what happened to a posting and what a person does next.

Design note. The console (integrations.admin.postings) asks the posting's provider
(``AccountingProvider.explain``), whose default is ``explain`` here: it covers every reason the
framework itself gives a posting (a paused or disabled connection, an unknown outcome waiting
for a person, attempts given up, a reversal whose payment is not posted, a crash, a refusal),
from the posting's state, its ``error_code`` and how its last attempt ended, never from the
wording of ``last_error``. A provider overrides ``explain`` only for what it knows better (AMSI:
one answer per row of its error table, integrations_amsi/advice.py) and falls back to this.
Which actions the console offers follows from the state alone (``actions_for``), so a
provider's text can never offer an action the state does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils import timezone

from integrations.conf import get_setting
from integrations.models import PostingAttempt, PostingKind, PostingState
from integrations.models.posting import AttemptOutcome
from integrations.outbox import (
    PAYMENT_ABANDONED,
    PAYMENT_NEEDS_ATTENTION,
    PAYMENT_NOT_POSTED,
    WAITING_FOR_PAYMENT,
)

if TYPE_CHECKING:
    from integrations.models import Posting
    from integrations.providers.base import AccountingProvider

# The console's actions (the posting admin's action names).
RETRY = "retry_postings"
RESOLVE = "resolve_postings"
ABANDON = "abandon_postings"
FOUND = "mark_found"
POST_IT = "post_unconfirmed"

PERSON = "person:"
# How a worker's attempt ended when the outbox gave up on it: it would have been retried.
GAVE_UP_OUTCOMES = ("", AttemptOutcome.RETRY, AttemptOutcome.UNKNOWN)


@dataclass(frozen=True)
class Advice:
    """Two plain sentences (or a few) for a person: what happened, and what to do next."""

    what_happened: str
    what_to_do: str


def actions_for(posting: Posting) -> tuple[str, ...]:
    """The actions that fit the posting's state (each still needs its permission)."""
    if posting.state == PostingState.NEEDS_ATTENTION:
        return (RETRY, RESOLVE, ABANDON)
    if posting.state == PostingState.UNCONFIRMED:
        return (FOUND, POST_IT, ABANDON)
    if posting.state == PostingState.RETRYING and posting.connection.paused_at is None:
        return (RETRY,)
    return ()


def last_attempt(posting: Posting, *, person: bool = False) -> PostingAttempt | None:
    """The posting's last attempt by a worker (or, with ``person``, by a person)."""
    attempts = posting.attempt_log.all()
    attempts = (
        attempts.filter(worker__startswith=PERSON)
        if person
        else attempts.exclude(worker__startswith=PERSON)
    )
    return attempts.order_by("-number").first()


def refused_code(posting: Posting) -> str:
    """The remote's error code when the posting needs attention because the remote refused
    it (its last attempt ended "refused"); "" otherwise."""
    if posting.state != PostingState.NEEDS_ATTENTION or not posting.error_code:
        return ""
    last = last_attempt(posting)
    return posting.error_code if last and last.outcome == AttemptOutcome.REFUSED else ""


def _local(value) -> str:
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M}" if value else "?"


def _what(posting: Posting) -> str:
    subject = posting.subject
    amount = f"-{subject.amount}" if posting.kind == PostingKind.REVERSAL else subject.amount
    return f"{posting.get_kind_display().lower()} {subject.short_id} of {amount}"


def _closed(posting: Posting, system: str) -> Advice:
    by = last_attempt(posting, person=True)
    who = by.worker.removeprefix(PERSON) if by else ""
    if posting.state == PostingState.ABANDONED:
        return Advice(
            f"Abandoned by {who or 'a person'} on {_local(by and by.finished_at)}: it will "
            f"never be posted to {system}. Their note: {(by and by.error) or '-'}",
            "Nothing: this is final.",
        )
    if by and by.outcome == AttemptOutcome.RESOLVED_BY_PERSON:
        return Advice(
            f"Resolved by {who} on {_local(by.finished_at)}: they entered it in {system} "
            f"themselves. Their note: {by.error}",
            "Nothing: it counts as posted.",
        )
    if by and by.outcome == AttemptOutcome.FOUND_BY_PERSON:
        return Advice(
            f"Found in {system} by {who} on {_local(by.finished_at)} ({by.error}).",
            "Nothing: it is posted.",
        )
    ref = f", reference {posting.remote_reference}" if posting.remote_reference else ""
    return Advice(f"Posted to {system} on {_local(posting.posted_at)}{ref}.", "Nothing.")


def _reversal_waits(posting: Posting, system: str) -> Advice:
    payment = posting.payment
    if posting.error_code == PAYMENT_ABANDONED:
        return Advice(
            f"This reversal was not sent: its payment {payment.short_id} was abandoned by a "
            f"person (it will never be posted to {system}), so {system} has nothing to reverse.",
            "Abandon this reversal too (say in the note that its payment was abandoned). If "
            f"the payment is in {system} after all (entered by hand), enter this reversal "
            "there too and mark it resolved.",
        )
    if posting.error_code == PAYMENT_NEEDS_ATTENTION:
        happened = (
            f"This reversal was not sent: {system} cannot reverse a payment it does not have, "
            f"and its payment {payment.short_id} needs attention itself."
        )
    else:
        happened = (
            f"This reversal was not sent: its payment {payment.short_id} was never "
            f"posted to {system} ({posting.last_error[:300]})."
        )
    return Advice(
        happened,
        "Open the payment's posting (linked above) and settle it first; once it is posted, "
        "retry this reversal. If the payment was abandoned (never posted), abandon this "
        f"reversal too: there is nothing to reverse in {system}. If you entered the payment "
        f"in {system} by hand, enter this reversal there too and mark it resolved.",
    )


def explain(provider: AccountingProvider, posting: Posting) -> Advice:
    """The framework's answer for every reason it gives a posting (see the module's note)."""
    system = provider.system_name
    state = posting.state
    connection = posting.connection
    if state in (PostingState.POSTED, PostingState.ABANDONED):
        return _closed(posting, system)
    waiting = state in (PostingState.PENDING, PostingState.RETRYING)
    if connection.paused_at is not None and waiting:
        return Advice(
            f"{system} refused this connection's credentials on {_local(connection.paused_at)}"
            f" ({connection.paused_reason[:300]}). Every posting of the connection waits; "
            "none spends an attempt.",
            "Fix the login on the connection's page (the password, the user or the "
            "portfolio), save, then run 'Test connection': once it passes, the waiting "
            "postings are sent.",
        )
    if not connection.enabled and waiting:
        return Advice(
            "The connection is disabled: it holds its postings (written with each payment, "
            "not sent).",
            "Enable the connection when the property is ready; what it held is sent then.",
        )
    if state == PostingState.UNCONFIRMED:
        return Advice(
            f"The last write to {system} may or may not have landed: {posting.last_error}. "
            "The outcome is unknown, and it is never sent again blindly.",
            f"{provider.where_to_look(posting)} If it is there, choose 'Found in the "
            "accounting system' with its receipt; if it is not, 'Not in the accounting "
            "system: post it'. If the payment was voided before it reached the ledger and it "
            "is not there, abandon it.",
        )
    if state == PostingState.NEEDS_ATTENTION:
        return _needs_attention(posting, system)
    if state == PostingState.RETRYING and posting.error_code == WAITING_FOR_PAYMENT:
        return Advice(
            f"This reversal waits for its payment to be posted to {system} first "
            f"({posting.last_error}).",
            "Nothing yet: it is sent by itself as soon as the payment is posted.",
        )
    if state == PostingState.RETRYING:
        return Advice(
            f"The last attempt failed and will be tried again at "
            f"{_local(posting.next_attempt_at)} (attempt {posting.attempts} of "
            f"{get_setting('MAX_ATTEMPTS')}): {posting.last_error}",
            "Nothing yet; 'Retry now' tries at once (after the unknown-outcome wait when the "
            "last write may have landed).",
        )
    if state == PostingState.IN_FLIGHT:
        return Advice(
            f"A worker is sending it to {system} now (its claim runs until "
            f"{_local(posting.claimed_until)}).",
            "Nothing: wait for the outcome.",
        )
    return Advice(f"Waiting to be sent to {system}.", "Nothing: a worker sends it shortly.")


def _needs_attention(posting: Posting, system: str) -> Advice:
    if posting.kind == PostingKind.REVERSAL and posting.error_code in (
        PAYMENT_ABANDONED,
        PAYMENT_NEEDS_ATTENTION,
        PAYMENT_NOT_POSTED,
    ):
        return _reversal_waits(posting, system)
    last = last_attempt(posting)
    if last is not None and last.outcome == AttemptOutcome.CRASHED:
        return Advice(
            f"The integration crashed while sending {_what(posting)} (a bug, not {system}'s "
            "answer); the traceback is below.",
            "Report it with the traceback. Once the fix is deployed, retry. If you cannot "
            f"wait, enter it in {system} by hand and mark it resolved.",
        )
    if last is None or last.outcome in GAVE_UP_OUTCOMES:
        maybe = (
            f" The last write may have landed in {system}; a retry checks (or asks you to "
            "look) before sending anything again."
            if posting.outcome_unknown
            else ""
        )
        return Advice(
            f"Gave up after {posting.attempts} attempts: {system} could not be reached or "
            f"kept failing. Last error: {posting.last_error[:400]}{maybe}",
            f"Check that {system} is up and reachable from this server (the connection's "
            "'Test connection' says), then retry: it gets a fresh set of attempts.",
        )
    code = f" with code {posting.error_code}" if posting.error_code else ""
    return Advice(
        f"{system} refused {_what(posting)}{code}: {posting.last_error[:400]}",
        f"Fix what {system} names (in {system} or in the connection's settings), then retry. "
        f"If it cannot be sent, enter it in {system} by hand and mark it resolved, or, if it "
        "should never be posted (its payment was voided), abandon it.",
    )
