"""Import a property's units, residents and leases from AMSI; run again, it is a full resync.

Examples::

    python manage.py amsi_import maple --dry-run   # what would change; writes nothing
    python manage.py amsi_import maple             # the import; run again: a full resync

The first run that writes is the initial import; every later one is recorded and shown as a
full resync (the same reads and the same rules: an unchanged property writes nothing).

Records AMSI sends that cannot be imported are listed with their eSite ids and skipped; the
command then exits non-zero so a script notices. A failed run (AMSI unreachable, login refused,
a malformed reply) imports nothing at all: the whole run is one transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.models import Connection, SyncKind, SyncStatus
from integrations.services import run_sync
from integrations_amsi.provider import AmsiProvider

SHOW_CHANGES = 200
SHOW_ERRORS = 100


class Command(BaseCommand):
    help = (
        "Import a property's residents and leases from AMSI (the initial import); once "
        "imported, a full resync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("property_code", help="the platform's property code")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would change; write nothing"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        code = opts["property_code"]
        connection = (
            Connection.objects.select_related("property")
            .filter(property__code=code, provider=AmsiProvider.id)
            .first()
        )
        if connection is None:
            raise CommandError(
                f"property {code!r} has no AMSI connection; create it with amsi_connect"
            )
        if not connection.enabled:
            self.stdout.write(self.style.WARNING(f"The connection of {code} is disabled."))
        dry_run = opts["dry_run"]
        imported = connection.sync_runs.filter(
            kind__in=[SyncKind.IMPORT, SyncKind.FULL],
            status__in=[SyncStatus.SUCCEEDED, SyncStatus.PARTIAL],
            dry_run=False,
        ).exists()
        kind = SyncKind.FULL if imported else SyncKind.IMPORT
        verb = "Resyncing (full resync)" if imported else "Importing"
        self.stdout.write(f"{verb} {connection.property}{' (dry run)' if dry_run else ''}…")
        run = run_sync(
            connection,
            kind,
            dry_run=dry_run,
            triggered_by="amsi_import command",
            progress=lambda text: self.stdout.write(f"  {text}"),
        )
        if dry_run:
            for change in run.changes[:SHOW_CHANGES]:
                self.stdout.write(f"  would change {change['record']}: {change['change']}")
            if len(run.changes) > SHOW_CHANGES or run.total_changes > len(run.changes):
                self.stdout.write(f"  … {run.total_changes} change(s) in all")
        for error in run.error_list[:SHOW_ERRORS]:
            self.stdout.write(
                self.style.WARNING(f"  skipped {error['record']}: {error['message']}")
            )
        if run.errors > SHOW_ERRORS:
            self.stdout.write(self.style.WARNING(f"  … {run.errors} record error(s) in all"))
        if run.status == SyncStatus.FAILED:
            what = "resync" if imported else "import"
            raise CommandError(
                f"{what} of {code} failed, nothing was changed (sync run {run.pk}): {run.message}"
            )
        summary = f"{code}: {run.summary()} (sync run {run.pk})"
        if run.errors:
            self.stdout.write(self.style.WARNING(summary))
            raise CommandError(
                f"{run.errors} record(s) of {code} could not be "
                f"{'resynced' if imported else 'imported'}; see above"
            )
        self.stdout.write(self.style.SUCCESS(summary))
