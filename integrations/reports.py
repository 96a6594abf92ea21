"""Batch Deposit Reports: one per our batch id, to check against the accounting system's own
deposit report (the provider's ``system_name`` names it in the column titles).

A report is derived from the batch's rows and the postings' remote references each time it is
shown (no copy to go stale).

Its email is delivered **at least once** (``ReportDelivery``, one row per batch):

- the deposit's on-commit task (``integrations.tasks.send_deposit_report``) sends it at once;
- a failed send (SMTP refused, timed out, server down) is retried by the schedule
  ``integrations.report_delivery`` (``report_sweep``, every ``REPORT_SWEEP_MINUTES``, 5), with
  backoff, up to ``REPORT_MAX_ATTEMPTS`` (8); then the delivery is "failed" with its last
  error, shown in the Batch Deposit Reports list, and a person can "send again";
- the sweep also writes the row for a deposited batch whose on-commit task was lost
  (deposited within ``REPORT_BACKFILL_DAYS``, 3);
- a sender **claims** the row before sending (a conditional UPDATE to "sending" with a claim
  deadline longer than the task timeout), so two workers never send one report at once, and
  ``sent_at`` is written after the mail server accepted the message. A worker killed between
  the two leaves an expired claim and the report is sent again: the managers may then get it
  twice (at least once, not exactly once: SMTP gives no idempotency key to make it otherwise).

Every send opens its connection with a timeout (``mail_connection``: the mail server's own,
``EMAIL_TIMEOUT`` or the mailer's ``timeout`` option, when the project sets one, else
``REPORT_EMAIL_TIMEOUT_SECONDS``, 30), so a silent mail server cannot hold a worker until the
task is killed. On Django 6.1 and later the report goes through the ``REPORT_MAILER`` alias of
``MAILERS`` ("default"; Django itself falls back to the ``EMAIL_*`` settings of a project that
has not moved to ``MAILERS`` yet). The CSV goes through ``rentplatform.csvsafe`` (no
spreadsheet formulas from outside data).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core import mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import outbox
from integrations.conf import get_setting
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingKind
from integrations.models.posting import ReportDelivery, ReportDeliveryState
from rentplatform import csvsafe
from rentplatform.models import BatchStatus, DepositBatch

log = logging.getLogger(__name__)

ZERO = Decimal("0.00")


@dataclass
class ReportLine:
    kind: str
    resident: str
    unit: str
    lease_reference: str
    method: str
    amount: Decimal
    reference: str
    remote_reference: str
    posting_state: str
    note: str = ""


@dataclass
class DepositReport:
    batch: DepositBatch
    lines: list[ReportLine] = field(default_factory=list)
    system_name: str = "the accounting system"  # the provider's, when the property has one

    @property
    def lease_label(self) -> str:
        return f"Lease ID in {self.system_name}"

    @property
    def reference_label(self) -> str:
        return f"Reference in {self.system_name}"

    @property
    def payments_total(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.amount > 0), ZERO)

    @property
    def reversals_total(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.amount < 0), ZERO)

    @property
    def net(self) -> Decimal:
        return self.payments_total + self.reversals_total

    @property
    def title(self) -> str:
        b = self.batch
        return (
            f"Batch Deposit Report {b.batch_id} - {b.property.name} - "
            f"{b.get_stream_display()} {b.get_kind_display().lower()} {b.business_day:%m/%d/%Y}"
        )

    def as_csv(self) -> str:
        """The report as CSV; every cell neutralised against spreadsheet formulas (resident
        names, units and notes come from outside; amounts stay plain numbers: csvsafe)."""
        buf = io.StringIO()
        w = csvsafe.writer(buf)
        b = self.batch
        w.writerow(["Batch Deposit Report", b.batch_id])
        w.writerow(["Property", b.property.code, b.property.name])
        w.writerow(["Stream", b.stream, "Kind", b.kind, "Business day", b.business_day.isoformat()])
        w.writerow(["Deposited", b.deposited_at.isoformat() if b.deposited_at else ""])
        w.writerow([])
        w.writerow(
            [
                "Type",
                "Resident",
                "Unit",
                self.lease_label,
                "Method",
                "Amount",
                "Our reference",
                self.reference_label,
                "Posting",
                "Note",
            ]
        )
        for line in self.lines:
            w.writerow(
                [
                    line.kind,
                    line.resident,
                    line.unit,
                    line.lease_reference,
                    line.method,
                    f"{line.amount:.2f}",
                    line.reference,
                    line.remote_reference,
                    line.posting_state,
                    line.note,
                ]
            )
        w.writerow([])
        w.writerow(["Payments total", f"{self.payments_total:.2f}"])
        w.writerow(["Reversals total", f"{self.reversals_total:.2f}"])
        w.writerow(["Net deposit", f"{self.net:.2f}"])
        return buf.getvalue()

    def as_text(self) -> str:
        out = [self.title, ""]
        for line in self.lines:
            out.append(
                f"{line.kind:10} {line.unit:12} {line.lease_reference:18} {line.method:4} "
                f"{line.amount:>10.2f}  {line.remote_reference or '-':>8}  {line.resident}"
            )
        out += [
            "",
            f"{'Payments':>48} {self.payments_total:>10.2f}",
            f"{'Reversals':>48} {self.reversals_total:>10.2f}",
            f"{'Net deposit':>48} {self.net:>10.2f}",
        ]
        return "\n".join(out)


def build_report(batch: DepositBatch) -> DepositReport:
    batch = DepositBatch.objects.select_related("property").get(pk=batch.pk)
    connection = Connection.objects.filter(property=batch.property).first()
    provider = connection.get_provider() if connection else None
    postings = {
        (p.kind, p.payment_id if p.kind == PostingKind.PAYMENT else p.reversal_id): p
        for p in Posting.objects.filter(payment__batch=batch, kind=PostingKind.PAYMENT)
        | Posting.objects.filter(reversal__batch=batch, kind=PostingKind.REVERSAL)
    }
    report = DepositReport(batch)
    if provider is not None:
        report.system_name = provider.system_name

    def who(payment):
        resident = payment.resident or payment.lease.residents.first()
        return str(resident) if resident else ""

    refs: dict[int, str] = {}

    def lease_ref(lease):
        if lease.pk not in refs:
            refs[lease.pk] = provider.lease_reference(lease) if provider else ""
        return refs[lease.pk]

    for payment in batch.payments.select_related("lease__unit__building", "resident").order_by(
        "accepted_at"
    ):
        p = postings.get((PostingKind.PAYMENT, payment.pk))
        report.lines.append(
            ReportLine(
                "Payment",
                who(payment),
                str(payment.lease.unit),
                lease_ref(payment.lease),
                payment.get_method_display(),
                payment.amount,
                payment.short_id,
                p.remote_reference if p else "",
                p.get_state_display() if p else "not sent",
            )
        )
    for reversal in batch.reversals.select_related(
        "payment__lease__unit__building", "payment__resident"
    ).order_by("created_at"):
        p = postings.get((PostingKind.REVERSAL, reversal.pk))
        payment = reversal.payment
        note = f"{reversal.return_code} {reversal.note}".strip() if reversal.return_code else ""
        note += f" reverses {payment.short_id} of batch {payment.batch.batch_id}"
        report.lines.append(
            ReportLine(
                reversal.get_kind_display(),
                who(payment),
                str(payment.lease.unit),
                lease_ref(payment.lease),
                payment.get_method_display(),
                -reversal.amount,
                reversal.short_id,
                p.remote_reference if p else "",
                p.get_state_display() if p else "not sent",
                note.strip(),
            )
        )
    return report


# --- email delivery ----------------------------------------------------------------------------

REPORT_DEFAULTS = {
    "REPORT_MAX_ATTEMPTS": 8,
    # Seconds before attempt n+1 (the last value repeats): about 6 hours from first to last.
    "REPORT_RETRY_BACKOFF_SECONDS": [60, 300, 900, 1800, 3600, 7200, 7200],
    "REPORT_SWEEP_MINUTES": 5,
    "REPORT_EMAIL_TIMEOUT_SECONDS": 30,
    "REPORT_MAILER": "default",  # Django 6.1+: the MAILERS alias the reports go through
    "REPORT_BACKFILL_DAYS": 3,
}


def report_setting(name: str):
    """``settings.INTEGRATIONS[name]``, else the default above (read at call time)."""
    configured = getattr(settings, "INTEGRATIONS", {}) or {}
    return configured.get(name, REPORT_DEFAULTS[name])


def email_timeout() -> float:
    """settings.EMAIL_TIMEOUT when the project sets one, else REPORT_EMAIL_TIMEOUT_SECONDS
    (Django before 6.1: its EMAIL_* settings)."""
    return getattr(settings, "EMAIL_TIMEOUT", None) or report_setting(
        "REPORT_EMAIL_TIMEOUT_SECONDS"
    )


def mail_connection():
    """The connection a report is sent through, with a timeout.

    Django 6.1 and later: the ``REPORT_MAILER`` mailer (``django.core.mail.mailers``), whose
    timeout is its ``timeout`` option (or, for a project still on the deprecated settings,
    ``EMAIL_TIMEOUT``); a mailer with a ``timeout`` of None (no option set) gets
    ``REPORT_EMAIL_TIMEOUT_SECONDS``. Before 6.1: ``get_connection(timeout=email_timeout())``.
    A backend without a ``timeout`` (console, file, an API client's own) keeps its own."""
    mailers = getattr(mail, "mailers", None)
    if mailers is None:  # Django before 6.1
        return mail.get_connection(timeout=email_timeout())
    connection = mailers[report_setting("REPORT_MAILER")]
    if getattr(connection, "timeout", False) is None:
        connection.timeout = report_setting("REPORT_EMAIL_TIMEOUT_SECONDS")
    return connection


def _claim_seconds() -> float:
    # The postings' claim: longer than django-q2's task timeout, so a claim never expires while
    # its task may still be talking to the mail server (docs/reliability.md, the timing chain).
    return float(get_setting("CLAIM_SECONDS"))


def _backoff(attempts: int) -> dt.timedelta:
    steps = list(report_setting("REPORT_RETRY_BACKOFF_SECONDS")) or [60]
    return dt.timedelta(seconds=steps[min(attempts, len(steps)) - 1])


NO_RECIPIENTS = "the property has no manager emails: add them, then use Send again"


def ensure_delivery(batch: DepositBatch):
    """The batch's delivery row, written once (a concurrent writer's row is returned)."""
    recipients = batch.property.manager_email_list
    now = timezone.now()
    defaults = {"recipients": ", ".join(recipients), "next_attempt_at": now}
    if not recipients:
        defaults.update(state=ReportDeliveryState.FAILED, last_error=NO_RECIPIENTS)
    delivery, _ = ReportDelivery.objects.get_or_create(batch=batch, defaults=defaults)
    return delivery


def _claimable(now: dt.datetime) -> Q:
    state = _states()
    due = Q(state__in=[state.PENDING, state.RETRYING]) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    # A claim past its deadline: the worker died (or was killed) mid-send.
    abandoned = Q(
        state=state.SENDING,
        claimed_until__lt=now,
        attempts__lt=int(report_setting("REPORT_MAX_ATTEMPTS")),
    )
    return (due | abandoned) & Q(sent_at__isnull=True)


def _states():
    return ReportDeliveryState


def claim(delivery_id: int) -> bool:
    """Take the delivery for one attempt: True for exactly one of any number of concurrent
    callers (the UPDATE's WHERE is re-checked under the row's write lock)."""
    now = timezone.now()
    taken = ReportDelivery.objects.filter(_claimable(now), pk=delivery_id).update(
        state=_states().SENDING,
        claimed_until=now + dt.timedelta(seconds=_claim_seconds()),
        attempts=F("attempts") + 1,
        last_attempt_at=now,
    )
    return taken == 1


def _error_text(err: BaseException) -> str:
    return mask(f"{type(err).__name__}: {err}")[:1000]


def deliver(delivery_id: int) -> bool:
    """One attempt at sending the report, if it is ours to send now. True when sent now.

    A failure is recorded (attempts, last error, next attempt) and not raised: the schedule
    retries it. Only an exception that is not an ``Exception`` (the worker being stopped)
    leaves the claim in place, to expire and be retried.
    """
    if not claim(delivery_id):
        return False
    return send_claimed(delivery_id)


def send_claimed(delivery_id: int) -> bool:
    """Send a delivery this caller has claimed (``claim`` returned True); see ``deliver``."""
    state = _states()
    delivery = ReportDelivery.objects.select_related("batch__property").get(pk=delivery_id)
    batch = delivery.batch
    recipients = batch.property.manager_email_list  # as the managers are now
    mine = ReportDelivery.objects.filter(pk=delivery_id, state=state.SENDING)
    if not recipients:
        mine.update(state=state.FAILED, last_error=NO_RECIPIENTS, claimed_until=None)
        return False
    try:
        report = build_report(batch)
        message = mail.EmailMessage(subject=report.title, body=report.as_text(), to=recipients)
        message.attach(f"batch-deposit-report-{batch.batch_id}.csv", report.as_csv(), "text/csv")
        mail_connection().send_messages([message])
    except Exception as err:  # noqa: BLE001  (any failure is recorded and retried)
        error = _error_text(err)
        now = timezone.now()
        if delivery.attempts >= int(report_setting("REPORT_MAX_ATTEMPTS")):
            mine.update(
                state=state.FAILED,
                last_error=f"gave up after {delivery.attempts} attempts: {error}",
                next_attempt_at=None,
                claimed_until=None,
            )
        else:
            mine.update(
                state=state.RETRYING,
                last_error=error,
                next_attempt_at=now + _backoff(delivery.attempts),
                claimed_until=None,
            )
        log.warning("Batch Deposit Report %s not sent: %s", batch.batch_id, error)
        return False
    mine.update(
        state=state.SENT,
        sent_at=timezone.now(),
        recipients=", ".join(recipients),
        last_error="",
        next_attempt_at=None,
        claimed_until=None,
    )
    return True


def deliver_report(delivery_id: int) -> bool:
    """django-q2 task: one attempt at one delivery (queued by ``report_sweep``)."""
    return deliver(delivery_id)


def send_report(batch_id: int) -> bool:
    """Email the batch's report to the property's managers unless it was sent already (the
    deposit's task). True when sent now; a failure is left to the schedule to retry."""
    batch = DepositBatch.objects.select_related("property").get(pk=batch_id)
    return deliver(ensure_delivery(batch).pk)


def report_sweep() -> int:
    """The schedule's task: write missing deliveries, give up on abandoned last attempts, and
    queue one attempt per due delivery. Returns how many were queued."""
    state = _states()
    now = timezone.now()
    since = now - dt.timedelta(days=float(report_setting("REPORT_BACKFILL_DAYS")))
    for batch in DepositBatch.objects.select_related("property").filter(
        status=BatchStatus.DEPOSITED, deposited_at__gte=since, report_delivery__isnull=True
    ):
        ensure_delivery(batch)
    ReportDelivery.objects.filter(
        state=state.SENDING,
        claimed_until__lt=now,
        attempts__gte=int(report_setting("REPORT_MAX_ATTEMPTS")),
    ).update(
        state=state.FAILED,
        last_error="gave up: the worker stopped during the last attempt (the managers may or "
        "may not have received it)",
        claimed_until=None,
    )
    due = list(
        ReportDelivery.objects.filter(_claimable(timezone.now())).values_list("pk", flat=True)
    )
    for pk in due:
        outbox.enqueue_task("integrations.reports.deliver_report", pk, group="reports")
    return len(due)


class NotAllowed(Exception):
    """A person's request that does not fit the delivery's state; the message says why."""


def resend(batch: DepositBatch) -> None:
    """A person's "send again": queue a fresh round of attempts (sent or not before)."""
    state = _states()
    delivery = ensure_delivery(batch)
    now = timezone.now()
    reset = (
        ReportDelivery.objects.filter(pk=delivery.pk)
        .exclude(state=state.SENDING, claimed_until__gte=now)
        .update(
            state=state.PENDING,
            attempts=0,
            next_attempt_at=now,
            sent_at=None,
            last_error="",
            claimed_until=None,
        )
    )
    if not reset:
        raise NotAllowed(f"report {batch.batch_id} is being sent right now")
    # After the reset is committed (a worker must see it); if this task is lost, the schedule
    # finds the delivery due.
    transaction.on_commit(
        lambda: outbox.enqueue_task(
            "integrations.reports.deliver_report", delivery.pk, group="reports"
        )
    )
