"""Project-wide test setup.

- Postings are delivered through django-q2's sync path in tests (the task runs in-process, the
  same function a worker runs); tests that need a real cluster start one themselves.
- Outgoing network is refused except to loopback (zeep's own conftest does the same), so a test
  can never reach a real AMSI by accident.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integrations_amsi.sandbox.testing import SandboxServer

FAKE_PROVIDER = "integrations.providers.fake.FakeProvider"
REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "amsi-reference"

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in ("localhost", "::1", "0.0.0.0") or host.startswith("/")
    ):
        raise RuntimeError(f"tests may not open network connections (tried {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network():
    socket.socket.connect = _guarded_connect
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2's many rounds per login would make the suite take minutes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _integrations_settings(settings):
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "DELIVERY": "sync",
        "RETRY_BACKOFF_SECONDS": [0],
        "UNKNOWN_OUTCOME_DELAY_SECONDS": 0,
        # The fake provider is offered in tests only (and in the demo), never by default.
        "PROVIDERS": [*settings.INTEGRATIONS.get("PROVIDERS", []), FAKE_PROVIDER],
    }


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxServer]]:
    """Start in-process sandboxes on free loopback ports (``start_sandbox(name, **options)``,
    options as SandboxServer's; the state file is tmp_path/<name>.sqlite3); all are stopped
    after the test. The one way the suites start an in-process sandbox (a process of its own:
    integrations_amsi.sandbox.process)."""
    started: list[SandboxServer] = []

    def start(name: str = "state", **options) -> SandboxServer:
        server = SandboxServer(tmp_path / f"{name}.sqlite3", **options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def amsi_sandbox(start_sandbox) -> SandboxServer:
    """A fresh sandbox with the demo portfolio loaded."""
    return start_sandbox(seed="demo")


@pytest.fixture
def empty_sandbox(start_sandbox) -> SandboxServer:
    return start_sandbox()


@pytest.fixture
def amsi_world(tmp_path: Path, db):
    """A sandbox eSite on a loopback port, property "maple" connected to it and imported (24
    leases): tests/integrations_amsi/world.py's AmsiWorld, closed after the test. The modules
    that use it alias it as their ``world`` fixture."""
    from integrations_amsi.client import clear_clients
    from tests.integrations_amsi.world import AmsiWorld

    clear_clients()
    world = AmsiWorld(tmp_path)
    try:
        world.import_property()
        yield world
    finally:
        world.close()


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """``with deliver(): ...`` runs the on-commit callbacks (a posting's django-q2 task, in its
    sync mode) of a block of work."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def shared_reference() -> Path:
    if not SHARED_REFERENCE.is_dir():
        pytest.skip("../shared/amsi-reference is not present")
    return SHARED_REFERENCE
