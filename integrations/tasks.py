"""django-q2 tasks. Thin: they take ids, call a service, and are safe to run twice."""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from integrations import outbox, services
from integrations.conf import INLINE_RETRY_SECONDS as _INLINE_RETRY_SECONDS
from integrations.conf import get_setting
from integrations.models import Connection, Posting, PostingState, SyncKind
from integrations.reports import send_report

log = logging.getLogger(__name__)

# A retry due within this many seconds is waited for inside the task (so a worker retries in
# seconds without holding a worker long); a later one is left to the retry sweep. Part of the
# timing chain (integrations.conf): it counts in one attempt's budget under the task timeout.
INLINE_RETRY_SECONDS = _INLINE_RETRY_SECONDS


def deliver_posting(posting_id: int) -> str | None:
    state = outbox.deliver(posting_id)
    _retry_soon(posting_id, state)
    return state


def drain_connection(connection_id: int) -> int:
    """Deliver the connection's new postings (outbox ``_drain``); how many it tried."""
    return outbox.drain(connection_id, after_delivery=_retry_soon)


def _retry_soon(posting_id: int, state: str | None) -> None:
    """After an attempt: a retry due within ``INLINE_RETRY_SECONDS`` is waited for here and
    queued as the posting's own task."""
    # Only a real worker waits and re-queues; in the in-process (sync) mode the sweep or the
    # caller drives retries, so a test never loops through every attempt at once. A reversal
    # waiting for its payment is left to the sweep: it would only tie up a worker.
    if state == PostingState.RETRYING and get_setting("DELIVERY") == "async":
        posting = Posting.objects.filter(pk=posting_id).first()
        if posting and posting.next_attempt_at and posting.error_code != outbox.WAITING_FOR_PAYMENT:
            wait = (posting.next_attempt_at - timezone.now()).total_seconds()
            if wait <= INLINE_RETRY_SECONDS:
                time.sleep(max(wait, 0))
                outbox.enqueue(posting_id)


def retry_sweep() -> int:
    """Re-deliver due postings (lost tasks, backoff elapsed, workers that died mid-call),
    leaving alone those whose task is still waiting in the queue."""
    return outbox.sweep()


def delta_sync_all() -> int:
    n = 0
    for connection in Connection.objects.filter(enabled=True):
        try:
            services.run_sync(connection, SyncKind.DELTA, triggered_by="schedule")
        except Exception:  # one property's failure must not stop the others
            log.exception("delta sync of %s failed", connection)
        n += 1
    return n


def full_sync_all() -> int:
    n = 0
    for connection in Connection.objects.filter(enabled=True):
        try:
            services.run_sync(connection, SyncKind.FULL, triggered_by="schedule")
        except Exception:
            log.exception("full sync of %s failed", connection)
        n += 1
    return n


def close_batches_all() -> list[str]:
    lines: list[str] = []
    for connection in Connection.objects.filter(enabled=True):
        try:
            lines += connection.get_provider().close_batches()
        except NotImplementedError:
            continue
        except Exception:
            log.exception("closing batches of %s failed", connection)
    return lines


def send_deposit_report(batch_id: int) -> bool:
    return send_report(batch_id)
