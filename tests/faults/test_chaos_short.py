"""Soak runs of bench/chaos.py on the database CI is testing: the short one, under both answers
an eSite may give to a repeated ClientTransactionID (refused: the platform checks unknown
outcomes unattended; booked again: unknown outcomes wait "unconfirmed" and the script plays the
person who looks in the ledger), and issue 5's acceptance run (200 payments and 20 reversals
with the sandbox's faults on, ending with exactly 200 payments and 20 reversals in the sandbox
ledger)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.faults.harness import REPO

pytestmark = pytest.mark.slow

SHORT = "payments=60 reversals=8 | sandbox: payments=60 reversals=8"


@pytest.mark.parametrize(
    "run, counts, expect, mode",
    [
        pytest.param("short", ["--short"], SHORT, "duplicates=refuse automatic", id="short"),
        pytest.param(
            "short-accept",
            ["--short", "--variant", "duplicates=accept"],
            SHORT,
            "duplicates=accept person",
            id="short-accept",
        ),
        pytest.param(
            "acceptance",
            ["--payments", "200", "--reversals", "20", "--fault-rate", "0.2"],
            "payments=200 reversals=20 | sandbox: payments=200 reversals=20",
            "duplicates=refuse automatic",
            id="acceptance",
        ),
    ],
)
def test_chaos_run_has_no_differences(capsys, run, counts, expect, mode):
    args = [sys.executable, "bench/chaos.py", *counts]
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # A fresh database on the same server (chaos.py creates and drops it).
        args += ["--database-url", os.environ["DATABASE_URL"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATIONS_", "Q_"))}
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=480, check=False
    )
    summary = [line for line in done.stdout.splitlines() if line.startswith("FAULTS chaos")]
    with capsys.disabled():
        print()
        print(f"[{run}] " + (summary[0] if summary else done.stdout[-3000:] + done.stderr[-3000:]))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary and summary[0].endswith("| OK")
    assert f" {mode}] " in summary[0]
    assert expect in summary[0]
    assert "duplicates=0 lost=0" in summary[0]
