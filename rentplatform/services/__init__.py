"""The service layer: the only code that changes payments, batches and access.

Each function runs in one transaction, locks what it changes, checks the rules and sends the
platform's signals (``rentplatform.signals``) inside that transaction.
"""

from .access import block_lease, set_accounting_access, unblock_lease
from .batches import batch_for_payment, batch_for_reversal, close_batch, deposit_batch
from .errors import PaymentRefused, ServiceError
from .payments import (
    accept_payment,
    charge_back_payment,
    refund_payment,
    return_payment,
    settle_payment,
    void_payment,
)

__all__ = [
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
