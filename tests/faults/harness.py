"""Processes and checks for the fault suite and bench/chaos.py.

- ``SandboxProcess``: the eSite sandbox as its own process (``manage.py amsi_sandbox``), so it can
  be restarted, stopped for a while, or killed.
- ``Cluster``: a real django-q2 cluster (``manage.py qcluster``) in its own process group, reading
  the database and the (short) timings from its environment.
- ``Platform``: the property connected to the sandbox, imported; payments, reversals, a driver
  that stands in for the retry-sweep schedule, batch closing, and the ledger comparison.

Every process is started in a new session and stopped by its own process group id.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import socket
import subprocess
import sys
import time
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")

# The timing chain, scaled down for tests (production: 2 x 20 s + 15 s < 90 s < 105 s < 120 s):
#   SOAP timeout 1 s; an attempt after an unknown outcome makes two calls (check + write) and may
#   then wait inline for its next try, so task timeout 6 s > 2 x 1 s + 1.5 s; claim 7 s; retry 9 s.
CLIENT_TIMEOUT = 1.0
TIMINGS = {
    "Q_TIMEOUT": "6",
    "Q_RETRY": "9",
    "INTEGRATIONS_CLAIM_SECONDS": "7",
    "INTEGRATIONS_UNKNOWN_OUTCOME_DELAY_SECONDS": "1.5",
    "INTEGRATIONS_RETRY_BACKOFF_SECONDS": "0.3,0.6,1,1.5,2,2,2",
    "INTEGRATIONS_MAX_ATTEMPTS": "10",
    "INTEGRATIONS_QUEUE_GRACE_SECONDS": "10",
}
# A write that lands this long after it was sent: longer than the client's timeout, shorter than
# the timeout + the unknown-outcome delay (so the check after it finds it).
SLOW_WRITE_SECONDS = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database this process is using now (the test database in a test)."""
    from django.db import connection

    sd = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(sd["NAME"])
        if "memory" in name or not name:
            raise RuntimeError("worker processes cannot share an in-memory SQLite database")
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor == "postgresql":
        user = sd.get("USER") or ""
        password = f":{sd['PASSWORD']}" if sd.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        host = sd.get("HOST") or "127.0.0.1"
        port = f":{sd['PORT']}" if sd.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{sd['NAME']}"
    raise RuntimeError(f"no worker URL for {connection.vendor}")


