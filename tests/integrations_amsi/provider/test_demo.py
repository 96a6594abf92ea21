"""The demo's promises (issue 13 items 5 and 6), end to end in processes of their own: the demo
day runs, its reports are emailed into the folder it prints (which exists), its logins are
named after the AMSI residents, and every command its "where to look" prints runs as printed
on the demo's state (those that call eSite with the sandbox started as printed)."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from integrations_amsi.sandbox.process import stop_group
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite",
        reason="the demo makes its own SQLite database: run once, in the SQLite pass",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sandbox started as printed exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def run(argv: list[str], env: dict[str, str], timeout: float = 240):
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def printed_commands(text: str) -> list[str]:
    """The manage.py command lines printed (what follows ``<python> manage.py``)."""
    return re.findall(r"\S*python\S* manage\.py (.+)$", text, flags=re.MULTILINE)


def test_the_demo_keeps_its_promises(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "EMAIL_BACKEND")}
    env["RENTPLATFORM_VAR_DIR"] = str(tmp_path)
    port = free_port()
    done = run([sys.executable, "manage.py", "demo", "--port", str(port)], env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout

    mail = tmp_path / "mail"
    emailed = next((line for line in out.splitlines() if "emailed" in line), "(no such line)")
    assert "4 of 4 reports" in emailed and f"5 message files in {mail}/" in emailed, emailed
    assert "(with the mail about the unconfirmed posting)" in emailed
    messages = [m.read_text() for m in sorted(mail.glob("*.log"))]
    assert len(messages) == 5
    assert sum("Batch Deposit Report" in m for m in messages) == 4
    (told,) = [m for m in messages if "1 posting to eSite waits for a person" in m]
    assert "unconfirmed: check the accounting system" in told and "Ledger > Cash Batches" in told

    logins = [line.split() for line in out.splitlines() if ", AMSI lease 001-" in line]
    assert len(logins) == 8
    for login, first, last, *_ in logins:
        assert login == f"{first.lower()}.{last.rstrip(',').lower()}"

    commands = printed_commands(out[out.index("Where to look") :])
    sandbox_line = next(c for c in commands if c.startswith("amsi_sandbox"))
    others = [c for c in commands if c is not sandbox_line]
    assert {c.split()[0] for c in others} == {
        "integrations_reconcile",
        "amsi_probe",
        "integrations_sync",
    }
    # Before the sandbox runs, a command that calls it says so in words, without a traceback.
    reconcile = next(c for c in others if c.startswith("integrations_reconcile"))
    ran = run([sys.executable, "manage.py", *shlex.split(reconcile)], env, timeout=120)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    refused = "connection refused; upload the External Deposits report as a CSV file instead"
    assert refused in ran.stdout
    sandbox = subprocess.Popen(
        [sys.executable, "manage.py", *shlex.split(sandbox_line)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, sandbox)
        for command in others:
            ran = run([sys.executable, "manage.py", *shlex.split(command)], env, timeout=120)
            assert ran.returncode == 0, (command, ran.stdout[-2000:], ran.stderr[-2000:])
            assert "Traceback" not in ran.stderr
    finally:
        stop_group(sandbox, wait=20)
