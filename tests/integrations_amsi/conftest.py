"""Fixtures that start the AMSI eDex sandbox over real loopback HTTP (no Django database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep
from zeep.transports import Transport

from integrations_amsi.sandbox.testing import SandboxControl, SandboxServer
from tests.integrations_amsi.sandbox.edex import Edex

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "amsi-reference"


@pytest.fixture
def amsi_reference() -> Path:
    """The captured eSite material in ../shared (never copied into the project)."""
    path = REFERENCE.resolve()
    if not (path / "leasing.wsdl").exists():
        pytest.skip("../shared/amsi-reference is absent")
    return path


@pytest.fixture
def sandbox_control(amsi_sandbox: SandboxServer) -> Iterator[SandboxControl]:
    control = amsi_sandbox.control()
    yield control
    control.close()


def _client(url: str, timeout: float = 5) -> zeep.Client:
    return zeep.Client(url, transport=Transport(timeout=timeout, operation_timeout=timeout))


@pytest.fixture
def leasing_client(amsi_sandbox: SandboxServer) -> zeep.Client:
    return _client(amsi_sandbox.leasing_wsdl_url)


@pytest.fixture
def ledger_client(amsi_sandbox: SandboxServer) -> zeep.Client:
    return _client(amsi_sandbox.ledger_wsdl_url)


@pytest.fixture
def edex(amsi_sandbox: SandboxServer, leasing_client: zeep.Client, ledger_client: zeep.Client):
    return Edex(amsi_sandbox, leasing_client, ledger_client)
