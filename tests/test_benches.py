"""Every bench's ``--quick`` mode runs to the end and prints its table (issue 12, item 6).

Untimed: these check that the benches keep working as the code under them moves, nothing about
speed (the figures are in docs/performance.md). Each bench makes its own SQLite databases in a
temporary folder and starts its own sandbox (and, for chaos and worker, a django-q2 cluster)
as subprocesses, so they run once, in the SQLite pass of CI; the PostgreSQL pass skips them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.faults.harness import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite",
        reason="the benches make their own SQLite databases: run once, in the SQLite pass",
    ),
]

CLUSTER_DID_NOT_START = 3  # bench/worker.py's exit code when no worker ever took a task


def run_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTEGRATIONS_", "Q_", "PYTEST")) and k != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_table(done: subprocess.CompletedProcess, bench: str, first_column: str) -> None:
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert f"| bench             | {bench}" in out, out[:2000]
    for row in ("| date ", "| machine ", "| CPUs ", "| load (1/5/15 min) "):
        assert row in out, out[:2000]
    assert first_column in out, out[-3000:]
    assert "load at the end" in out


def test_import_quick():
    done = run_bench("bench/import.py", "--quick")
    assert_table(done, "bench/import.py", "leases")
    assert "| 200 " in done.stdout


def test_posting_quick():
    done = run_bench("bench/posting.py", "--quick")
    assert_table(done, "bench/posting.py", "db")
    for path in ("bare", "in-process", "task", "bare + two commits", "bare in a sync task"):
        assert f"| sqlite | {path} " in done.stdout, done.stdout[-3000:]
    # The task path's own floor runs through django-q2 and touches no database.
    sync_floor = next(line for line in done.stdout.splitlines() if "| bare in a sync task " in line)
    assert sync_floor.rstrip(" |").endswith("| 0 / 0 / 0"), sync_floor
    over = r"sqlite: task over its own floor \(the bare call in a sync task\): [+-][0-9.]+ / "
    assert re.search(over + r"[+-][0-9.]+ ms", done.stdout), done.stdout[-3000:]
    # The floor is two commits; the platform's path three (payment, claim, finish).
    floor = next(line for line in done.stdout.splitlines() if "| bare + two commits " in line)
    path = next(line for line in done.stdout.splitlines() if "| sqlite | in-process " in line)
    assert floor.rstrip(" |").endswith("/ 2 / 0"), floor
    assert path.rstrip(" |").endswith("/ 3 / 0"), path


def test_counting_commits():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from posting import _commits
    finally:
        sys.path.remove(str(REPO / "bench"))
    autocommit_claim = ["SELECT 1", "WITH c AS (UPDATE ...) INSERT ...", "SELECT 2"]
    assert _commits(autocommit_claim) == 1
    finish = ["BEGIN", "WITH u AS (UPDATE ...) UPDATE ...", "INSERT ...", "COMMIT"]
    assert _commits(finish) == 1
    assert _commits(["BEGIN", "INSERT ...", "ROLLBACK", "SELECT 1"]) == 0


def test_chaos_quick():
    done = run_bench("bench/chaos.py", "--quick", timeout=240)
    assert_table(done, "bench/chaos.py", "eSite batch")
    summary = [line for line in done.stdout.splitlines() if line.startswith("FAULTS chaos")]
    assert summary and summary[0].endswith("| OK"), done.stdout[-3000:]


def test_worker_quick():
    done = run_bench("bench/worker.py", "--quick", timeout=240)
    if done.returncode == CLUSTER_DID_NOT_START:
        pytest.skip(f"a django-q2 cluster could not start here: {done.stdout[-800:]}")
    assert_table(done, "bench/worker.py", "db / broker")
    assert "| sqlite / orm " in done.stdout, done.stdout[-3000:]


def test_settle_quick():
    done = run_bench("bench/settle.py", "--quick")
    assert_table(done, "bench/settle.py", "concurrency")
    for level in ("1", "4"):
        assert f"| sqlite | {level} " in done.stdout, done.stdout[-3000:]
    assert "12 settled, 12 calls, 0 wrong" in done.stdout, done.stdout[-3000:]
