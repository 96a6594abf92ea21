"""The demo day: the whole product against the sandbox on the embedded default.

Used by ``python manage.py demo`` (``make demo``) and ``serve_demo`` (``make serve``). Every
step goes through the real path: the sandbox is its own process speaking eDex over HTTP,
payments come in through the resident API, a django-q2 cluster delivers postings, and the
integration closes, reports and reconciles.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings

DEMO_PROPERTY = "maple"
SANDBOX_USER = "edex_demo"
SANDBOX_PASSWORD = "sandbox-secret"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "demo-admin-pass"
RESIDENT_PASSWORD = "demo-resident-pass"

# (username, AMSI lease) for residents who get a portal login in the demo.
RESIDENTS = [
    ("ana", "001-01-101-1"),
    ("ben", "001-01-102-2"),
    ("chloe", "001-01-103-3"),
    ("dev", "001-01-104-4"),  # Block Payment Access in AMSI
    ("erin", "001-01-106-6"),  # No Checks in AMSI: cards only
    ("farid", "001-02-101-1"),  # the same ResiID as ana's, on another unit
    ("gia", "001-01-105-5"),
    ("hugo", "001-01-107-7"),
]


def stop_children_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the ``finally`` that stops the sandbox, the
    worker and the web server runs (they live in their own sessions and would be orphaned)."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def demo_dir() -> Path:
    return Path(settings.VAR_DIR)


def sandbox_state() -> Path:
    return demo_dir() / "sandbox.sqlite3"


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def _manage(*args: str, log: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (owned by the child)
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,
    )


def start_sandbox(port: int, *, seed: bool, variants: list[str] = ()) -> subprocess.Popen:
    args = ["amsi_sandbox", "--addr", f"127.0.0.1:{port}", "--state", str(sandbox_state())]
    if seed:
        args += ["--seed", "demo"]
    for variant in variants:
        args += ["--variant", variant]
    proc = _manage(*args, log=demo_dir() / "sandbox.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox exited (see {demo_dir() / 'sandbox.log'})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/sandbox/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("the sandbox did not answer within 30 s")


def start_worker() -> subprocess.Popen:
    return _manage("qcluster", log=demo_dir() / "worker.log")


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def look_in_sandbox(control) -> list[str]:
    """Play the person for every unconfirmed posting: look it up in the sandbox's books (what a
    manager does in eSite's Cash Batches) and say "found" with its receipt, or "not there,
    post it". ``control`` is a SandboxControl. Returns a line per posting resolved.

    A posting is looked at only once the wait for a slow write is over (the outbox refuses
    "not there, post it" before that: ``NotAllowed``); such a posting is left for next time.
    """
    from integrations import outbox
    from integrations.models import Posting, PostingKind, PostingState

    from .identifiers import client_transaction_id

    entries = [e for batch in control.ledger() for e in batch["entries"]]
    lines = []
    for posting in Posting.objects.filter(state=PostingState.UNCONFIRMED).order_by("pk"):
        original = (
            posting
            if posting.kind == PostingKind.PAYMENT
            else Posting.objects.filter(payment=posting.payment, kind=PostingKind.PAYMENT).first()
        )
        txn = client_transaction_id(original)
        reversal = posting.kind == PostingKind.REVERSAL
        found = [
            e
            for e in entries
            if e["client_transaction_id"] == txn
            and bool(e.get("original_transaction_id")) == reversal
        ]
        try:
            if found:
                outbox.mark_found(posting, receipt=found[0]["evolution_reference"], who="demo")
                lines.append(
                    f"{posting.get_kind_display().lower()} {txn}: found in eSite batch "
                    f"{found[0]['client_jnl_no']}, receipt {found[0]['evolution_reference']}"
                )
            else:
                outbox.post_unconfirmed(posting, who="demo")
                lines.append(f"{posting.get_kind_display().lower()} {txn}: not in eSite, posted")
        except outbox.NotAllowed:
            continue
    return lines
