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

import django
from django.conf import settings
from django.utils.text import slugify

from integrations import outbox
from integrations.models import Posting, PostingKind, PostingState
from rentplatform.mail_settings import mail_settings
from rentplatform.models import Resident

from .sandbox.process import start_process, stop_group

DEMO_PROPERTY = "maple"
SANDBOX_USER = "edex_demo"
SANDBOX_PASSWORD = "sandbox-secret"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "demo-admin-pass"
RESIDENT_PASSWORD = "demo-resident-pass"

# The reports are emailed to files, one per message, in demo_dir()/mail (the demo prints it).
MAIL_BACKEND = "rentplatform.mail.FileEmailBackend"  # one file per message set, never shared

# (handle, AMSI lease) for residents who get a portal login in the demo. The handle is the
# demo's own name for the role a lease plays in the story; the login is named after the
# resident AMSI has on that lease (login_name), and the demo prints who is who.
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


def mail_dir() -> Path:
    return demo_dir() / "mail"


def demo_env() -> dict[str, str]:
    """The environment of the demo's own processes (the worker sends the reports)."""
    return {"EMAIL_BACKEND": MAIL_BACKEND, "EMAIL_FILE_PATH": str(mail_dir())}


def demo_mail_settings() -> dict:
    """The same, as the settings of this process (``override_settings``): the EMAIL_* settings
    or, on Django 6.1 and later, MAILERS (rentplatform/mail_settings.py)."""
    return mail_settings(demo_env(), settings.VAR_DIR, django.VERSION)


def shown(path: Path) -> str:
    """A path as typed from the checkout (where make runs): relative when it is inside it."""
    try:
        return str(Path(path).relative_to(settings.BASE_DIR))
    except ValueError:
        return str(path)


def manage_command() -> str:
    """How to run manage.py from the checkout, as a person would type it."""
    venv_python = Path(settings.BASE_DIR) / ".venv" / "bin" / "python"
    if venv_python.exists() and venv_python.resolve() == Path(sys.executable).resolve():
        return ".venv/bin/python manage.py"
    return f"{sys.executable} manage.py"


def login_name(resident: Resident) -> str:
    """A portal login named after the AMSI resident: "diego.nguyen"."""
    name = ".".join(
        part for part in (slugify(resident.first_name), slugify(resident.last_name)) if part
    )
    return name or f"resident{resident.pk}"


def portal_logins() -> list[tuple[str, str, str]]:
    """(login, the resident's name, their unit) for every resident with a portal login."""
    rows = []
    for resident in Resident.objects.filter(user__isnull=False).select_related("user"):
        member = resident.memberships.select_related("lease__unit").first()
        unit = str(member.lease.unit) if member else ""
        full = f"{resident.first_name} {resident.last_name}".strip()
        rows.append((resident.user.get_username(), full, unit))
    return sorted(rows)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def _manage(*args: str, log: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # owned by the child
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, **demo_env(), **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,
    )


def start_sandbox(port: int, *, seed: bool, variants: list[str] = ()) -> subprocess.Popen:
    """The demo's sandbox, answering (``variants``: NAME=VALUE strings, as on its command line)."""
    return start_process(
        sandbox_state(),
        port=port,
        seed="demo" if seed else None,
        args=[arg for variant in variants for arg in ("--variant", variant)],
        log=demo_dir() / "sandbox.log",
    ).proc


def start_worker() -> subprocess.Popen:
    return _manage("qcluster", log=demo_dir() / "worker.log")


def stop(*procs: subprocess.Popen | None, timeout: float = 20) -> None:
    """Stop the processes side by side: each one's main process is asked to stop (SIGTERM)
    first, then all are waited for within one deadline, so stopping takes as long as the
    slowest, not the sum. The main process only: django-q2's cluster stops its own workers
    (in 0.5 s here); a SIGTERM to its whole group killed the workers under it and left it
    waiting 20 s for them. Whatever is left of a group at the deadline, or after its main
    process ended, is killed (each runs in its own session and would be orphaned)."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            stop_group(proc, signal.SIGKILL)
        else:
            _kill_group(proc.pid)  # anything its main process left behind


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def look_in_sandbox(sandbox, postings=None, *, who: str = "demo") -> list[tuple[str, str]]:
    """Play the person for unconfirmed postings: look each up in the sandbox's books (what a
    manager does in eSite's Cash Batches) and say "found" with its receipt, or "not there,
    post it". ``sandbox`` is anything with ``ledger()`` (SandboxControl, the fault suite's
    SandboxProcess); ``postings`` defaults to every unconfirmed posting. The ledger is read
    after the postings were picked, so it shows all that will land for them. Returns
    ``(posting key, what the person did)`` for each posting resolved.

    The outbox refuses "not there, post it" while a slow write could still land
    (``NotAllowed``); such a posting is left for the next look.
    """
    if postings is None:
        postings = Posting.objects.filter(state=PostingState.UNCONFIRMED)
    postings = list(postings.order_by("pk"))
    if not postings:
        return []
    entries = [e for batch in sandbox.ledger() for e in batch["entries"]]
    done = []
    for posting in postings:
        provider = posting.connection.get_provider()
        txn = provider.transaction_id(posting)
        reversal = posting.kind == PostingKind.REVERSAL
        found = [
            e
            for e in entries
            if e["client_transaction_id"] == txn
            and bool(e.get("original_transaction_id")) == reversal
        ]
        try:
            if found:
                receipt = found[0]["evolution_reference"]
                outbox.mark_found(posting, receipt=receipt, who=who)
                what = f"found under External Batch {found[0]['client_jnl_no']}, receipt {receipt}"
            else:
                outbox.post_unconfirmed(posting, who=who)
                what = "not in eSite, posted"
        except outbox.NotAllowed:
            continue
        done.append((posting.key, f"{posting.get_kind_display().lower()} {txn}: {what}"))
    return done
