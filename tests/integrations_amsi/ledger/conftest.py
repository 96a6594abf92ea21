from __future__ import annotations

import pytest


@pytest.fixture
def world(amsi_world, django_capture_on_commit_callbacks):
    return amsi_world
