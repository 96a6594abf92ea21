"""Deposit batch assignment, closing and deposit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Sum
from django.db.models.functions import Length
from django.utils import timezone

from rentplatform import signals
from rentplatform.models import (
    BatchKind,
    BatchStatus,
    DepositBatch,
    Payment,
    PaymentState,
    Property,
)
from rentplatform.prepared import Prepared

from .errors import ServiceError
from .transactions import committing

# Our batch id is what AMSI sees as ClientJnlNo / ExternalJnlNo. Production clients typed it as
# an integer of at most 9 digits (docs/amsi-evidence.md, "batch id"), so it is a 9-digit number
# drawn from one sequence for the whole platform: unique across properties and portfolios for
# centuries of daily batches (800 million ids), it fits a signed 32-bit column, and its first
# digit (1-4) keeps it apart from the transaction ids a provider may send (5xxxxxxxx).
BATCH_ID_FIRST = 100_000_001
BATCH_ID_LAST = 499_999_999


def _next_batch_id() -> str:
    """The next free batch id; a racing writer's duplicate is caught by the unique index."""
    last = (
        DepositBatch.objects.filter(
            batch_id__gte=str(BATCH_ID_FIRST), batch_id__lte=str(BATCH_ID_LAST)
        )
        .annotate(width=Length("batch_id"))
        .filter(width=9)
        .aggregate(last=Max("batch_id"))["last"]
    )
    number = int(last) + 1 if last else BATCH_ID_FIRST
    if number > BATCH_ID_LAST:
        raise ServiceError("batch ids are exhausted (9 digits): see docs/design.md", code="ids")
    return str(number)


# Read for every payment taken: compiled once (rentplatform/prepared.py). At most one open
# batch per (property, stream, day, kind): the partial unique constraint.
_LOCKED_OPEN_BATCH = Prepared(
    lambda prop_id, stream, day, kind: (
        DepositBatch.objects.select_for_update(of=("self",), no_key=True)
        .filter(
            property_id=prop_id, stream=stream, business_day=day, kind=kind, status=BatchStatus.OPEN
        )
        .order_by()
    ),
    int,
    str,
    dt.date,
    str,
)


def _locked_open_batch(prop: Property, stream: str, day: dt.date, kind: str) -> DepositBatch | None:
    """The open batch, locked (FOR NO KEY UPDATE of the batch row only), or None.

    A close or deposit holding the batch makes us wait; when it commits, PostgreSQL re-checks
    ``status = 'open'`` on the new row version and the batch is no longer found: the caller
    opens the day's next batch instead of joining a closed one.
    """
    return _LOCKED_OPEN_BATCH.first(prop.pk, stream, day, kind)


def open_batch(prop: Property, stream: str, day: dt.date, kind: str) -> DepositBatch:
    """The open batch for (property, stream, day, kind), created on demand, locked.

    Called inside the caller's transaction; the batch stays locked until it commits, so it
    cannot be closed or deposited while a payment or reversal is joining it. Safe under
    concurrency: the partial unique constraint lets only one open batch exist and the batch id is
    unique, so a loser of either race re-reads and tries again.
    """
    for _ in range(20):
        batch = _locked_open_batch(prop, stream, day, kind)
        if batch:
            return batch
        try:
            with transaction.atomic():
                return DepositBatch.objects.create(
                    batch_id=_next_batch_id(),
                    property=prop,
                    stream=stream,
                    business_day=day,
                    kind=kind,
                )
        except IntegrityError:
            continue
    raise ServiceError(f"could not open a {kind} batch for {prop.code} {stream} {day}")


def lock_batch(pk: int) -> DepositBatch:
    """Lock one batch row (FOR NO KEY UPDATE OF the batch only: never its property)."""
    return (
        DepositBatch.objects.select_for_update(of=("self",), no_key=True)
        .select_related("property")
        .get(pk=pk)
    )


