"""Fixtures the framework's tests share: a lease with its resident, and a connection of its
property to the fake provider (integrations.providers.fake)."""

from __future__ import annotations

import pytest

from integrations.models import Connection
from tests.factories import lease_with_resident


@pytest.fixture
def lease(db):
    lease, _ = lease_with_resident()
    return lease


@pytest.fixture
def connection(lease):
    return Connection.objects.create(property=lease.property, provider="fake")
