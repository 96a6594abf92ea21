"""Turn the platform's signals into outbox rows, inside the event's own transaction."""

from __future__ import annotations

from django.dispatch import receiver

from rentplatform import signals as platform

from . import outbox


@receiver(platform.payment_accepted, dispatch_uid="integrations.payment_accepted")
def on_payment_accepted(sender, payment, **kwargs):
    outbox.create_payment_posting(payment)


def on_reversal(sender, payment, reversal, **kwargs):
    outbox.create_reversal_posting(reversal)


for _n, _signal in enumerate(platform.REVERSAL_SIGNALS):
    _signal.connect(on_reversal, dispatch_uid=f"integrations.reversal.{_n}")


@receiver(platform.batch_deposited, dispatch_uid="integrations.batch_deposited")
def on_batch_deposited(sender, batch, **kwargs):
    from django.db import transaction

    transaction.on_commit(
        lambda: outbox.enqueue_task("integrations.tasks.send_deposit_report", batch.pk)
    )
