"""Turn the platform's signals into outbox rows, inside the event's own transaction.

Every payment and reversal of a property with a connection gets its posting, whether the
connection is enabled or not (a disabled one holds it). What runs after the commit never
raises: the event has committed, and the retry sweep queues what could not be queued.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import receiver

from integrations.logging import mask
from integrations.models import Posting
from rentplatform import signals as platform

from . import outbox, signals

log = logging.getLogger(__name__)


@receiver(platform.payment_accepted, dispatch_uid="integrations.payment_accepted")
def on_payment_accepted(sender, payment, **kwargs):
    outbox.create_payment_posting(payment)


def on_reversal(sender, payment, reversal, **kwargs):
    outbox.create_reversal_posting(reversal)


for _n, _signal in enumerate(platform.REVERSAL_SIGNALS):
    _signal.connect(on_reversal, dispatch_uid=f"integrations.reversal.{_n}")


@receiver(signals.posting_posted, sender=Posting, dispatch_uid="integrations.wake_reversals")
def on_posting_posted(sender, posting, **kwargs):
    """A payment posted (after the commit): the reversals waiting for it go now."""
    outbox.wake_waiting_reversals(posting)


@receiver(platform.batch_deposited, dispatch_uid="integrations.batch_deposited")
def on_batch_deposited(sender, batch, **kwargs):
    transaction.on_commit(lambda: _queue_report(batch.pk))


def _queue_report(batch_id: int) -> None:
    """After the deposit committed: a broker that cannot be reached must not turn the
    person's "deposited" into an error page (the report's own schedule sends it later)."""
    try:
        outbox.enqueue_task("integrations.tasks.send_deposit_report", batch_id)
    except Exception as err:  # noqa: BLE001
        log.warning(
            "batch %s: its deposit report could not be queued (%s: %s)",
            batch_id,
            type(err).__name__,
            mask(str(err))[:500],
        )
