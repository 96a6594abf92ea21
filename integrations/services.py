"""Framework services used by the admin, the commands and the tasks."""

from __future__ import annotations

import logging

from django.utils import timezone

from integrations import outbox
from integrations.exceptions import IntegrationError
from integrations.logging import mask
from integrations.models import Connection, SyncKind, SyncRun, SyncStatus

log = logging.getLogger(__name__)


def test_connection(connection: Connection):
    provider = connection.get_provider()
    try:
        check = provider.test_connection()
    except IntegrationError as err:
        from integrations.providers.base import ConnectionCheck

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


def last_delta_end(connection: Connection):
    last = (
        SyncRun.objects.filter(
            connection=connection,
            kind__in=[SyncKind.DELTA, SyncKind.FULL, SyncKind.IMPORT],
            status__in=[SyncStatus.SUCCEEDED, SyncStatus.PARTIAL],
            dry_run=False,
        )
        .order_by("-started_at")
        .first()
    )
    if last is None:
        return None
    return last.window_end or last.started_at


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
    except Exception as err:  # noqa: BLE001  (recorded on the row, then re-raised)
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
