"""The short soak run (bench/chaos.py --short) on the database CI is testing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.faults.harness import REPO

pytestmark = pytest.mark.slow


def test_chaos_short_run_has_no_differences(capsys):
    args = [sys.executable, "bench/chaos.py", "--short"]
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # A fresh database on the same server (chaos.py creates and drops it).
        args += ["--database-url", os.environ["DATABASE_URL"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATIONS_", "Q_"))}
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    summary = [line for line in done.stdout.splitlines() if line.startswith("FAULTS chaos")]
    with capsys.disabled():
        print()
        print(summary[0] if summary else done.stdout[-3000:] + done.stderr[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary and summary[0].endswith("| OK")
