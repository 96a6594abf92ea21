"""A stand-in for the card/ACH processor: drives payments through the service layer.

It does what the real processor's callbacks would (accept, settle, deposit, return, chargeback,
refund, void), so the demo, the sandbox and the tests can move money without a processor.
Every subcommand calls ``rentplatform.services`` and runs in one transaction: a refusal raises
CommandError with the service's message (exit status 1) and changes nothing.

Examples::

    python manage.py processor pay --lease 12 --amount 125.00 --method card
    python manage.py processor pay --lease 12 --amount 125.00 --method ach --resident maple-ann \\
        --at 2025-03-01T23:30          # naive times are in the property's time zone
    python manage.py processor settle --payment 3f2a9c01be         # one payment (as shown)
    python manage.py processor settle --batch 250301111101         # every processing payment
    python manage.py processor settle --property maple --day 2025-03-01
    python manage.py processor deposit --batch 250301111101
    python manage.py processor deposit --property maple --day 2025-03-01
    python manage.py processor return --payment 3f2a...e9 --code R01
    python manage.py processor chargeback --payment 3f2a...e9
    python manage.py processor refund --payment 3f2a...e9
    python manage.py processor void --payment 3f2a...e9 [--at 2025-03-01T18:00]
    python manage.py processor settle --property maple --json   # one JSON object per line

A payment is named by the reference the portal, the admin and this command's output show (its
first 10 hex digits); the 32 digits or the dashed UUID work too. ``--resident`` takes the
resident's portal username, or the resident's number (#7) as before. The JSON output carries
the full 32-digit reference, for programs.
"""

from __future__ import annotations

import datetime as dt
import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from rentplatform.models import (
    BatchStatus,
    DepositBatch,
    Lease,
    Payment,
    PaymentMethod,
    PaymentState,
    Property,
    Resident,
    Reversal,
)
from rentplatform.models.payment import SHORT_REFERENCE_LENGTH, ReferenceFormatError, reference_q
from rentplatform.services import (
    ServiceError,
    accept_payment,
    charge_back_payment,
    deposit_batch,
    refund_payment,
    return_payment,
    settle_payment,
    void_payment,
)
from rentplatform.services.batches import batch_totals


def _payment_row(action: str, payment: Payment) -> dict[str, Any]:
    return {
        "action": action,
        "payment": payment.public_id,
        "lease": payment.lease_id,
        "amount": str(payment.amount),
        "method": payment.method,
        "state": payment.state,
        "batch_id": payment.batch.batch_id,
        "business_day": payment.business_day.isoformat(),
    }


def _reversal_row(action: str, reversal: Reversal) -> dict[str, Any]:
    payment = reversal.payment
    return {
        **_payment_row(action, payment),
        "reversal": reversal.public_id,
        "kind": reversal.kind,
        "return_code": reversal.return_code,
        "reversal_amount": str(-reversal.amount),
        "reversal_batch_id": reversal.batch.batch_id,
        "reversal_business_day": reversal.business_day.isoformat(),
    }


def _batch_row(action: str, batch: DepositBatch) -> dict[str, Any]:
    totals = batch_totals(batch)
    return {
        "action": action,
        "batch_id": batch.batch_id,
        "property": batch.property.code,
        "stream": batch.stream,
        "kind": batch.kind,
        "business_day": batch.business_day.isoformat(),
        "status": batch.status,
        "payments": totals["payments"],
        "payments_total": str(totals["payments_total"]),
        "reversals": totals["reversals"],
        "reversals_total": str(totals["reversals_total"]),
        "net": str(totals["net"]),
    }


REFERENCE_HELP = "the payment's reference as shown (10 hex digits) or all 32"


