"""The ids AMSI sees, in the form production clients sent: positive integers.

Evidence (docs/amsi-evidence.md, rows "batch id", "transaction id", "merchant id", "id
lengths"): the production client typed ClientJnlNo, ExternalJnlNo, ClientTransactionID and
ClientMerchantId as integers, and a production hotfix stripped every non-digit from batch ids
before each call. Its batch ids were at most 9 digits (AMSI_EDEX.md); eSite's own limit is
not known. An ASP.NET service that parses them as ``int`` would refuse anything else, so
nothing but a positive integer of at most 9 digits is ever sent. The 9-digit cap is our
limit, so the id fits an Int32 whatever eSite parses it as.

- ClientJnlNo = our batch id (rentplatform: 9 digits from one platform-wide sequence,
  100000001-499999999).
- ClientTransactionID = 500000000 + the payment posting's primary key: a positive integer,
  unique for the whole platform (so per connection), fixed when the posting is written and so
  the same on every retry, and kept apart from batch ids. The production client settled a
  return with ExternalJnlNo = the original ClientTransactionID, so the two number spaces must
  never meet.
- Reversals name the original payment's ClientTransactionID (ReturnPayment has no id of its
  own).
"""

from __future__ import annotations

import re

from integrations.exceptions import PermanentError

from . import PROVIDER_ID

MAX_ID = 999_999_999
TRANSACTION_ID_BASE = 500_000_000
_ID = re.compile(r"[1-9][0-9]{0,8}")


def is_edex_int(value: str) -> bool:
    """A positive integer of at most 9 digits, no sign, no leading zero, ASCII only."""
    return bool(_ID.fullmatch(value or ""))


def client_transaction_id(payment_posting) -> str:
    """The ClientTransactionID of a payment posting (and of every reversal of its payment)."""
    if payment_posting.pk is None:
        raise ValueError("a posting gets its ClientTransactionID once it is saved")
    number = TRANSACTION_ID_BASE + payment_posting.pk
    if number > MAX_ID:
        raise PermanentError(
            f"posting #{payment_posting.pk} is past the 9-digit ClientTransactionID range; "
            "see docs/design.md (identifiers)",
            provider=PROVIDER_ID,
            record=payment_posting.key,
            code="ID_RANGE",
        )
    return str(number)


def client_jnl_no(batch_id: str, *, record: str = "") -> str:
    """Our batch id as ClientJnlNo / ExternalJnlNo, refused here rather than by eSite."""
    if not is_edex_int(batch_id):
        raise PermanentError(
            f"batch id {batch_id!r} is not a positive integer of at most 9 digits: our limit "
            "for ClientJnlNo, so the id fits an Int32 whatever eSite parses it as",
            provider=PROVIDER_ID,
            record=record or batch_id,
            code="BAD_BATCH_ID",
        )
    return batch_id


def transaction_id_posting_pk(value: str) -> int | None:
    """The payment posting's primary key behind a ClientTransactionID (None if not ours)."""
    if not is_edex_int(value) or int(value) <= TRANSACTION_ID_BASE:
        return None
    return int(value) - TRANSACTION_ID_BASE