def child_env(workdir: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATIONS_", "Q_", "PYTEST"))
    }
    env.update(TIMINGS)
    env.update(
        {
            "DATABASE_URL": db_url,
            "RENTPLATFORM_VAR_DIR": str(workdir),
            "DJANGO_SETTINGS_MODULE": "rentplatform.settings",
            "LOG_LEVEL": "WARNING",
            "INTEGRATIONS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 15) -> None:
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


class SandboxProcess:
    """``manage.py amsi_sandbox`` on a fixed loopback port; restarts keep the state file."""

    def __init__(self, workdir: Path, db_url: str, *, seed: str | None = "demo") -> None:
        self.workdir = Path(workdir)
        self.state = self.workdir / "esite.sqlite3"
        self.port = free_port()
        self.seed = seed
        self.env = child_env(self.workdir, db_url)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._added: dict[tuple[int, int], dict] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> SandboxProcess:
        args = [sys.executable, "manage.py", "amsi_sandbox", "--addr", f"127.0.0.1:{self.port}"]
        args += ["--state", str(self.state)]
        if self.seed and self.starts == 0:
            args += ["--seed", self.seed]
        log = open(self.workdir / "sandbox.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/sandbox/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the sandbox did not start: {self.log_tail()}")

    def stop(self) -> None:
        self._forget()
        _stop_group(self.proc)

    def kill(self) -> None:
        self._forget()
        _stop_group(self.proc, signal.SIGKILL)

    def _forget(self) -> None:
        try:
            self.note_fired()
        except httpx.HTTPError:
            pass
        for added in self._added.values():
            added["done"] = True

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "sandbox.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    # -- control API (faults are in memory: a restart clears them) -------------------------------
    def _control(self, method: str, path: str, **kwargs):
        response = httpx.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def add_fault(self, mode: str, operation: str = "*", **options) -> dict:
        fault = self._control(
            "POST", "/sandbox/faults", json={"mode": mode, "operation": operation, **options}
        )
        self._added[(self.starts, fault["id"])] = dict(fault)
        return fault

    def faults(self) -> list[dict]:
        return self._control("GET", "/sandbox/faults")["faults"]

    def note_fired(self) -> dict[str, int]:
        """How often each fault mode fired so far (call before a restart or a clear: the
        sandbox keeps faults in memory; a used-up count fault disappears from its list)."""
        if self.proc is not None and self.proc.poll() is None:
            current = {f["id"]: f for f in self.faults()}
            for (start, fid), added in self._added.items():
                if start != self.starts or added.get("done"):
                    continue
                if fid in current:
                    added["fired"] = current[fid]["fired"]
                elif added.get("count") is not None and added.get("ratio") is None:
                    added["fired"], added["done"] = added["count"], True
        fired: dict[str, int] = {}
        for added in self._added.values():
            fired[added["mode"]] = fired.get(added["mode"], 0) + added.get("fired", 0)
        return fired

    def clear_faults(self) -> None:
        self.note_fired()
        for added in self._added.values():
            added["done"] = True
        self._control("DELETE", "/sandbox/faults")

    def ledger(self) -> list[dict]:
        return self._control("GET", "/sandbox/ledger")["batches"]


class Cluster:
    """``manage.py qcluster`` in its own process group."""

    def __init__(self, workdir: Path, db_url: str, *, name: str = "faults", workers: int = 4):
        self.workdir = Path(workdir)
        self.env = child_env(
            self.workdir, db_url, Q_CLUSTER_NAME="rentplatform", Q_WORKERS=str(workers)
        )
        self.name = name
        self.proc: subprocess.Popen | None = None

    def start(self) -> Cluster:
        log = open(self.workdir / f"cluster-{self.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=REPO, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def owns(self, pid: int) -> bool:
        try:
            return self.alive() and os.getpgid(pid) == self.proc.pid
        except ProcessLookupError:
            return False

    def stop(self, grace: float = 3) -> None:
        """SIGTERM to the cluster's main process, then SIGKILL to whatever is left of its group
        (a worker sleeping before an inline retry would hold a graceful stop for many seconds;
        everything a worker does is safe to cut short: that is what is being tested)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)

    def log_tail(self, n: int = 3000) -> str:
        path = self.workdir / f"cluster-{self.name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


@dataclass
class Tally:
    scenario: str
    vendor: str
    payments: int = 0
    reversals: int = 0
    posted: int = 0
    needs_attention: dict[str, str] = field(default_factory=dict)
    unfinished: int = 0
    batches: list[tuple] = field(default_factory=list)  # (jnl, ours n, ours total, sb n, sb total)
    sandbox_payments: int = 0
    sandbox_reversals: int = 0
    duplicates: int = 0
    lost: int = 0
    extra: int = 0
    mismatched_batches: int = 0
    unsettled: list[str] = field(default_factory=list)
    found_after_unknown: int = 0
    attempts: int = 0
    overlapping_attempts: int = 0
    faults_fired: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.lost == 0
            and self.extra == 0
            and self.mismatched_batches == 0
            and self.unfinished == 0
            and not self.unsettled
            and self.overlapping_attempts == 0
            and all(self.needs_attention.values())
        )

    def line(self) -> str:
        fired = ",".join(f"{k}={v}" for k, v in sorted(self.faults_fired.items())) or "none"
        return (
            f"FAULTS {self.scenario} [{self.vendor}] payments={self.payments} "
            f"reversals={self.reversals} | sandbox: payments={self.sandbox_payments} "
            f"reversals={self.sandbox_reversals} | batches={len(self.batches)} "
            f"mismatched={self.mismatched_batches} unsettled={len(self.unsettled)} | "
            f"posted={self.posted} needs_attention={len(self.needs_attention)} "
            f"unfinished={self.unfinished} duplicates={self.duplicates} lost={self.lost} "
            f"extra={self.extra} overlapping={self.overlapping_attempts} | "
            f"attempts={self.attempts} found_after_unknown={self.found_after_unknown} "
            f"faults_fired={fired} | {'OK' if self.ok else 'DIFFERENCES'}"
        )

    def table(self) -> str:
        rows = [f"{'batch':<24} {'ours n':>7} {'ours total':>12} {'AMSI n':>7} {'AMSI total':>12}"]
        for jnl, n, total, sn, stotal in self.batches:
            mark = "" if (n, total) == (sn, stotal) else "  <-- differs"
            rows.append(f"{jnl:<24} {n:>7} {total!s:>12} {sn:>7} {stotal!s:>12}{mark}")
        for key, reason in sorted(self.needs_attention.items()):
            rows.append(f"needs attention {key[:12]}: {reason[:160] or '(NO REASON)'}")
        for jnl in self.unsettled:
            rows.append(f"not settled: {jnl}")
        return "\n".join(rows)


class Platform:
    """The platform side of a run, in this process (the workers are other processes)."""

    def __init__(self, sandbox: SandboxProcess, *, timeout: float = CLIENT_TIMEOUT) -> None:
        from tests.integrations_amsi.world import connect_to_sandbox

        self.sandbox = sandbox
        self.property, self.connection = connect_to_sandbox(sandbox.base_url, timeout=timeout)
        self.payments: list = []
        self.reversals: list = []

    def import_property(self) -> None:
        from integrations.services import run_sync

        run = run_sync(self.connection, "import")
        assert run.status == "succeeded", run.message

    def payable(self, method: str) -> list:
        from rentplatform.models import Lease

        leases = Lease.objects.filter(unit__building__property=self.property).order_by("pk")
        return [
            lease
            for lease in leases
            if lease.status in ("active", "notice") and lease.effective_access.allows(method)
        ]

    # -- money -----------------------------------------------------------------------------------
    def pay(self, n: int, *, rng: random.Random, card_share: float = 0.6) -> list:
        from rentplatform import services

        cards, banks = self.payable("card"), self.payable("ach")
        made = []
        for _ in range(n):
            method = "card" if rng.random() < card_share else "ach"
            lease = rng.choice(cards if method == "card" else banks)
            amount = Decimal(rng.randint(5000, 250000)) / 100
            made.append(services.accept_payment(lease, amount, method))
        self.payments += made
        return made

    def reverse(self, n: int, *, rng: random.Random) -> list:
        """n reversals of every kind: void, chargeback and ACH return before the deposit, then
        card refund and ACH return after it (rule 5: those go to a separate reversals batch)."""
        from rentplatform import services
        from rentplatform.models import Payment, PaymentState

        before = ["void", "chargeback", "return"]
        after = ["refund", "return"]
        n_after = n * 2 // 5
        plan = [before[i % 3] for i in range(n - n_after)] + [after[i % 2] for i in range(n_after)]
        pool = list(self.payments)
        rng.shuffle(pool)
        made = []

        def take(method: str | None, deposited: bool):
            for p in pool:
                p.refresh_from_db()
                if method and p.method != method:
                    continue
                if deposited and p.state == PaymentState.DEPOSITED:
                    pool.remove(p)
                    return p
                if not deposited and p.state == PaymentState.PROCESSING:
                    pool.remove(p)
                    return p
            return None

        for i, kind in enumerate(plan):
            deposited = i >= n - n_after
            if deposited and not any(p.batch.status == "deposited" for p in self.payments):
                for batch in {p.batch for p in self.payments}:
                    for p in batch.payments.filter(state=PaymentState.PROCESSING):
                        services.settle_payment(p)
                    services.deposit_batch(batch)
            method = {"chargeback": "card", "return": "ach", "refund": "card"}.get(kind)
            payment = take(method, deposited) or take(None, deposited)
            if payment is None:
                break
            payment = Payment.objects.get(pk=payment.pk)
            if kind == "void":
                made.append(services.void_payment(payment))
            elif kind == "return" and payment.method == "ach":
                made.append(services.return_payment(payment, "R01" if not deposited else "R02"))
            elif payment.method == "card" and not deposited:
                payment = services.settle_payment(payment)  # a card is charged back once settled
                made.append(services.charge_back_payment(payment))
            else:
                made.append(services.refund_payment(payment))
        self.reversals += made
        return made

    # -- driving ---------------------------------------------------------------------------------
    def sweep(self) -> int:
        """The every-minute retry-sweep schedule (``tasks.retry_sweep``), run from here every
        few seconds; it leaves alone postings whose task is still waiting in the queue
        (QUEUE_GRACE_SECONDS, 10 s here)."""
        from integrations import outbox

        return outbox.sweep(grace=float(TIMINGS["INTEGRATIONS_QUEUE_GRACE_SECONDS"]))

    def open_count(self) -> int:
        from integrations.models import Posting, PostingState

        return Posting.objects.filter(
            state__in=[PostingState.PENDING, PostingState.RETRYING, PostingState.IN_FLIGHT]
        ).count()

    def wait_until_done(self, timeout: float = 90, sweep_every: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        next_sweep = time.monotonic() + sweep_every
        while time.monotonic() < deadline:
            if self.open_count() == 0:
                return
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + sweep_every
            time.sleep(0.2)
        raise TimeoutError(f"{self.open_count()} posting(s) still open after {timeout:.0f} s")

    def close_batches(self, rounds: int = 5) -> list[str]:
        """The close-batches job, run as of tomorrow noon (after every cutoff of today)."""
        tomorrow = dt.datetime.now(CHICAGO).date() + dt.timedelta(days=1)
        now = dt.datetime.combine(tomorrow, dt.time(12), tzinfo=CHICAGO)
        provider = self.connection.get_provider()
        lines: list[str] = []
        for _ in range(rounds):
            lines = provider.close_batches(now=now)
            if not any("will retry" in line for line in lines):
                break
            time.sleep(0.5)
        return lines

    # -- the comparison --------------------------------------------------------------------------
    def tally(self, scenario: str) -> Tally:
        from django.db import connection

        from integrations.models import Posting, PostingAttempt, PostingState
        from integrations_amsi.models import AmsiBatchLink
        from rentplatform.models import DepositBatch

        t = Tally(scenario, connection.vendor, len(self.payments), len(self.reversals))
        postings = list(
            Posting.objects.select_related("payment", "reversal").filter(connection=self.connection)
        )
        t.posted = sum(p.state == PostingState.POSTED for p in postings)
        t.unfinished = sum(
            p.state not in (PostingState.POSTED, PostingState.NEEDS_ATTENTION) for p in postings
        )
        t.needs_attention = {
            p.key: p.last_error for p in postings if p.state == PostingState.NEEDS_ATTENTION
        }
        attempts = list(PostingAttempt.objects.filter(posting__connection=self.connection))
        t.attempts = len(attempts)
        t.found_after_unknown = sum(a.outcome == "found_posted" for a in attempts)
        t.overlapping_attempts = _overlaps(attempts)
        # Postings that must not be missing: every payment and reversal we made has a posting.
        expected_postings = len(self.payments) + len(self.reversals)
        t.lost += max(expected_postings - len(postings), 0)

        sandbox = {b["client_jnl_no"]: b for b in self.sandbox.ledger()}
        seen: dict[tuple[str, bool], int] = {}
        for b in sandbox.values():
            for e in b["entries"]:
                negative = Decimal(e["amount"]) < 0 or e.get("entry_type") == "Return"
                key = (e["client_transaction_id"], negative)
                seen[key] = seen.get(key, 0) + 1
                if negative:
                    t.sandbox_reversals += 1
                else:
                    t.sandbox_payments += 1
        t.duplicates = sum(n - 1 for n in seen.values() if n > 1)

        ours_keys = set()
        for p in postings:
            txn = p.payment.reference.hex
            key = (txn, p.kind == "reversal")
            ours_keys.add(key)
            if p.state == PostingState.POSTED and key not in seen:
                t.lost += 1
            if p.state != PostingState.POSTED and key in seen:
                t.extra += 1  # landed in AMSI but we think it did not
        t.extra += sum(1 for key in seen if key not in ours_keys)

        for batch in DepositBatch.objects.filter(property=self.property).order_by("batch_id"):
            n, total = 0, Decimal("0.00")
            for p in batch.payments.all():
                if Posting.objects.filter(payment=p, kind="payment", state="posted").exists():
                    n, total = n + 1, total + p.amount
            for r in batch.reversals.all():
                if Posting.objects.filter(reversal=r, state="posted").exists():
                    n, total = n + 1, total - r.amount
            sb = sandbox.get(batch.batch_id)
            sn = len(sb["entries"]) if sb else 0
            stotal = Decimal(sb["total"]) if sb else Decimal("0.00")
            t.batches.append((batch.batch_id, n, total, sn, stotal))
            if (n, total) != (sn, stotal):
                t.mismatched_batches += 1
            if (
                sb
                and not Posting.objects.filter(
                    state=PostingState.NEEDS_ATTENTION, payment__batch=batch
                ).exists()
            ):
                link = AmsiBatchLink.objects.filter(batch=batch).first()
                if not sb.get("settled") or link is None or link.settled_amount != total:
                    t.unsettled.append(batch.batch_id)
        t.mismatched_batches += sum(1 for jnl in sandbox if jnl not in {b[0] for b in t.batches})
        t.faults_fired = self.sandbox.note_fired()
        return t


def _overlaps(attempts) -> int:
    """Attempts of one posting whose [started, finished] intervals overlap (two at once)."""
    by_posting: dict[int, list] = {}
    for a in attempts:
        by_posting.setdefault(a.posting_id, []).append(a)
    count = 0
    for items in by_posting.values():
        items.sort(key=lambda a: a.started_at)
        for prev, nxt in zip(items, items[1:], strict=False):
            if prev.finished_at and nxt.started_at < prev.finished_at:
                count += 1
    return count
