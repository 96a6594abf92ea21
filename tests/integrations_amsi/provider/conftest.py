"""Fixtures for the provider's acceptance tests: a sandbox over loopback HTTP plus an AMSI
connection to it, and helpers to seed the sandbox through its control API."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from integrations.models import Connection
from integrations_amsi.client import clear_clients
from integrations_amsi.sandbox.seed import generate_portfolio
from integrations_amsi.sandbox.testing import SandboxControl, SandboxServer
from rentplatform.models import Property

PASSWORD = "sandbox-secret"


def connect(
    server_url: str, *, code: str = "maple", property_id: str = "001", **settings: object
) -> Connection:
    prop, _ = Property.objects.get_or_create(
        code=code,
        defaults={
            "name": "Maple Court",
            "time_zone": "America/Los_Angeles",
            "manager_emails": "manager@example.test",
        },
    )
    return Connection.objects.create(
        property=prop,
        provider="amsi",
        settings={
            "url": server_url + "/edexweb/esite",
            "portfolio": "DEMO",
            "user_id": "edex_demo",
            "property_id": property_id,
            "merchant_id": "1001",
            "timeout": 5,
            **settings,
        },
        credentials={"password": PASSWORD},
    )


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    clear_clients()
    yield
    clear_clients()


@pytest.fixture
def control(amsi_sandbox: SandboxServer) -> Iterator[SandboxControl]:
    ctl = amsi_sandbox.control()
    yield ctl
    ctl.close()


@pytest.fixture
def amsi_connection(amsi_sandbox: SandboxServer, db) -> Connection:
    """Property "maple" connected to the demo sandbox (property 001, 24 leases)."""
    return connect(amsi_sandbox.base_url)


@pytest.fixture
def generated_sandbox(start_sandbox) -> tuple[SandboxServer, bytes, bytes]:
    """An empty sandbox loaded with a generated 60-lease property 001 through the control API."""
    units, residents = generate_portfolio(1, 60, seed=7)["001"]
    server = start_sandbox("gen")
    ctl = server.control()
    ctl.put_property("001", "Generated", "1001")
    ctl.load_units("001", units)
    ctl.load_residents("001", residents)
    ctl.close()
    return server, units, residents


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
