"""Batch Deposit Reports: one per our batch id, to check against eSite's External Deposits.

A report is derived from the batch's rows and the postings' remote references each time it is
shown (no copy to go stale); sending it by email is recorded once per batch, so a repeated
task sends nothing twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import Connection, Posting
from rentplatform.models import DepositBatch

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
        buf = io.StringIO()
        w = csv.writer(buf)
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
                "Lease (AMSI ID)",
                "Method",
                "Amount",
                "Our reference",
                "AMSI reference",
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
        (p.kind, p.payment_id if p.kind == "payment" else p.reversal_id): p
        for p in Posting.objects.filter(payment__batch=batch, kind="payment")
        | Posting.objects.filter(reversal__batch=batch, kind="reversal")
    }
    report = DepositReport(batch)

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
        p = postings.get(("payment", payment.pk))
        report.lines.append(
            ReportLine(
                "Payment",
                who(payment),
                str(payment.lease.unit),
                lease_ref(payment.lease),
                payment.get_method_display(),
                payment.amount,
                payment.public_id[:12],
                p.remote_reference if p else "",
                p.get_state_display() if p else "not sent",
            )
        )
    for reversal in batch.reversals.select_related(
        "payment__lease__unit__building", "payment__resident"
    ).order_by("created_at"):
        p = postings.get(("reversal", reversal.pk))
        payment = reversal.payment
        note = f"{reversal.return_code} {reversal.note}".strip() if reversal.return_code else ""
        note += f" reverses {payment.public_id[:12]} of batch {payment.batch.batch_id}"
        report.lines.append(
            ReportLine(
                reversal.get_kind_display(),
                who(payment),
                str(payment.lease.unit),
                lease_ref(payment.lease),
                payment.get_method_display(),
                -reversal.amount,
                reversal.public_id[:12],
                p.remote_reference if p else "",
                p.get_state_display() if p else "not sent",
                note.strip(),
            )
        )
    return report


def send_report(batch_id: int) -> bool:
    """Email the report to the property's managers, once per batch. True when sent now."""
    from integrations.models import ReportDelivery

    batch = DepositBatch.objects.select_related("property").get(pk=batch_id)
    recipients = batch.property.manager_email_list
    if not recipients:
        return False
    try:
        with transaction.atomic():
            delivery = ReportDelivery.objects.create(batch=batch, recipients=", ".join(recipients))
    except IntegrityError:
        return False  # already sent (a repeated task)
    report = build_report(batch)
    message = EmailMessage(
        subject=report.title,
        body=report.as_text(),
        to=recipients,
    )
    message.attach(f"batch-deposit-report-{batch.batch_id}.csv", report.as_csv(), "text/csv")
    try:
        message.send()
    except Exception:
        delivery.delete()  # let a retry send it
        raise
    ReportDelivery.objects.filter(pk=delivery.pk).update(sent_at=timezone.now())
    return True
