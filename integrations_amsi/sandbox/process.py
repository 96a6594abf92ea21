"""The sandbox as a process of its own, started and answering: the one start-and-wait helper the
demo, the fault suite, the benches and the tests use (in-process tests use SandboxServer).

``start_process`` runs ``python -m integrations_amsi.sandbox`` (no Django) in a new session,
so ``stop_group`` can stop it and anything it started by its process group id, and returns once
``/sandbox/health`` answers. A sandbox that exits or does not answer in time is stopped and
reported with the tail of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from .cli import HEALTH_PATH, TOKEN_ENV
from .server import CONTROL_TOKEN_HEADER

REPO = Path(__file__).resolve().parents[2]


class SandboxDidNotStart(RuntimeError):
    pass


@dataclass
class StartedSandbox:
    proc: subprocess.Popen
    port: int
    log: Path | None
    control_token: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # also for one listening on every address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(log: Path | None, n: int = 2000) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return log.read_text(errors="replace")[-n:]


def start_process(
    state: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: str | Path | None = None,
    variants: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    log: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    control_token: str = "",
    timeout: float = 30.0,
) -> StartedSandbox:
    """Start the sandbox on ``host``:``port`` (0: a free one) and wait until it answers.

    ``log``: where its output goes (appended; None: discarded). ``env``: its environment (by
    default this process's). ``control_token``: passed in the environment (never in the process
    list) and sent with the health check. ``args``: more command-line options (see cli.py)."""
    port = port or free_port()
    command = [sys.executable, "-m", "integrations_amsi.sandbox"]
    command += ["--addr", f"{host}:{port}", "--state", str(state)]
    if seed:
        command += ["--seed", str(seed)]
    for name, value in sorted((variants or {}).items()):
        command += ["--variant", f"{name}={value}"]
    command += list(args)
    log_path = Path(log) if log else None
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # the child writes to it
    try:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={
                **(env if env is not None else os.environ),
                "PYTHONUNBUFFERED": "1",
                **({TOKEN_ENV: control_token} if control_token else {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()
    started = StartedSandbox(proc, port, log_path, control_token)
    wait_until_serving(started, timeout=timeout)
    return started


def wait_until_serving(started: StartedSandbox, *, timeout: float = 30.0) -> None:
    headers = {CONTROL_TOKEN_HEADER: started.control_token} if started.control_token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.proc.poll() is not None:
            raise SandboxDidNotStart(f"the sandbox exited: {_tail(started.log)}")
        try:
            reply = httpx.get(started.base_url + HEALTH_PATH, headers=headers, timeout=1)
        except httpx.HTTPError:
            reply = None
        if reply is not None and reply.status_code == 200:
            return
        time.sleep(0.05)
    stop_group(started.proc)
    raise SandboxDidNotStart(
        f"the sandbox did not answer within {timeout:g} s: {_tail(started.log)}"
    )


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 15) -> None:
    """Stop a process started in its own session, and its children, by process group id;
    SIGKILL when it has not stopped after ``wait`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)
