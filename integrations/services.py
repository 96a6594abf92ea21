"""Framework services used by the admin, the commands and the tasks."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from integrations import outbox
from integrations.exceptions import IntegrationError
from integrations.importing import last_delta_end
from integrations.logging import mask
from integrations.models import (
    Connection,
    Posting,
    PostingKind,
    SyncKind,
    SyncRun,
    SyncStatus,
)
from integrations.providers.base import ConnectionCheck
from rentplatform.models import Payment, Reversal

log = logging.getLogger(__name__)


def test_connection(connection: Connection):
    provider = connection.get_provider()
    try:
        check = provider.test_connection()
    except IntegrationError as err:
        check = ConnectionCheck(False, str(err))
    connection.last_tested_at = timezone.now()
    connection.last_test_ok = check.ok
    connection.last_test_message = mask(check.message)
    connection.save(update_fields=["last_tested_at", "last_test_ok", "last_test_message"])
    if check.ok:
        outbox.resume_connection(connection)
    elif check.details.get("login_refused"):
        outbox.pause_connection(connection, check.message)
    return check


def run_sync(
    connection: Connection,
    kind: str,
    *,
    lease_id: int | None = None,
    dry_run: bool = False,
    triggered_by: str = "",
    progress=None,
) -> SyncRun:
    """Run an import/resync, logged as a SyncRun row written first (dj-stripe's pattern)."""
    run = SyncRun.objects.create(
        connection=connection, kind=kind, dry_run=dry_run, triggered_by=triggered_by[:100]
    )
    since = last_delta_end(connection) if kind == SyncKind.DELTA else None
    run.window_start = since
    try:
        connection.get_provider().sync(run, lease_id=lease_id, since=since, progress=progress)
    except IntegrationError as err:
        run.status = SyncStatus.FAILED
        run.message = mask(str(err))
    except Exception as err:  # recorded on the row, then re-raised
        run.status = SyncStatus.FAILED
        run.message = mask(f"{type(err).__name__}: {err}")
        run.finished_at = timezone.now()
        run.save()
        raise
    else:
        run.status = SyncStatus.PARTIAL if run.errors else SyncStatus.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()
    log.info("sync %s for %s: %s", kind, connection.property.code, run.summary())
    return run


def enable_connection(connection: Connection) -> int:
    """Enable a connection: the postings it held while disabled are queued. Returns how many."""
    return outbox.enable_connection(connection)


@dataclass
class BackfillPlan:
    """What a backfill creates (dry run) or created: postings for a property's payments and
    reversals from ``since`` on that have none (taken before the connection existed)."""

    connection: Connection
    since: dt.date
    payments: list = field(default_factory=list)
    reversals: list = field(default_factory=list)
    # Reversals from ``since`` on whose payment has no posting and gets none here (it was taken
    # before ``since``): not backfilled, since they could only stop for a person.
    skipped_reversals: list = field(default_factory=list)
    dry_run: bool = True
    created: int = 0

    @property
    def count(self) -> int:
        return len(self.payments) + len(self.reversals)

    @property
    def total(self) -> Decimal:
        """Net amount: payments minus reversals."""
        paid = sum((p.amount for p in self.payments), Decimal("0.00"))
        return paid - sum((r.amount for r in self.reversals), Decimal("0.00"))

    @property
    def first(self) -> dt.date | None:
        days = [p.business_day for p in self.payments] + [r.business_day for r in self.reversals]
        return min(days) if days else None

    @property
    def last(self) -> dt.date | None:
        days = [p.business_day for p in self.payments] + [r.business_day for r in self.reversals]
        return max(days) if days else None

    def summary(self) -> str:
        if not self.count:
            text = f"nothing to backfill since {self.since}"
        else:
            text = (
                f"{len(self.payments)} payment(s) and {len(self.reversals)} reversal(s) since "
                f"{self.since}, {self.first} to {self.last}, net {self.total}"
            )
        if self.skipped_reversals:
            text += (
                f"; {len(self.skipped_reversals)} reversal(s) of earlier payments left out "
                "(their payment has no posting)"
            )
        if not self.dry_run:
            text += f": {self.created} posting(s) created"
        return text


def backfill(connection: Connection, since: dt.date, *, dry_run: bool = True) -> BackfillPlan:
    """Postings for the property's payments and reversals since ``since`` (the property's
    business day) that have none: what was taken before the connection existed.

    Idempotent (``get_or_create``, the same call as a live payment's): never a second posting
    for a payment or a reversal, so running it twice, or while payments come in, is harmless.
    Payments whose lease is not linked get a posting too (it will need attention, saying so).
    Postings of a disabled connection are held until it is enabled.
    """
    prop = connection.property
    plan = BackfillPlan(connection=connection, since=since, dry_run=dry_run)
    plan.payments = list(
        Payment.objects.filter(batch__property=prop, business_day__gte=since)
        .exclude(postings__kind=PostingKind.PAYMENT)
        .select_related("batch")
        .order_by("accepted_at", "pk")
    )
    backfilled = {p.pk for p in plan.payments}
    for reversal in (
        Reversal.objects.filter(batch__property=prop, business_day__gte=since)
        .exclude(postings__kind=PostingKind.REVERSAL)
        .select_related("batch", "payment")
        .order_by("created_at", "pk")
    ):
        has_posting = (
            reversal.payment_id in backfilled
            or Posting.objects.filter(
                payment_id=reversal.payment_id, kind=PostingKind.PAYMENT
            ).exists()
        )
        (plan.reversals if has_posting else plan.skipped_reversals).append(reversal)
    if dry_run:
        return plan
    with transaction.atomic():
        for payment in plan.payments:
            before = Posting.objects.filter(payment=payment, kind=PostingKind.PAYMENT).exists()
            outbox.create_payment_posting(payment, connection=connection)
            plan.created += not before
        for reversal in plan.reversals:
            before = Posting.objects.filter(reversal=reversal).exists()
            outbox.create_reversal_posting(reversal, connection=connection)
            plan.created += not before
    log.info("backfill for %s: %s", prop.code, plan.summary())
    return plan