class Command(BaseCommand):
    help = "Processor stand-in: pay, settle, deposit, return, chargeback, refund, void."

    def add_arguments(self, parser: ArgumentParser) -> None:
        common = ArgumentParser(add_help=False)
        common.add_argument("--json", action="store_true", help="print one JSON object per action")
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        pay = sub.add_parser("pay", parents=[common], help="accept a payment (portal checks)")
        pay.add_argument("--lease", type=int, required=True)
        pay.add_argument("--amount", required=True, help="decimal string, e.g. 125.00")
        pay.add_argument("--method", required=True, choices=PaymentMethod.values)
        pay.add_argument(
            "--resident",
            help="pay as this resident: portal username or resident number (checks membership)",
        )
        pay.add_argument("--at", help="ISO datetime; naive means the property's time zone")
        pay.add_argument("--idempotency-key")

        settle = sub.add_parser("settle", parents=[common], help="settle processing payments")
        which = settle.add_mutually_exclusive_group(required=True)
        which.add_argument("--payment", help=REFERENCE_HELP)
        which.add_argument("--batch")
        which.add_argument("--property")
        settle.add_argument("--day", type=dt.date.fromisoformat, help="with --property")

        deposit = sub.add_parser("deposit", parents=[common], help="mark batches deposited")
        which = deposit.add_mutually_exclusive_group(required=True)
        which.add_argument("--batch")
        which.add_argument("--property")
        deposit.add_argument("--day", type=dt.date.fromisoformat, help="with --property")

        ret = sub.add_parser("return", parents=[common], help="ACH return with an R-code")
        ret.add_argument("--payment", required=True, help=REFERENCE_HELP)
        ret.add_argument("--code", required=True, help="NACHA code, e.g. R01")
        ret.add_argument("--at")

        for name, text in [
            ("chargeback", "card chargeback"),
            ("refund", "refund"),
            ("void", "void (property's same day only)"),
        ]:
            p = sub.add_parser(name, parents=[common], help=text)
            p.add_argument("--payment", required=True, help=REFERENCE_HELP)
            p.add_argument("--at")

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options.get("json", False)
        action = options["subcommand"]
        handler = getattr(self, f"do_{action}")
        try:
            # One transaction per command: a refusal anywhere leaves nothing half done, and
            # nothing is printed until the work has committed.
            with transaction.atomic():
                rows = handler(options)
        except ServiceError as err:
            raise CommandError(f"{action} refused ({err.code}): {err.message}") from err
        if not rows:
            self.stdout.write(self.style.WARNING(f"{action}: nothing to do"))
        for row in rows:
            self._report(row)

    # --- output ------------------------------------------------------------------------------

    def _report(self, row: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(row, sort_keys=True))
            return
        action = row["action"]
        # People see the short reference, as in the portal and the admin; it is accepted back.
        short = row.get("payment", "")[:SHORT_REFERENCE_LENGTH]
        if "reversal" in row:
            text = (
                f"{action}: payment {short} {row['amount']} {row['method']} is now "
                f"{row['state']}; reversal {row['reversal_amount']} in batch "
                f"{row['reversal_batch_id']} ({row['reversal_business_day']})"
            )
        elif "payment" in row:
            text = (
                f"{action}: payment {short} lease #{row['lease']} {row['amount']} "
                f"{row['method']} {row['state']} in batch {row['batch_id']} "
                f"({row['business_day']})"
            )
        else:
            text = (
                f"{action}: batch {row['batch_id']} {row['property']} {row['stream']} "
                f"{row['kind']} {row['business_day']} {row['status']}: {row['payments']} "
                f"payment(s) {row['payments_total']}, {row['reversals']} reversal(s) "
                f"{row['reversals_total']}, net {row['net']}"
            )
        self.stdout.write(self.style.SUCCESS(text))

    # --- lookups -----------------------------------------------------------------------------

    def _payment(self, reference: str) -> Payment:
        try:
            matching = reference_q(reference)
        except ReferenceFormatError as err:
            raise CommandError(str(err)) from None
        payments = list(
            Payment.objects.select_related("batch__property", "lease").filter(matching)[:2]
        )
        if not payments:
            raise CommandError(f"no payment {reference}")
        if len(payments) > 1:
            raise CommandError(
                f"{reference} is the start of more than one payment's reference; give more "
                "digits (all 32 are in --json output)"
            )
        return payments[0]

    def _resident(self, who: str) -> Resident:
        """A portal username, or the resident's number (the form this command took first)."""
        resident = Resident.objects.filter(user__username=who).first()
        if resident is None and who.lstrip("#").isdigit():
            resident = Resident.objects.filter(pk=int(who.lstrip("#"))).first()
        if resident is None:
            raise CommandError(f"no resident with username or number {who!r}")
        return resident

    def _batch(self, batch_id: str) -> DepositBatch:
        batch = DepositBatch.objects.select_related("property").filter(batch_id=batch_id).first()
        if batch is None:
            raise CommandError(f"no batch {batch_id}")
        return batch

    def _property(self, code: str) -> Property:
        prop = Property.objects.filter(code=code).first()
        if prop is None:
            raise CommandError(f"no property with code {code!r}")
        return prop

    def _when(self, text: str | None, prop: Property) -> dt.datetime | None:
        if not text:
            return None
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(f"--at {text!r} is not an ISO datetime") from None
        if timezone.is_naive(when):
            when = when.replace(tzinfo=prop.tz)
        return when

    # --- subcommands -------------------------------------------------------------------------

    def do_pay(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        lease = (
            Lease.objects.select_related("unit__building__property")
            .filter(pk=options["lease"])
            .first()
        )
        if lease is None:
            raise CommandError(f"no lease #{options['lease']}")
        resident = None
        if options["resident"] is not None:
            resident = self._resident(options["resident"])
        payment = accept_payment(
            lease,
            options["amount"],
            options["method"],
            resident=resident,
            now=self._when(options["at"], lease.property),
            idempotency_key=options["idempotency_key"],
        )
        return [_payment_row("pay", payment)]

    def do_settle(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        if options["payment"]:
            payments = [self._payment(options["payment"])]
        else:
            processing = Payment.objects.filter(state=PaymentState.PROCESSING)
            if options["batch"]:
                processing = processing.filter(batch=self._batch(options["batch"]))
            else:
                processing = processing.filter(batch__property=self._property(options["property"]))
                if options["day"]:
                    processing = processing.filter(business_day=options["day"])
            payments = list(processing.order_by("accepted_at"))
        return [_payment_row("settle", settle_payment(payment)) for payment in payments]

    def do_deposit(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        if options["batch"]:
            batches = [self._batch(options["batch"])]
        else:
            if not options["day"]:
                raise CommandError("deposit --property needs --day YYYY-MM-DD")
            batches = list(
                DepositBatch.objects.filter(
                    property=self._property(options["property"]), business_day=options["day"]
                )
                .exclude(status=BatchStatus.DEPOSITED)
                .order_by("batch_id")
            )
        return [_batch_row("deposit", deposit_batch(batch)) for batch in batches]

    def _reversal(self, action: str, reversal: Reversal) -> list[dict[str, Any]]:
        reversal = Reversal.objects.select_related("payment__batch", "batch").get(pk=reversal.pk)
        return [_reversal_row(action, reversal)]

    def do_return(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        payment = self._payment(options["payment"])
        now = self._when(options["at"], payment.batch.property)
        return self._reversal("return", return_payment(payment, options["code"], now=now))

    def do_chargeback(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        payment = self._payment(options["payment"])
        now = self._when(options["at"], payment.batch.property)
        return self._reversal("chargeback", charge_back_payment(payment, now=now))

    def do_refund(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        payment = self._payment(options["payment"])
        now = self._when(options["at"], payment.batch.property)
        return self._reversal("refund", refund_payment(payment, now=now))

    def do_void(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        payment = self._payment(options["payment"])
        now = self._when(options["at"], payment.batch.property)
        return self._reversal("void", void_payment(payment, now=now, note="voided by processor"))
