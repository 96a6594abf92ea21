"""Resync properties (or one lease) from their accounting systems now.

Examples::

    python manage.py integrations_sync                      # delta sync, every property
    python manage.py integrations_sync --property maple     # delta sync, one property
    python manage.py integrations_sync --property maple --full
    python manage.py integrations_sync --lease 42           # one lease, at once
    python manage.py integrations_sync --full --dry-run     # say what would change
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integrations.models import Connection, SyncKind, SyncStatus
from integrations.services import run_sync


class Command(BaseCommand):
    help = "Resync properties or a lease from the accounting system now."

    def add_arguments(self, parser):
        parser.add_argument("--property", help="property code (default: every enabled one)")
        parser.add_argument("--lease", type=int, help="platform lease id: sync just this lease")
        parser.add_argument("--full", action="store_true", help="full resync instead of delta")
        parser.add_argument("--dry-run", action="store_true", help="write nothing; show changes")

    def handle(self, *args, **options):
        from rentplatform.models import Lease

        connections = Connection.objects.filter(enabled=True).select_related("property")
        kind = SyncKind.FULL if options["full"] else SyncKind.DELTA
        lease_id = options["lease"]
        if lease_id is not None:
            lease = (
                Lease.objects.select_related("unit__building__property").filter(pk=lease_id).first()
            )
            if lease is None:
                raise CommandError(f"lease {lease_id} does not exist")
            connections = connections.filter(property=lease.property)
            kind = SyncKind.LEASE
        if options["property"]:
            connections = connections.filter(property__code=options["property"])
            if not connections.exists():
                raise CommandError(
                    f"no enabled accounting connection for property {options['property']!r}"
                )
        failed = 0
        for connection in connections:
            run = run_sync(
                connection,
                kind,
                lease_id=lease_id,
                dry_run=options["dry_run"],
                triggered_by="integrations_sync command",
                progress=lambda text: self.stdout.write(f"  {text}"),
            )
            ok = run.status == SyncStatus.SUCCEEDED
            style = self.style.SUCCESS if ok else self.style.ERROR
            self.stdout.write(style(f"{connection.property.code}: {run.summary()}"))
            for change in run.changes[:50] if options["dry_run"] else []:
                self.stdout.write(f"  would change {change['record']}: {change['change']}")
            for error in run.error_list[:20]:
                self.stdout.write(self.style.WARNING(f"  {error['record']}: {error['message']}"))
            failed += not ok
        if failed:
            raise CommandError(f"{failed} sync(s) failed or had record errors; see above")
