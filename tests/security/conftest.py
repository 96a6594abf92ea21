"""Fixtures for the security suite: an imported AMSI property on a loopback sandbox."""

from __future__ import annotations

import pytest

PASSWORD = "sandbox-secret"  # the world's connection password (the sandbox's default)


@pytest.fixture
def world(amsi_world):
    return amsi_world
