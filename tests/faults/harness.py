"""Processes and checks for the fault suite and bench/chaos.py.

- ``SandboxProcess``: the eSite sandbox as its own process (``manage.py amsi_sandbox``), so it can
  be restarted, stopped for a while, or killed.
- ``Cluster``: a real django-q2 cluster (``manage.py qcluster``) in its own process group, reading
  the database and the (short) timings from its environment.
- ``Platform``: the property connected to the sandbox, imported; payments, reversals, a driver
  that stands in for the retry-sweep schedule, batch closing, and the ledger comparison.

Two ways an unknown outcome (a reply lost, a timeout, a worker killed mid-call) is settled,
following the sandbox's ``duplicates`` variant:

- ``duplicates=refuse``: the platform runs automatic checking (the operator's "duplicates
  refused" confirmation is on the connection): the write is re-sent and eSite's refusal of the
  repeated ClientTransactionID proves it landed (attempt outcome ``found_posted``).
- ``duplicates=accept``: a repeat would be booked again, so no operator would confirm that; the
  posting becomes "unconfirmed" and the harness plays the person: once no slow write can still
  land, it looks the posting up in the sandbox's ledger and says "found" (with the receipt) or
  "not there, post it".

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
# The sandbox's answers to a repeated ClientTransactionID: refused (the platform then checks
# unknown outcomes unattended) or booked again (a person settles them; the harness plays one).
BOTH_DUPLICATES = ("refuse", "accept")


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
    """``manage.py amsi_sandbox`` on a fixed loopback port; restarts keep the state file and
    the variants (``--variant NAME=VALUE``, e.g. ``{"duplicates": "accept"}``)."""

    def __init__(
        self,
        workdir: Path,
        db_url: str,
        *,
        seed: str | None = "demo",
        variants: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.state = self.workdir / "esite.sqlite3"
        self.port = free_port()
        self.seed = seed
        self.variants = dict(variants or {})
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
        for name, value in sorted(self.variants.items()):
            args += ["--variant", f"{name}={value}"]
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

    def running_variants(self) -> dict[str, str]:
        """The variants the running sandbox reports (all of them, defaults included)."""
        return self._control("GET", "/sandbox/variants")["variants"]

    @property
    def duplicates(self) -> str:
        """What this eSite does with a repeated ClientTransactionID: refuse (the default) or
        accept (book it again)."""
        return self.variants.get("duplicates", "refuse")


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
    duplicates_variant: str = "refuse"
    automatic: bool = True
    posted: int = 0
    needs_attention: dict[str, str] = field(default_factory=dict)
    unfinished: int = 0
    still_unconfirmed: int = 0  # part of unfinished: waiting for a person at the end
    # One row per eSite batch (client_jnl_no): (jnl, kind, ours n, ours total, sb n, sb total)
    batches: list[tuple] = field(default_factory=list)
    sandbox_payments: int = 0
    sandbox_reversals: int = 0
    duplicates: int = 0
    lost: int = 0
    extra: int = 0
    mismatched_batches: int = 0
    unsettled: list[str] = field(default_factory=list)
    found_after_unknown: int = 0
    went_unconfirmed: int = 0
    found_by_person: int = 0
    posted_by_person: int = 0
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

    @property
    def mode(self) -> str:
        return f"duplicates={self.duplicates_variant} {'automatic' if self.automatic else 'person'}"

    def line(self) -> str:
        fired = ",".join(f"{k}={v}" for k, v in sorted(self.faults_fired.items())) or "none"
        return (
            f"FAULTS {self.scenario} [{self.vendor} {self.mode}] payments={self.payments} "
            f"reversals={self.reversals} | sandbox: payments={self.sandbox_payments} "
            f"reversals={self.sandbox_reversals} | batches={len(self.batches)} "
            f"mismatched={self.mismatched_batches} unsettled={len(self.unsettled)} | "
            f"posted={self.posted} needs_attention={len(self.needs_attention)} "
            f"unfinished={self.unfinished} duplicates={self.duplicates} lost={self.lost} "
            f"extra={self.extra} overlapping={self.overlapping_attempts} | "
            f"attempts={self.attempts} found_after_unknown={self.found_after_unknown} "
            f"went_unconfirmed={self.went_unconfirmed} found_by_person={self.found_by_person} "
            f"posted_by_person={self.posted_by_person} "
            f"faults_fired={fired} | {'OK' if self.ok else 'DIFFERENCES'}"
        )

    def table(self) -> str:
        rows = [
            f"{'eSite batch (external no.)':<28} {'kind':<9} {'ours n':>7} {'ours total':>12} "
            f"{'AMSI n':>7} {'AMSI total':>12}"
        ]
        for jnl, kind, n, total, sn, stotal in self.batches:
            mark = "" if (n, total) == (sn, stotal) else "  <-- differs"
            rows.append(f"{jnl:<28} {kind:<9} {n:>7} {total!s:>12} {sn:>7} {stotal!s:>12}{mark}")
        for key, reason in sorted(self.needs_attention.items()):
            rows.append(f"needs attention {key[:12]}: {reason[:160] or '(NO REASON)'}")
        for jnl in self.unsettled:
            rows.append(f"not settled: {jnl}")
        if self.still_unconfirmed:
            rows.append(f"still unconfirmed (waiting for a person): {self.still_unconfirmed}")
        return "\n".join(rows)


class Platform:
    """The platform side of a run, in this process (the workers are other processes).

    ``automatic``: whether the connection checks unknown outcomes unattended (the operator's
    "duplicates refused" confirmation). By default it follows the sandbox: on when it refuses
    duplicates, off when it accepts them (no operator would confirm that; the harness then
    plays the person in ``wait_until_done``). ``max_write_delay``: the longest a write may take
    to land after it was sent in this run (the slowest latency fault in play); the person looks
    at an unconfirmed posting only once it has been unconfirmed for longer than that.
    """

    def __init__(
        self,
        sandbox: SandboxProcess,
        *,
        timeout: float = CLIENT_TIMEOUT,
        automatic: bool | None = None,
        max_write_delay: float = SLOW_WRITE_SECONDS,
    ) -> None:
        from tests.integrations_amsi.world import connect_to_sandbox

        if automatic is None:
            automatic = sandbox.duplicates == "refuse"
        if automatic and sandbox.duplicates != "refuse":
            raise ValueError(
                "automatic checking re-sends after an unknown outcome and relies on eSite "
                f"refusing the repeat; this sandbox runs duplicates={sandbox.duplicates}"
            )
        self.sandbox = sandbox
        self.automatic = automatic
        self.max_write_delay = max_write_delay
        self.property, self.connection = connect_to_sandbox(sandbox.base_url, timeout=timeout)
        if automatic:
            self.confirm_duplicates_refused()
        self.payments: list = []
        self.reversals: list = []
        self.person_log: list[tuple[str, str]] = []  # (posting key, "found" / "not found")

    def confirm_duplicates_refused(self, who: str = "ops@example.test") -> None:
        """What an operator records after seeing this eSite refuse a repeated
        ClientTransactionID, with the ErrorCode it answered (the workers read the connection
        from the database)."""
        from integrations_amsi.conf import record_duplicates_refused

        record_duplicates_refused(self.connection, who=who, code="206")

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
        """Postings not finished: waiting for the outbox, or unconfirmed (waiting for a
        person)."""
        from integrations.models import Posting, PostingState

        return Posting.objects.filter(
            connection=self.connection,
            state__in=[
                PostingState.PENDING,
                PostingState.RETRYING,
                PostingState.IN_FLIGHT,
                PostingState.UNCONFIRMED,
            ],
        ).count()

    def state_counts(self) -> dict[str, int]:
        from django.db.models import Count

        from integrations.models import Posting

        rows = (
            Posting.objects.filter(connection=self.connection)
            .values("state")
            .annotate(n=Count("pk"))
            .order_by("state")
        )
        return {r["state"]: r["n"] for r in rows}

    def wait_until_done(
        self, timeout: float = 90, sweep_every: float = 2.0, look_every: float = 1.0
    ) -> None:
        """Sweep until no posting is open; when not automatic, play the person meanwhile."""
        deadline = time.monotonic() + timeout
        next_sweep = time.monotonic() + sweep_every
        next_look = time.monotonic() + look_every
        while time.monotonic() < deadline:
            if self.open_count() == 0:
                return
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + sweep_every
            if not self.automatic and time.monotonic() >= next_look:
                self.resolve_unconfirmed()
                next_look = time.monotonic() + look_every
            time.sleep(0.2)
        states = self.state_counts()
        raise TimeoutError(
            f"{self.open_count()} posting(s) still open after {timeout:.0f} s: {states}"
        )

    # -- the person ------------------------------------------------------------------------------
    def person_wait(self) -> dt.timedelta:
        """How long a posting must have been unconfirmed before the person looks: longer than
        any write still on its way could take to land (plus a margin for a loaded machine)."""
        return dt.timedelta(seconds=self.max_write_delay + 1.0)

    def resolve_unconfirmed(self) -> int:
        """Play the person: for each posting unconfirmed long enough, look it up in the
        sandbox's ledger and say "found" (with the entry's receipt) or "not there, post it".

        "Long enough" counts from the end of the posting's last attempt: a slow write sent by
        that attempt (or one before it) may land after the posting became unconfirmed, and a
        person who looked too early would post it twice. The ledger is read after the postings
        were picked, so whatever it shows is all that will ever land for them. The outbox may
        still refuse (``NotAllowed``: a stray queued task holds the posting for a moment, or
        its own unknown-outcome delay has not passed): such a posting is looked at again on
        the next round. Returns how many were resolved.
        """
        from django.db.models import Max
        from django.utils import timezone

        from integrations.models import Posting, PostingState
        from integrations_amsi.demo import look_in_sandbox

        cutoff = timezone.now() - self.person_wait()
        ready = (
            Posting.objects.filter(connection=self.connection, state=PostingState.UNCONFIRMED)
            .annotate(last_finished=Max("attempt_log__finished_at"))
            .filter(last_finished__lt=cutoff)
        )
        done = look_in_sandbox(self.sandbox, ready, who="harness")
        for key, what in done:
            self.person_log.append((key, "not found" if what.endswith("posted") else "found"))
        return len(done)

    def transaction_id(self, posting) -> str:
        """The ClientTransactionID AMSI knows a posting by: a payment's own, a reversal's
        original payment's (ReturnPayment names it)."""
        from integrations.models import Posting
        from integrations_amsi.identifiers import client_transaction_id

        if posting.kind == "payment":
            return client_transaction_id(posting)
        return client_transaction_id(Posting.objects.get(payment=posting.payment, kind="payment"))

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
        """Our books against the sandbox's ledger.

        - Entries are matched to postings by ClientTransactionID: a payment's own, a reversal's
          original payment's (the sandbox books a return or negative payment with
          client_transaction_id = original_transaction_id = the original's id). A
          (transaction id, negative) pair seen more than once is a duplicate.
        - Lost: a posting we think posted that the sandbox lacks, or a payment or reversal we
          made that has no posting. Extra: in the sandbox but not posted on our side.
        - Per eSite batch (its external number, client_jnl_no): entry count and total equal
          what our AmsiBatchEntry rows say landed in the AmsiBatchLink with that number
          (posted postings only); every batch whose postings are all posted is settled in the
          sandbox and in our link, at its total (a return batch's settlement may be stored as
          its absolute value).
        """
        from django.db import connection

        from integrations.models import Posting, PostingAttempt, PostingState
        from integrations_amsi.models import AmsiBatchEntry, AmsiBatchLink

        POSTED = PostingState.POSTED
        t = Tally(
            scenario,
            connection.vendor,
            len(self.payments),
            len(self.reversals),
            duplicates_variant=self.sandbox.duplicates,
            automatic=self.automatic,
        )
        postings = list(
            Posting.objects.select_related("payment", "reversal").filter(connection=self.connection)
        )
        t.posted = sum(p.state == POSTED for p in postings)
        t.unfinished = sum(p.state not in (POSTED, PostingState.NEEDS_ATTENTION) for p in postings)
        t.still_unconfirmed = sum(p.state == PostingState.UNCONFIRMED for p in postings)
        t.needs_attention = {
            p.key: p.last_error for p in postings if p.state == PostingState.NEEDS_ATTENTION
        }
        attempts = list(PostingAttempt.objects.filter(posting__connection=self.connection))
        t.attempts = sum(not a.worker.startswith("person:") for a in attempts)
        t.found_after_unknown = sum(a.outcome == "found_posted" for a in attempts)
        t.went_unconfirmed = sum(a.outcome == "unconfirmed" for a in attempts)
        t.found_by_person = sum(a.outcome == "found_by_person" for a in attempts)
        t.posted_by_person = sum(a.outcome == "not_found_by_person" for a in attempts)
        t.overlapping_attempts = _overlaps(attempts)

        # Every payment and reversal we made has its posting.
        payment_postings = {p.payment_id: p for p in postings if p.kind == "payment"}
        reversal_postings = {p.reversal_id for p in postings if p.kind == "reversal"}
        t.lost += sum(p.pk not in payment_postings for p in self.payments)
        t.lost += sum(r.pk not in reversal_postings for r in self.reversals)

        # The sandbox's entries by (ClientTransactionID, negative).
        ledger = self.sandbox.ledger()
        seen: dict[tuple[str, bool], int] = {}
        for b in ledger:
            for e in b["entries"]:
                negative = (
                    Decimal(e["amount"]) < 0
                    or e.get("entry_type") == "Return"
                    or bool(e.get("original_transaction_id"))
                )
                key = (e["client_transaction_id"], negative)
                seen[key] = seen.get(key, 0) + 1
                if negative:
                    t.sandbox_reversals += 1
                else:
                    t.sandbox_payments += 1
        t.duplicates = sum(n - 1 for n in seen.values() if n > 1)

        posted_keys: set[tuple[str, bool]] = set()
        for p in postings:
            original = payment_postings.get(p.payment_id)
            if original is None:  # a reversal whose payment has no posting: counted above
                continue
            key = (self.transaction_id(original), p.kind == "reversal")
            if p.state == POSTED:
                posted_keys.add(key)
                if key not in seen:
                    t.lost += 1
        t.extra += sum(1 for key in seen if key not in posted_keys)

        # Per eSite batch.
        by_jnl: dict[str, list[dict]] = {}
        for b in ledger:
            by_jnl.setdefault(str(b["client_jnl_no"]), []).append(b)
        links = {
            link.client_jnl_no: link
            for link in AmsiBatchLink.objects.filter(connection=self.connection).select_related(
                "batch"
            )
        }
        ours: dict[str, tuple[int, Decimal]] = {jnl: (0, Decimal("0.00")) for jnl in links}
        for entry in AmsiBatchEntry.objects.filter(
            link__connection=self.connection, posting__state=POSTED
        ).select_related("link"):
            n, total = ours[entry.link.client_jnl_no]
            ours[entry.link.client_jnl_no] = (n + 1, total + entry.amount)
        waiting = [p for p in postings if p.state != POSTED]
        for jnl in sorted(set(ours) | set(by_jnl)):
            link = links.get(jnl)
            n, total = ours.get(jnl, (0, Decimal("0.00")))
            total = total.quantize(Decimal("0.01"))
            batches = by_jnl.get(jnl, [])
            sn = sum(len(b["entries"]) for b in batches)
            stotal = sum((Decimal(b["total"]) for b in batches), Decimal("0.00"))
            kind = link.kind if link else "(none)"
            t.batches.append((jnl, kind, n, total, sn, stotal))
            if (n, total) != (sn, stotal) or len(batches) > 1 or link is None:
                t.mismatched_batches += 1
            if link is None or n == 0 or _could_land(link, waiting):
                continue
            is_return = link.kind == "return"
            sb = batches[0] if batches else None
            if not (
                sb
                and sb.get("settled")
                and _same_amount(Decimal(sb.get("settled_amount") or "0"), stotal, is_return)
                and link.settled_amount is not None
                and _same_amount(link.settled_amount, total, is_return)
            ):
                t.unsettled.append(jnl)
        # A posting posted on our side but recorded in no eSite batch cannot be settled.
        landed = set(
            AmsiBatchEntry.objects.filter(link__connection=self.connection).values_list(
                "posting_id", flat=True
            )
        )
        t.mismatched_batches += sum(p.state == POSTED and p.pk not in landed for p in postings)
        t.faults_fired = self.sandbox.note_fired()
        return t


def _same_amount(settled: Decimal, total: Decimal, is_return: bool) -> bool:
    return settled == total or (is_return and abs(settled) == abs(total))


def _could_land(link, waiting) -> bool:
    """Whether a posting that is not posted is in this eSite batch or could still land in it
    (then the batch is not expected to be settled): one recorded in it, or for a payments
    batch a payment of its host batch or a reversal of one not recorded anywhere yet."""
    for p in waiting:
        entry = getattr(p, "amsi_entry", None)  # RelatedObjectDoesNotExist is an AttributeError
        if entry is not None and entry.link_id == link.pk:
            return True
        if link.kind == "payments" and entry is None and p.payment.batch_id == link.batch_id:
            return True
    return False


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