def batch_for_payment(prop: Property, method: str, when: dt.datetime) -> DepositBatch:
    """The open payments batch a payment made at ``when`` joins, locked (see ``open_batch``)."""
    return open_batch(prop, method, prop.local_day(when), BatchKind.PAYMENTS)


def batch_for_reversal(
    payment: Payment, when: dt.datetime, *, original: DepositBatch | None = None
) -> DepositBatch:
    """Rule 5: before deposit, the original batch; after, the day's reversals batch.

    ``original`` is the payment's batch, already locked by the caller (``_reverse`` locks it
    before the payment: the lock order in docs/reliability.md).
    """
    original = original or payment.batch
    if original.status != BatchStatus.DEPOSITED:
        return original
    prop = original.property
    return open_batch(prop, original.stream, prop.local_day(when), BatchKind.REVERSALS)


def close_batch(batch: DepositBatch, *, now: dt.datetime | None = None) -> DepositBatch:
    with committing():
        batch = lock_batch(batch.pk)
        if batch.status != BatchStatus.OPEN:
            raise ServiceError(
                f"batch {batch.batch_id} is {batch.status}, not open", code="not_open"
            )
        batch.status = BatchStatus.CLOSED
        batch.closed_at = now or timezone.now()
        batch.save(update_fields=["status", "closed_at"])
        signals.batch_closed.send(sender=DepositBatch, batch=batch)
    return batch


def deposit_batch(batch: DepositBatch, *, now: dt.datetime | None = None) -> DepositBatch:
    """The bank received the batch: close it if needed, mark its settled payments deposited.

    Lock order (docs/reliability.md): the batch, then its payments. Each row is updated once:
    closing and depositing an open batch is one UPDATE. (Updating the batch twice made the second
    UPDATE re-check the batch's foreign key to its property in PostgreSQL, a KEY SHARE lock on the
    property row that a payment in flight could hold: a deadlock.)
    """
    now = now or timezone.now()
    with committing():
        batch = lock_batch(batch.pk)
        if batch.status == BatchStatus.DEPOSITED:
            raise ServiceError(
                f"batch {batch.batch_id} is already deposited", code=BatchStatus.DEPOSITED
            )
        unsettled = batch.payments.filter(state=PaymentState.PROCESSING).count()
        if unsettled:
            raise ServiceError(
                f"batch {batch.batch_id} still has {unsettled} processing payment(s); "
                "settle them first",
                code="unsettled",
            )
        settled = (
            batch.payments.select_for_update(of=("self",), no_key=True)
            .filter(state=PaymentState.SETTLED)
            .order_by("pk")
        )
        for payment in settled:
            payment.state = PaymentState.DEPOSITED
            payment.save(update_fields=["state", "updated_at"])
        was_open = batch.status == BatchStatus.OPEN
        fields = ["status", "deposited_at"]
        if was_open:
            batch.closed_at = now
            fields.append("closed_at")
        batch.status = BatchStatus.DEPOSITED
        batch.deposited_at = now
        batch.save(update_fields=fields)
        if was_open:
            signals.batch_closed.send(sender=DepositBatch, batch=batch)
        signals.batch_deposited.send(sender=DepositBatch, batch=batch)
    return batch


def batch_totals(batch: DepositBatch) -> dict:
    """Counts and totals of a batch: payments minus reversals."""
    pay = batch.payments.aggregate(n=Count("pk"), total=Sum("amount"))
    rev = batch.reversals.aggregate(n=Count("pk"), total=Sum("amount"))
    # SQLite's SUM drops trailing zeros: bring every total back to two places.
    payments_total = (pay["total"] or Decimal("0")).quantize(Decimal("0.01"))
    reversals_total = (rev["total"] or Decimal("0")).quantize(Decimal("0.01"))
    return {
        "payments": pay["n"],
        "payments_total": payments_total,
        "reversals": rev["n"],
        "reversals_total": -reversals_total,
        "net": payments_total - reversals_total,
    }
