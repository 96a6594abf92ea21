"""The service layer: the only code that changes payments, batches and access.

Each function runs in one transaction, locks what it changes, checks the rules and sends the
platform's signals (``rentplatform.signals``) inside that transaction.

Row locks: each service locks only the rows it means (``select_for_update(of=("self",),
no_key=True)``: never the rows a ``select_related`` joins), updates each row once, and takes the
locks in one order everywhere, so two services can wait for each other but never in a circle:

    lease  ->  deposit batch (a payments batch, then a reversals batch)  ->  payment

``accept_payment``: lease, open batch. ``deposit_batch`` / ``close_batch``: batch, then its
payments. Reversals (void, refund, return, chargeback): the payment's batch, the day's reversals
batch if it was deposited, then the payment. ``settle_payment``: the payment only.
tests/faults/test_deadlock.py checks the order from the SQL and under load on PostgreSQL.

After the commit, nothing fails the caller (``transactions.committing``).
"""

from .access import block_lease, set_accounting_access, unblock_lease
from .batches import batch_for_payment, batch_for_reversal, close_batch, deposit_batch
from .errors import IdempotencyConflict, PaymentRefused, ServiceError
from .payments import (
    accept_payment,
    charge_back_payment,
    refund_payment,
    return_payment,
    settle_payment,
    void_payment,
)

__all__ = [
    "IdempotencyConflict",
    "PaymentRefused",
    "ServiceError",
    "accept_payment",
    "batch_for_payment",
    "batch_for_reversal",
    "block_lease",
    "charge_back_payment",
    "close_batch",
    "deposit_batch",
    "refund_payment",
    "return_payment",
    "set_accounting_access",
    "settle_payment",
    "unblock_lease",
    "void_payment",
]
