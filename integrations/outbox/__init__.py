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

A new posting is delivered by its connection's drain task (``_drain``: a few tasks for a
burst, not one a payment); retries, the sweep and a person's actions queue a task per posting.

The package's modules: ``_queue`` (writing postings, queueing, the sweep), ``_drain``, ``_claims``,
``_delivery`` (one attempt and its outcome), ``_actions`` (a person's and a connection test's
actions); ``_common`` holds what they share. Import from ``integrations.outbox`` only (the
private names re-exported here are the ones docs/reliability.md points to).
"""

from __future__ import annotations

from ._actions import (
    abandon,
    enable_connection,
    mark_found,
    pause_connection,
    post_unconfirmed,
    resolve,
    resume_connection,
    retry,
)
from ._claims import _give_up, claim
from ._common import (
    ACTIVE_STATES,
    NotAllowed,
    _can_check,
    _unknown_outcome_not_before,
    connection_for,
)
from ._delivery import (
    PAYMENT_ABANDONED,
    PAYMENT_NEEDS_ATTENTION,
    PAYMENT_NOT_POSTED,
    WAITING_FOR_PAYMENT,
    _finish,
    _wait_for_payment,
    deliver,
)
from ._drain import DRAIN_LOST_SECONDS, drain, drains_enabled, poke, queue_drain
from ._queue import (
    create_payment_posting,
    create_reversal_posting,
    due_postings,
    enqueue,
    enqueue_on_commit,
    enqueue_task,
    queue_waiting,
    shared_broker,
    sweep,
    sweepable_postings,
    wake_waiting_reversals,
)

__all__ = [
    "ACTIVE_STATES",
    "DRAIN_LOST_SECONDS",
    "PAYMENT_ABANDONED",
    "PAYMENT_NEEDS_ATTENTION",
    "PAYMENT_NOT_POSTED",
    "WAITING_FOR_PAYMENT",
    "NotAllowed",
    "_can_check",
    "_finish",
    "_give_up",
    "_unknown_outcome_not_before",
    "_wait_for_payment",
    "abandon",
    "claim",
    "connection_for",
    "create_payment_posting",
    "create_reversal_posting",
    "deliver",
    "drain",
    "drains_enabled",
    "due_postings",
    "enable_connection",
    "enqueue",
    "enqueue_on_commit",
    "enqueue_task",
    "mark_found",
    "pause_connection",
    "poke",
    "post_unconfirmed",
    "queue_drain",
    "queue_waiting",
    "resolve",
    "resume_connection",
    "retry",
    "shared_broker",
    "sweep",
    "sweepable_postings",
    "wake_waiting_reversals",
]
