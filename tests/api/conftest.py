"""Fixtures for the API suite: one property connected to the fake provider, a resident with a
lease and a processing payment, another resident's lease, and a staff user who may do
everything the API offers staff; clients that sign in with HTTP Basic, as a platform's client
would.

``wsgi_app`` is the project's real WSGI application for tools that speak WSGI (schemathesis).
Django closes the database connection at the end of each request when it is inside a
transaction, which would end the test's own transaction; the test client avoids that by
detaching ``close_old_connections`` from the request signals, and so does this fixture.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client

from integrations.models import Connection
from rentplatform.models import Lease, Payment, Resident
from rentplatform.services import accept_payment
from tests.factories import PASSWORD, lease_with_resident, staff_user

STAFF_PERMISSIONS = (
    "rentplatform.void_payment",
    "integrations.view_posting",
    "integrations.view_syncrun",
    "integrations.run_sync",
    "integrations.run_import",
)


def basic_auth(username: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class ApiWorld:
    lease: Lease
    resident: Resident
    payment: Payment
    other_lease: Lease
    other_payment: Payment
    staff: Any

    @property
    def resident_auth(self) -> str:
        return basic_auth(self.resident.user.username)

    @property
    def staff_auth(self) -> str:
        return basic_auth(self.staff.username)

    def client(self, authorization: str | None) -> Client:
        return Client(HTTP_AUTHORIZATION=authorization) if authorization else Client()


@pytest.fixture
def api_world(db) -> ApiWorld:
    lease, resident = lease_with_resident()
    Connection.objects.create(property=lease.property, provider="fake")
    other_lease, other_resident = lease_with_resident()
    return ApiWorld(
        lease=lease,
        resident=resident,
        payment=accept_payment(lease, "40.00", "card", resident=resident),
        other_lease=other_lease,
        other_payment=accept_payment(other_lease, "55.00", "ach", resident=other_resident),
        staff=staff_user(*STAFF_PERMISSIONS),
    )


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
