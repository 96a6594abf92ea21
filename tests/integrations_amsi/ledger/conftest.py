from __future__ import annotations

import pytest

from tests.integrations_amsi.world import AmsiWorld


@pytest.fixture
def world(tmp_path, db, django_capture_on_commit_callbacks):
    w = AmsiWorld(tmp_path)
    w.import_property()
    yield w
    w.close()


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (the django-q2 task, in its sync mode) of a block of work."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
