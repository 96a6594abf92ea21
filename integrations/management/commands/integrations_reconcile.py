"""Compare our deposit batches with the accounting system's, and list every difference.

Examples::

    python manage.py integrations_reconcile                          # every property, this month
    python manage.py integrations_reconcile --property maple --month 2026-11
    python manage.py integrations_reconcile --property maple --report export.csv

``--report`` takes the accounting system's deposit export a manager downloaded (which one is
the provider's to say: docs/amsi.md for eSite); without it the provider fetches what it can
(the AMSI sandbox serves that report itself). Differences name the remote by the provider's
``system_name`` and are said in words (integrations.reconciliation_words); every run is
recorded (the admin's Reconciliation runs, and the dashboard's last one).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from integrations.models import Connection
from integrations.reconciliation import parse_month, reconcile
from integrations.reconciliation_words import sentences, sides


class Command(BaseCommand):
    help = "Reconcile our deposit batches with the accounting system for a month."

    def add_arguments(self, parser):
        parser.add_argument("--property", help="property code (default: every enabled one)")
        parser.add_argument("--month", help="YYYY-MM (default: this month)")
        parser.add_argument(
            "--report", help="the accounting system's deposit export (CSV) to compare with"
        )

    def handle(self, *args, **options):
        try:
            # No --month: each property's own this month (its day, in its time zone).
            month = parse_month(options["month"]) if options["month"] else None
        except ValueError as err:
            raise CommandError(str(err)) from None
        connections = Connection.objects.filter(enabled=True).select_related("property")
        if options["property"]:
            connections = connections.filter(property__code=options["property"])
            if not connections.exists():
                raise CommandError(f"no enabled connection for property {options['property']!r}")
        report_text = None
        if options["report"]:
            path = Path(options["report"])
            if not path.is_file():
                raise CommandError(f"{path} is not a file")
            report_text = path.read_text(encoding="utf-8-sig", errors="replace")
        bad = 0
        source = f"export {Path(options['report']).name}" if report_text is not None else ""
        for connection in connections:
            result = reconcile(
                connection,
                month or parse_month(None, connection.property.local_day()),
                report_text,
                ran_by="integrations_reconcile",
                source=source,
            )
            style = self.style.SUCCESS if result.ok else self.style.ERROR
            self.stdout.write(style(result.summary()))
            system = result.system_name
            for d, sentence in sentences(result):
                ours, theirs = sides(d)
                self.stdout.write(
                    f"  {sentence}"
                    + (f" (ours {ours or '-'}, {system} {theirs or '-'})" if ours or theirs else "")
                )
            bad += not result.ok
        if bad:
            raise CommandError(f"{bad} propert{'y' if bad == 1 else 'ies'} did not reconcile")
