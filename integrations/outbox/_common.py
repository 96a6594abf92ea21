"""What every part of the outbox shares: the logger, the held-connection test, the backoff and
the unknown-outcome wait."""

from __future__ import annotations

import datetime as dt
import logging

from integrations.conf import get_setting
from integrations.models import Connection, Posting, PostingState

# One logger for the whole outbox, whichever module of it logs (operators filter on it).
log = logging.getLogger("integrations.outbox")

ACTIVE_STATES = (PostingState.PENDING, PostingState.RETRYING, PostingState.IN_FLIGHT)


class NotAllowed(Exception):
    """A person's action that does not fit the posting's state; the message says why."""


def connection_for(prop) -> Connection | None:
    """The property's connection (``prop`` a Property or its id), enabled or not: a disabled
    one holds its postings until it is enabled again (none is lost while a property is
    switched off)."""
    return Connection.objects.filter(property_id=getattr(prop, "pk", prop)).first()


def _holds(connection: Connection) -> bool:
    """Whether a connection's postings wait (disabled, or paused after a refused login)."""
    return not connection.enabled or connection.paused_at is not None


def _backoff(attempts: int) -> dt.timedelta:
    steps = list(get_setting("RETRY_BACKOFF_SECONDS")) or [60]
    return dt.timedelta(seconds=steps[min(attempts, len(steps)) - 1])


def _can_check(posting: Posting) -> bool:
    """Whether the posting's provider may settle its unknown outcome unattended (asked per
    posting: a provider may answer for payments and not for reversals). A provider that
    cannot even read its settings cannot: the posting waits for a person."""
    connection = posting.connection
    try:
        return bool(connection.get_provider().checks_unknown_outcomes(posting))
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
