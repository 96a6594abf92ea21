"""The platform's signals: the only way the host tells the world that money moved.

Every signal is sent by ``rentplatform.services`` *inside* the database transaction that made the
change, so a receiver that writes rows (the integrations' outbox) commits or rolls back with it.
Receivers must not do network I/O; they queue work with ``transaction.on_commit``. Such callbacks
run after the commit and are guarded by the services (``services.transactions.committing``): one
that raises is logged and changes nothing for the caller (the payment is taken, the resident sees
it), so queued work must be recoverable from rows (the outbox's retry sweep).

Receivers run while the service holds its row locks (docs/reliability.md, "Lock order": lease,
then deposit batch, then payment): a receiver must not lock a lease, batch or payment row itself.
"""

from __future__ import annotations

from django.dispatch import Signal

# payment_accepted(sender=Payment, payment: Payment)
#   A payment was accepted and joined its deposit batch (state "processing").
payment_accepted = Signal()

# payment_settled(sender=Payment, payment: Payment)
payment_settled = Signal()

# payment_voided(sender=Payment, payment: Payment, reversal: Reversal)
#   Voided while processing, on the property's day it was made.
payment_voided = Signal()

# payment_refunded(sender=Payment, payment: Payment, reversal: Reversal)
payment_refunded = Signal()

# payment_returned(sender=Payment, payment: Payment, reversal: Reversal)
#   An ACH payment came back with a NACHA R-code (reversal.return_code).
payment_returned = Signal()

# payment_charged_back(sender=Payment, payment: Payment, reversal: Reversal)
payment_charged_back = Signal()

# batch_closed(sender=DepositBatch, batch: DepositBatch)
#   No more payments will join the batch. When an open batch is deposited directly, closing and
#   depositing are one update: batch_closed is sent first, with the batch already "deposited".
batch_closed = Signal()

# batch_deposited(sender=DepositBatch, batch: DepositBatch)
#   The bank received the batch; reversals from now on go to a reversals batch.
batch_deposited = Signal()

REVERSAL_SIGNALS = (payment_voided, payment_refunded, payment_returned, payment_charged_back)
