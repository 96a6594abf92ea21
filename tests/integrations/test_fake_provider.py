from __future__ import annotations

import pytest

from integrations.models import (
    Connection,
    FakeLeaseLink,
    FakeRemoteEntry,
    SyncKind,
    SyncStatus,
)
from integrations.services import run_sync
from tests.factories import lease_with_resident

from .contract import ProviderContract


class TestFakeProviderContract(ProviderContract):
    provider_id = "fake"

    @pytest.fixture
    def lease(self):
        lease, _ = lease_with_resident()
        return lease

    @pytest.fixture
    def connection(self, lease):
        return Connection.objects.create(property=lease.property, provider="fake")

    def remote_entries(self, connection, posting):
        return FakeRemoteEntry.objects.filter(connection=connection, key=posting.key).count()

    def imported(self, connection):
        connection.settings["leases"] = [
            {"id": "L1", "unit": "A-101", "balance": "0.00", "people": [["Ada", "Lovelace"]]},
            {"id": "L2", "unit": "A-102", "balance": "10.00", "people": [["Alan", "Turing"]]},
        ]
        connection.save()
        run = run_sync(connection, SyncKind.IMPORT)
        assert (run.status, run.created) == (SyncStatus.SUCCEEDED, 2), run.message
        return list(FakeLeaseLink.objects.filter(connection=connection).order_by("remote_id"))

    def _edit(self, connection, link, **changes):
        connection.refresh_from_db()
        for lease in connection.settings["leases"]:
            if lease["id"] == link.remote_id:
                lease.update(changes)
        connection.save()

    def set_remote_balance(self, connection, link, amount):
        self._edit(connection, link, balance=str(amount))

    def block_remote_lease(self, connection, link):
        self._edit(connection, link, blocked=True)

    def end_remote_lease(self, connection, link):
        connection.refresh_from_db()
        connection.settings["leases"] = [
            lease for lease in connection.settings["leases"] if lease["id"] != link.remote_id
        ]
        connection.save()

    def remote_batch_closed(self, connection, batch_id):
        connection.refresh_from_db()
        return batch_id in (connection.setting("closed_batches") or {})

    def lose_next_reply(self, connection):
        connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
        connection.save()

    def drop_remote_entry(self, connection, posting):
        FakeRemoteEntry.objects.filter(connection=connection, key=posting.key).delete()
