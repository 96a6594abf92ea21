"""Two imports of one connection at once (the schedule's resync and a person's "import"):
they run one after the other, and the second finds the first's links (PostgreSQL; SQLite runs
one write transaction at a time anyway)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection as db
from django.db import connections

from integrations.models import Connection, FakeLeaseLink, SyncKind, SyncStatus
from integrations.services import run_sync


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_connection_run_one_after_the_other(connection):
    if db.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite runs one write transaction at a time")
    connection.settings["leases"] = [
        {"id": f"L{i}", "unit": f"A-{100 + i}", "balance": "0.00", "people": [["Ada", f"L{i}"]]}
        for i in range(300)
    ]
    connection.save()
    runs, errors = [], []
    start = threading.Barrier(2)

    def import_it() -> None:
        try:
            start.wait()
            runs.append(run_sync(Connection.objects.get(pk=connection.pk), SyncKind.IMPORT))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=import_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert [run.status for run in runs] == [SyncStatus.SUCCEEDED] * 2, [r.message for r in runs]
    assert sorted((run.created, run.unchanged) for run in runs) == [(0, 300), (300, 0)]
    assert FakeLeaseLink.objects.filter(connection=connection).count() == 300
