"""The fault suite's database and processes.

Worker processes (django-q2 clusters) and the sandbox are real subprocesses, so the test database
must be one they can open, and what a test writes must be committed:

- SQLite: pytest-django's test database is in memory unless TEST NAME is set. The settings module
  has already been read when this file is imported (TEST_SQLITE_NAME is too late), so TEST NAME
  is set here, before the test database is created: a file in a temporary folder. (When this
  folder is collected, the whole session's SQLite test database is that file.)
- PostgreSQL: the test database ``test_<name>`` is a real database; the workers get its URL.
- Every test is ``django_db(transaction=True)``: its writes are committed, and the database is
  flushed after it, once the test's processes are stopped (the fixtures below stop them first).

The sandbox refuses a repeated ClientTransactionID unless a test parametrizes ``duplicates``
(``@pytest.mark.parametrize("duplicates", BOTH_DUPLICATES)``): under ``accept`` the platform
does not check unknown outcomes unattended and the harness plays the person
(tests/faults/harness.py).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from integrations_amsi.client import clear_clients
from tests.faults.harness import Cluster, Platform, SandboxProcess, database_url

_default = settings.DATABASES["default"]
_SQLITE = ("django.db.backends.sqlite3", "rentplatform.sqlite")
if _default["ENGINE"] in _SQLITE and not (_default.get("TEST") or {}).get("NAME"):
    _dir = tempfile.mkdtemp(prefix="faults-db-")
    atexit.register(shutil.rmtree, _dir, ignore_errors=True)
    _default.setdefault("TEST", {})["NAME"] = str(Path(_dir) / "test.sqlite3")


@pytest.fixture
def async_delivery(settings):
    """The code under test enqueues real django-q2 tasks (tests/conftest.py forces sync)."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async"}


@pytest.fixture
def run_env(transactional_db, async_delivery, tmp_path):
    """(workdir, database URL) for the subprocesses of one test."""
    return tmp_path, database_url()


@pytest.fixture
def duplicates() -> str:
    """The sandbox's ``duplicates`` variant (tests parametrize it to run under both)."""
    return "refuse"


@pytest.fixture
def sandbox(run_env, duplicates):
    workdir, url = run_env
    proc = SandboxProcess(workdir, url, variants={"duplicates": duplicates}).start()
    yield proc
    proc.kill()


@pytest.fixture
def clusters(run_env):
    """Start clusters with ``clusters.start(name)``; all are stopped after the test."""
    workdir, url = run_env

    class Clusters(list):
        def start(self, name: str = "a", workers: int = 4) -> Cluster:
            cluster = Cluster(workdir, url, name=name, workers=workers).start()
            self.append(cluster)
            return cluster

    started = Clusters()
    yield started
    for cluster in started:
        cluster.stop()


@pytest.fixture
def platform(sandbox, clusters):
    p = Platform(sandbox)
    p.import_property()
    yield p
    clear_clients()
