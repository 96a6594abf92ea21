"""Fixtures for the security suite: an imported AMSI property on a loopback sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations_amsi.client import clear_clients
from tests.integrations_amsi.world import AmsiWorld

PASSWORD = "sandbox-secret"  # the world's connection password (the sandbox's default)


@pytest.fixture
def world(tmp_path, db) -> Iterator[AmsiWorld]:
    """A sandbox eSite, property "maple" connected to it and imported (24 leases)."""
    clear_clients()
    w = AmsiWorld(tmp_path)
    w.import_property()
    yield w
    w.close()


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks (the django-q2 task, sync mode) of a block of work."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
