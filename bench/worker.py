"""Benchmark: payments through a real django-q2 cluster, accepted -> posted, beside the floor.

    .venv/bin/python bench/worker.py                       # ORM/SQLite, ORM/PostgreSQL, Redis/PG
    .venv/bin/python bench/worker.py --db postgres --broker redis --workers 4
    .venv/bin/python bench/worker.py --db postgres --conn-max-age 60   # experiment: persistent
    .venv/bin/python bench/worker.py --db postgres --q-option save_limit=-1   # experiment
    .venv/bin/python bench/worker.py --db postgres --profile var/bench   # cProfile of taking
    .venv/bin/python bench/worker.py --db postgres --waits   # what PostgreSQL sessions wait on
    .venv/bin/python bench/worker.py --quick               # ORM/SQLite, small sizes (CI)

One child process per configuration: a fresh database, the sandbox (demo portfolio) and a
``manage.py qcluster`` with ``--workers`` workers, each its own process. Phases, in order:

1. steady: payments taken at ``--rate`` per second for ``--seconds`` (DELIVERY=async: each
   queues its task after its commit); latency = ``posted_at - accepted_at`` of every payment,
   p50/p95/p99. Target: p95 <= 0.5 s.
2. floor: ``--burst`` django-q2 tasks that only make the bare zeep AddPayment
   (bench/_bare.py ``floor_task``), queued as fast as this process can, on the same workers;
   throughput = n / (last finished - first queued).
3. burst: ``--burst`` payments taken first with nothing queued (DELIVERY=manual), then their
   postings released at once to the connection's drains (``outbox.queue_waiting``, as
   enabling a connection does; with ``INTEGRATIONS_DRAIN=0``, a task per posting queued by
   ``outbox.enqueue`` as fast as this process can); throughput measured as the floor's.
   Target: >= 90 % of the floor. Floor and burst run in ``--pairs`` pairs (3), each burst
   right after its floor; the pair with the median ratio is shown, with the range of all
   (a single pair moved by 20 % from run to run on a shared 2-CPU machine). For both: the
   CPU one task or posting cost the whole machine (``/proc/stat``) and each role, and how
   long a delivery took from its claim to its outcome.
4. taking: payments taken back to back for ``--take-seconds`` while the workers post them;
   payments/s, the connections this process opened (``connection_created``) and how the CPUs
   were shared. Then the same with the cluster stopped: tasks still queued (broker only), and
   nothing queued (DELIVERY=manual): the cost of the enqueue and of the workers, apart.
   Target on PostgreSQL: >= 200/s while the workers run.

``--waits`` (PostgreSQL) also samples pg_stat_activity every 5 ms during the burst and the
taking: what the sessions waited on, and who held a lock. The sampling thread costs CPU on the
machine it measures (the taker's own process), so a run with it is slower: not for the rates.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import _bare  # bench/ is the script's folder, so first on sys.path
import _common as c
from _worker_report import report

CONFIGS = ("sqlite:orm", "postgres:orm", "postgres:redis")
CLUSTER_DID_NOT_START = 3  # exit code: the cluster never took a task (tests skip on it)


class ClusterDidNotStart(RuntimeError):
    pass


def child(config: str, args) -> dict:
    db, broker = config.split(":")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-worker-{db}-{broker}-"))
    db_url, drop = c.database_for(db, workdir, args.database_url)
    env = {
        "DEBUG": "0",
        "Q_CLUSTER_NAME": f"bench{os.getpid()}",  # its own queue: no other cluster takes it
        **c.experiment_env(args.q_option, args.conn_max_age),
    }
    if broker == "redis":
        env["REDIS_URL"] = args.redis_url or os.environ.get("REDIS_URL") or c.REDIS_DEFAULT
    else:
        os.environ.pop("REDIS_URL", None)
    c.setup_django(db_url, workdir, **env)
    sandbox = c.start_sandbox(workdir, db_url)
    if args.latency:  # a distant eSite: every AddPayment (the floor's too) answers this late
        from integrations_amsi.sandbox.testing import SandboxControl

        control = SandboxControl(sandbox.base_url)
        control.add_fault("latency", "AddPayment", seconds=args.latency, ratio=1.0)
        control.close()
    from tests.faults.harness import TIMINGS, Cluster

    cluster = Cluster(workdir, db_url, name="bench", workers=args.workers)
    cluster.env.update({k: v for k, v in os.environ.items() if k in env})
    # An experiment with the drains (INTEGRATIONS_DRAIN, INTEGRATIONS_DRAIN_CONCURRENCY ...)
    # reaches the workers too (the harness keeps INTEGRATIONS_* of this process from them).
    cluster.env.update({k: v for k, v in os.environ.items() if k.startswith("INTEGRATIONS_DRAIN")})
    # The platform's own timings (task timeout 90 s, broker retry 120 s), not the fault suite's
    # short ones: with a 9 s retry, tasks waiting in a loaded cluster's queue are delivered twice.
    for name in TIMINGS:
        cluster.env.pop(name, None)
    try:
        return _run(config, args, sandbox, cluster, workdir)
    finally:
        cluster.stop()
        sandbox.kill()
        from django.db import connections

        connections.close_all()
        if drop:
            c.drop_database(db_url, drop)
        shutil.rmtree(workdir, ignore_errors=True)


class Bench:
    """The platform side: taking payments, queueing, waiting for postings."""

    def __init__(self, sandbox):
        from tests.faults.harness import Platform

        self.platform = Platform(sandbox)
        # CPU accounting (bench/_common.py cpu_by_role): the sandbox runs in its own group.
        self.groups = {sandbox.proc.pid: "sandbox (eSite's stand-in)"}
        self.platform.import_property()
        self.leases = self.platform.payable("card")
        self.n = 0

    def delivery(self, mode: str) -> None:
        from django.conf import settings

        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": mode}

    def take(self):
        from rentplatform import services

        self.n += 1
        lease = self.leases[self.n % len(self.leases)]
        return services.accept_payment(lease, Decimal("100.00") + self.n % 97, "card")

    def wait_posted(self, payment_ids: list[int], timeout: float) -> None:
        from integrations.models import Posting, PostingState

        # The ids are consecutive (this process alone takes payments, one phase at a time): a
        # range, not a list of a thousand ids, so the poll every 0.1 s costs the machine little.
        low, high = min(payment_ids), max(payment_ids)
        assert high - low + 1 == len(payment_ids), "payments taken out of order"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = (
                Posting.objects.filter(payment_id__gte=low, payment_id__lte=high)
                .exclude(state=PostingState.POSTED)
                .count()
            )
            if left == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{left} of {len(payment_ids)} postings not posted in {timeout:.0f} s")

    def latencies(self, payment_ids: list[int]) -> list[float]:
        from integrations.models import Posting

        rows = Posting.objects.filter(payment_id__in=payment_ids).values_list(
            "payment__accepted_at", "posted_at"
        )
        return [(posted - accepted).total_seconds() for accepted, posted in rows]

    def extra_attempts(self, payment_ids: list[int]) -> int:
        """Attempts beyond one per posting (a task delivered twice, a retry)."""
        from integrations.models import PostingAttempt

        return PostingAttempt.objects.filter(posting__payment_id__in=payment_ids).count() - len(
            payment_ids
        )

    def inside_delivery(self, payment_ids: list[int]) -> list[float]:
        """Seconds from each attempt's claim to its outcome (the call and the work around it,
        without the claim's and the finish's own commits)."""
        from integrations.models import PostingAttempt

        rows = PostingAttempt.objects.filter(
            posting__payment_id__in=payment_ids, finished_at__isnull=False
        ).values_list("started_at", "finished_at")
        return [(finished - started).total_seconds() for started, finished in rows]

    def last_posted(self, payment_ids: list[int]) -> float:
        from django.db.models import Max

        from integrations.models import Posting

        last = Posting.objects.filter(payment_id__in=payment_ids).aggregate(m=Max("posted_at"))
        return last["m"].timestamp()


def _run(config: str, args, sandbox, cluster, workdir: Path) -> dict:
    from django.db import connection

    bench = Bench(sandbox)
    result: dict = {"config": config, "workers": args.workers}
    bench.delivery("async")
    cluster.start()
    warm = [bench.take().pk for _ in range(2 * args.workers)]
    try:
        bench.wait_posted(warm, timeout=90)
    except TimeoutError as err:
        raise ClusterDidNotStart(f"{err}\n{cluster.log_tail()}") from err

    # 1. steady rate
    ids, start = [], time.monotonic()
    total = int(args.rate * args.seconds)
    for i in range(total):
        due = start + i / args.rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        ids.append(bench.take().pk)
    took = time.monotonic() - start
    bench.wait_posted(ids, timeout=120 + total)
    lat = bench.latencies(ids)
    result["steady"] = {
        "asked_rate": args.rate,
        "rate": total / max(took, args.seconds),
        "n": total,
        "p50": c.percentile(lat, 50),
        "p95": c.percentile(lat, 95),
        "p99": c.percentile(lat, 99),
        "max": max(lat),
    }

    # 2 and 3: the floor and the burst, in pairs: each burst beside the floor measured just
    # before it (one pair moved by 20 % from run to run on this shared machine; the pair with
    # the median ratio is reported, with the range of all)
    pairs = []
    for pair in range(args.pairs):
        floor = _floor(bench, sandbox, cluster, workdir, args.burst, pair)
        burst = _burst(bench, args, connection, floor["rate"], result)
        pairs.append((burst["of_floor"], pair, floor, burst))
    pairs.sort(key=lambda item: (item[0], item[1]))
    _, _, result["floor"], result["burst"] = pairs[(len(pairs) - 1) // 2]
    result["burst"]["of_floor_all"] = [item[0] for item in pairs]

    # 4. taking payments: workers running, then the cluster stopped (queued / not queued)
    result["take_running"] = take_phase(bench, args, "running", connection)
    cluster.stop()
    result["take_stopped"] = take_phase(bench, args, "stopped-queued", connection)
    bench.delivery("manual")
    result["take_manual"] = take_phase(bench, args, "stopped-manual", connection)
    result["vendor"] = connection.vendor
    if connection.vendor == "postgresql":
        result["commit_floor"] = {n: _bare.commit_floor(connection, n) for n in (1, 2)}
    return result


def _floor(bench: Bench, sandbox, cluster, workdir: Path, n: int, pair: int) -> dict:
    """``n`` bare-call tasks on the same workers, queued as fast as this process can."""
    from django_q.tasks import async_task

    from integrations import outbox

    template = sandbox_template(bench)
    out = workdir / f"floor-{pair}.txt"
    first_id = _bare.FLOOR_IDS + pair * n
    clear_results()
    floor_broker = outbox.shared_broker()
    cpu_before = c.cpu_by_role(bench.groups)
    t0 = time.time()
    for i in range(n):
        async_task(
            "bench._bare.floor_task",
            sandbox.base_url,
            template,
            first_id + i,
            str(out),
            group="bench-floor",
            broker=floor_broker,  # one broker, as the postings' queueing uses (not one a task)
        )
    queued = time.time() - t0
    deadline = time.monotonic() + 120 + n
    while time.monotonic() < deadline:
        runs = [line.split() for line in out.read_text().splitlines()] if out.exists() else []
        first: dict[str, float] = {}
        for txn, when in runs:
            first[txn] = min(float(when), first.get(txn, float("inf")))
        if len(first) >= n:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"floor: {len(first)} of {n} tasks ran\n{cluster.log_tail()}")
    return {
        "n": n,
        "rate": n / (max(first.values()) - t0),
        "queue_seconds": queued,
        "extra": len(runs) - n,
        "cpu_ms": c.cpu_ms_each(cpu_before, c.cpu_by_role(bench.groups), n),
    }


def _burst(bench: Bench, args, connection, floor: float, result: dict) -> dict:
    """``args.burst`` payments taken with nothing queued, then released at once."""
    from integrations import outbox
    from integrations.models import Posting

    n = args.burst
    bench.delivery("manual")
    burst = [bench.take().pk for _ in range(n)]
    posting_ids = list(
        Posting.objects.filter(payment_id__in=burst).order_by("pk").values_list("pk", flat=True)
    )
    bench.delivery("async")
    clear_results()
    sampler = WaitSampler(connection) if args.waits and connection.vendor == "postgresql" else None
    if sampler:
        sampler.start()
    cpu_before = c.cpu_by_role(bench.groups)
    t0 = time.time()
    if outbox.drains_enabled():
        # Released at once to the connection's drains (what enabling a connection that held
        # them does): every posting marked in one statement, one drain queued; each drain
        # that starts and finds more queues one more, so every worker joins in.
        from integrations.models import Connection

        outbox.queue_waiting(Connection.objects.get(postings__pk=posting_ids[0]))
    else:
        for posting_id in posting_ids:
            outbox.enqueue(posting_id)
    queued = time.time() - t0
    bench.wait_posted(burst, timeout=120 + n)
    burst_cpu = c.cpu_ms_each(cpu_before, c.cpu_by_role(bench.groups), n)
    if sampler:
        sampler.stop()
        result["burst_waits"] = sampler.summary()
        result["burst_lock_waits"] = dict(sampler.lock_queries.most_common(4))
    wall = bench.last_posted(burst) - t0
    rate = n / wall
    inside = bench.inside_delivery(burst)
    return {
        "inside_ms": c.percentile(inside, 50) * 1000,
        "inside_share": sum(inside) / (args.workers * wall),
        "n": n,
        "rate": rate,
        "of_floor": rate / floor,
        "queue_seconds": queued,
        "extra": bench.extra_attempts(burst),
        "cpu_ms": burst_cpu,
    }


def clear_results() -> None:
    """Forget django-q2's saved task results, so the floor and the burst start alike: with
    ``save_limit`` > 0 its monitor reads every saved success on each task (django-q2 1.11)."""
    from django.db import OperationalError
    from django_q.models import Task

    for _ in range(10):
        try:
            Task.objects.all().delete()
            return
        except OperationalError:  # a deadlock with the monitor's own prune: try again
            time.sleep(0.2)
    raise RuntimeError("could not clear django-q2's saved results (deadlocks with the monitor)")


def sandbox_template(bench: Bench) -> str:
    """The XMLData the provider sends for a real posting (the floor sends it too)."""
    from integrations.models import Posting

    posting = Posting.objects.filter(connection=bench.platform.connection).first()
    return bench.platform.connection.get_provider().payment_document(posting)


def take_phase(bench: Bench, args, label: str, connection) -> dict:
    """Payments taken back to back for --take-seconds: rate, connections opened, waits."""
    from django.db.backends.signals import connection_created

    opened = Counter()

    def count(sender, connection, **kwargs):
        opened[connection.alias] += 1

    connection_created.connect(count, weak=False)
    sampler = WaitSampler(connection) if args.waits and connection.vendor == "postgresql" else None
    profiler = cProfile.Profile() if args.profile and label == "running" else None
    ids = []
    if sampler:
        sampler.start()
    if profiler:
        profiler.enable()
    cpu_before = c.cpu_by_role(bench.groups)
    start = time.monotonic()
    while time.monotonic() - start < args.take_seconds:
        ids.append(bench.take().pk)
    elapsed = time.monotonic() - start
    cpu = c.cpu_shares(cpu_before, c.cpu_by_role(bench.groups), elapsed)
    if profiler:
        profiler.disable()
        stem = f"take-{args.child.replace(':', '-')}"
        title = f"{len(ids)} payments taken while the workers ran"
        c.write_profile(profiler, args.profile, stem, title)
    if sampler:
        sampler.stop()
    connection_created.disconnect(count)
    return {
        "n": len(ids),
        "rate": len(ids) / elapsed,
        "connections_opened": sum(opened.values()),
        "cpu": cpu,
        "waits": sampler.summary() if sampler else {},
        "backends_seen": len(sampler.pids) if sampler else 0,
        "lock_waits": dict(sampler.lock_queries.most_common(4)) if sampler else {},
    }


class WaitSampler(threading.Thread):
    """pg_stat_activity of the bench database every 5 ms: what its active sessions wait for,
    and how many distinct backends (one per connection ever opened) appear."""

    def __init__(self, connection):
        super().__init__(daemon=True)
        import psycopg

        sd = connection.settings_dict
        self.dbname = sd["NAME"]
        self.conn = psycopg.connect(
            host=sd["HOST"] or "127.0.0.1",
            port=sd["PORT"] or 5432,
            user=sd["USER"],
            dbname=sd["NAME"],
            autocommit=True,
        )
        self.samples = 0
        self.waits: Counter = Counter()
        self.lock_queries: Counter = Counter()
        self.pids: set[int] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT a.pid, a.state, coalesce(a.wait_event_type, 'CPU'), "
            "coalesce(a.wait_event, ''), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90), "
            "CASE WHEN a.wait_event_type = 'Lock' THEN (SELECT left(regexp_replace(b.query, "
            "'\\s+', ' ', 'g'), 150) FROM pg_stat_activity b "
            "WHERE b.pid = ANY(pg_blocking_pids(a.pid)) LIMIT 1) END "
            "FROM pg_stat_activity a WHERE a.datname = %s AND a.pid <> pg_backend_pid()"
        )
        while not self._stop_event.is_set():
            self.samples += 1
            rows = self.conn.execute(query, (self.dbname,)).fetchall()
            for pid, state, kind, event, text, blocker in rows:
                self.pids.add(pid)
                if state == "active":
                    self.waits[f"{kind}:{event}" if event else kind] += 1
                    if kind == "Lock":  # who waits for a lock, and the statement holding it
                        self.lock_queries[f"{text} <- held by: {blocker}"] += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.conn.close()

    def summary(self) -> dict[str, float]:
        """Per wait, the share of samples in which an active session was waiting on it."""
        return {k: round(v / max(self.samples, 1), 3) for k, v in self.waits.most_common(6)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], help="with --broker: one config")
    parser.add_argument("--broker", choices=["orm", "redis"], default="orm")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20, help="steady payments per second")
    parser.add_argument("--seconds", type=float, default=30, help="steady phase length")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument(
        "--pairs", type=int, default=3, help="floor + burst pairs (the median ratio reported)"
    )
    parser.add_argument("--take-seconds", type=float, default=10)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds eSite takes per AddPayment (0: none)"
    )
    c.experiment_args(parser)
    parser.add_argument("--quick", action="store_true", help="ORM/SQLite, small sizes (CI)")
    parser.add_argument("--profile", default="", help="folder for a cProfile of taking")
    parser.add_argument(
        "--waits",
        action="store_true",
        help="PostgreSQL: sample what sessions wait on (pg_stat_activity every 5 ms: it costs "
        "the machine CPU, so the rates of such a run are lower)",
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL server (else local)")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.seconds, args.burst, args.take_seconds, args.pairs = 2, 3, 20, 1.5, 1
    if args.child:
        try:
            print(json.dumps(child(args.child, args)))
        except ClusterDidNotStart as err:
            print(f"CLUSTER DID NOT START: {err}", file=sys.stderr)
            return CLUSTER_DID_NOT_START
        return 0
    if args.db:
        if args.db == "sqlite" and args.broker == "redis":
            parser.error("the Redis broker is measured on PostgreSQL only")
        configs = [f"{args.db}:{args.broker}"]
    else:
        configs = ["sqlite:orm"] if args.quick else list(CONFIGS)
    print(
        c.header(
            "bench/worker.py",
            workers=args.workers,
            steady=f"{args.rate:g}/s for {args.seconds:g} s",
            burst=f"{args.burst} payments, beside {args.pairs} floor(s): the median pair shown",
            taking=f"{args.take_seconds:g} s",
            latency=f"{args.latency * 1000:g} ms per AddPayment" if args.latency else "none",
            experiment=_experiment(args),
            quick=args.quick,
        ),
        flush=True,
    )
    print()
    code, results = 0, []
    for config in configs:
        cmd = [c.PYTHON, __file__, "--child", config] + _passed(args)
        done = subprocess.run(cmd, cwd=c.ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{config}: FAILED (exit {done.returncode})\n{done.stderr[-4000:]}")
            code = code or done.returncode
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(report(results, args.quick))
    print(c.footer())
    return code


def _passed(args) -> list[str]:
    out = []
    for name in ("workers", "rate", "seconds", "burst", "pairs", "take_seconds", "latency"):
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.conn_max_age is not None:
        out += ["--conn-max-age", str(args.conn_max_age)]
    for item in args.q_option:
        out += ["--q-option", item]
    if args.waits:
        out.append("--waits")
    for name in ("profile", "database_url", "redis_url"):
        if getattr(args, name):
            out += [f"--{name.replace('_', '-')}", getattr(args, name)]
    return out


def _experiment(args) -> str:
    parts = [f"Q_CLUSTER {item}" for item in args.q_option]
    if args.conn_max_age is not None:
        parts.append(f"DB_CONN_MAX_AGE={args.conn_max_age}")
    for name, value in sorted(os.environ.items()):
        if name.startswith("INTEGRATIONS_DRAIN"):
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "none (the platform's settings)"


if __name__ == "__main__":
    sys.exit(main())
