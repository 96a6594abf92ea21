from __future__ import annotations

import pytest

from integrations.models import Connection, FakeRemoteEntry
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

    def lose_next_reply(self, connection):
        connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
        connection.save()
