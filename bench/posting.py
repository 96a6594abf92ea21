"""Benchmark: what one payment costs from "taken" to "posted", beside a bare zeep call.

    .venv/bin/python bench/posting.py                      # SQLite and PostgreSQL, 200 rounds
    .venv/bin/python bench/posting.py --db postgres --rounds 500
    .venv/bin/python bench/posting.py --profile var/bench  # + cProfile of paths b and c
    .venv/bin/python bench/posting.py --quick              # 10 rounds on SQLite (CI, untimed)
    .venv/bin/python bench/posting.py --q-option save_limit=-1 --conn-max-age 60  # experiment

Five paths per payment, run one after the other in each round (the order rotates every
round, so drift in the machine's load falls on all of them alike):

- ``bare``: a bare zeep AddPayment with the same XMLData against the same sandbox
  (bench/_bare.py): the floor.
- ``in-process``: ``services.accept_payment`` (payment, posting and their commit; no task
  queued, DELIVERY=manual), then ``outbox.deliver`` of its posting in this process (claim,
  AddPayment, landing, commit): posted.
- ``task``: ``accept_payment`` with DELIVERY=sync: the posting's django-q2 task runs in this
  process through django-q2's sync path (pickled, signed, run by ``django_q.worker``, its
  result saved by ``django_q.monitor``) after the payment's commit: posted.
- ``bare + two commits``: the floor of what the issue calls the unavoidable work: a claim
  (one conditional UPDATE of a posting-like row and its attempt row's INSERT) committed, the
  bare call, and a finish (the posting, its attempt and a landing row) committed, written by
  hand in scratch tables: one statement each on PostgreSQL (data-modifying CTEs), a short
  transaction each on SQLite (which has no such CTE). No taking of the payment, no ORM.
- ``bare in a sync task``: the task path's own floor: the bare call as a django-q2 task
  through the same sync path (``async_task(..., sync=True)``), with no posting and no
  database: what django-q2's simulation of the cluster costs on its own.

Each database runs in its own child process (fresh database, sandbox process with the demo
portfolio, a property imported). Min and median per path and the difference to ``bare``.
Targets: in-process within 3 ms of bare, task within 5 ms, on both databases.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import _bare  # bench/ is the script's folder, so first on sys.path
import _common as c

PATHS = ("bare", "in-process", "task", "bare + two commits", "bare in a sync task")
TARGETS = {"in-process": 3.0, "task": 5.0}  # ms over bare


def child(kind: str, rounds: int, profile_dir: str, database_url: str, env: dict) -> dict:
    from tests.faults.harness import TIMINGS

    with c.child_world(kind, database_url, "posting", DEBUG="0", **TIMINGS, **env) as sandbox:
        return _measure(kind, sandbox, rounds, profile_dir)


def _measure(kind: str, sandbox, rounds: int, profile_dir: str) -> dict:
    from django.conf import settings
    from django.db import connection

    from integrations import outbox
    from integrations.models import Posting, PostingState
    from rentplatform import services
    from tests.faults.harness import Platform

    platform = Platform(sandbox)
    platform.import_property()
    lease = platform.payable("card")[0]
    provider = platform.connection.get_provider()
    base = sandbox.base_url
    amount = Decimal("123.45")

    def delivery(mode: str) -> None:
        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": mode}

    # The bare call's XMLData: what the provider sends for a real posting of this lease.
    delivery("manual")
    first = services.accept_payment(lease, amount, "card")
    template = provider.payment_document(Posting.objects.get(payment=first))
    ids = iter(range(_bare.FLOOR_IDS, _bare.FLOOR_IDS + 10 * rounds + 1000))
    reply = _bare.add_payment(base, _bare.with_transaction_id(template, next(ids)))
    assert 'ErrorCode="0"' in reply or "<ErrorCode>0<" in reply or "Success" in reply, reply[:300]

    def bare() -> tuple[float, float]:
        xml = _bare.with_transaction_id(template, next(ids))
        t0 = time.perf_counter()
        _bare.add_payment(base, xml)
        return time.perf_counter() - t0, 0.0

    phases = _time_phases(provider)

    def in_process() -> tuple[float, float]:
        delivery("manual")
        phases.on = True
        t0 = time.perf_counter()
        payment = services.accept_payment(lease, amount, "card")
        taken = time.perf_counter() - t0
        posting_id = Posting.objects.filter(payment=payment).values_list("pk", flat=True)[0]
        t1 = time.perf_counter()
        state = outbox.deliver(posting_id)
        delivered = time.perf_counter() - t1
        phases.on = False
        phases.add("accept_payment", taken)
        phases.add("deliver (claim + call + finish + the rest)", delivered)
        assert state == PostingState.POSTED, state
        return taken + delivered, taken

    def task() -> tuple[float, float]:
        delivery("sync")
        t0 = time.perf_counter()
        payment = services.accept_payment(lease, amount, "card")
        elapsed = time.perf_counter() - t0
        state = Posting.objects.filter(payment=payment).values_list("state", flat=True)[0]
        assert state == PostingState.POSTED, state
        return elapsed, 0.0

    floor = _TwoCommits(connection, rows=rounds * (2 if profile_dir else 1) + 20)

    def two_commits() -> tuple[float, float]:
        xml = _bare.with_transaction_id(template, next(ids))
        t0 = time.perf_counter()
        floor.claim()
        _bare.add_payment(base, xml)
        floor.finish(amount)
        return time.perf_counter() - t0, 0.0

    # The task path's own floor: the bare call as a django-q2 task through the same sync path
    # (queues, signing, the worker loop, the result), with no posting and no database.
    from django_q.tasks import async_task

    sync_out = Path(tempfile.gettempdir()) / f"bench-posting-sync-{os.getpid()}.txt"

    def bare_task() -> tuple[float, float]:
        t0 = time.perf_counter()
        async_task("bench._bare.floor_task", base, template, next(ids), str(sync_out), sync=True)
        return time.perf_counter() - t0, 0.0

    run = {
        "bare": bare,
        "in-process": in_process,
        "task": task,
        "bare + two commits": two_commits,
        "bare in a sync task": bare_task,
    }
    for _ in range(5):  # warm-up: WSDLs, connections, caches
        for name in PATHS:
            run[name]()
    phases.times.clear()
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    taking: list[float] = []
    for r in range(rounds):
        k = r % len(PATHS)
        for name in PATHS[k:] + PATHS[:k]:
            seconds, taken = run[name]()
            times[name].append(seconds)
            if name == "in-process":
                taking.append(taken)
    counts = {name: _count(run[name], connection, profile_dir, kind, name) for name in PATHS}
    result = {
        "counts": counts,
        "db": kind,
        "vendor": connection.vendor,
        "rounds": rounds,
        "paths": {
            name: {"min": min(v), "median": c.median(v), "p95": c.percentile(v, 95)}
            for name, v in times.items()
        },
        "accept_median": c.median(taking),
        "phases": {name: [min(v), c.median(v)] for name, v in phases.times.items()},
    }
    if profile_dir:
        result["profiles"] = _profile(kind, run, max(rounds // 2, 20), profile_dir)
    return result


class _TwoCommits:
    """The two commits by hand, on scratch tables shaped like the posting, its attempt and its
    landing (``bench_floor_*``, in the bench's own database): the least a claim and a finish
    can cost on this database, with no ORM, no payment taken and no decision in Python."""

    def __init__(self, connection, rows: int):
        self.connection = connection
        self.pg = connection.vendor == "postgresql"
        serial = "BIGSERIAL PRIMARY KEY" if self.pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
        stamp = "TIMESTAMPTZ" if self.pg else "TEXT"
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE bench_floor_posting (id {serial}, state VARCHAR(16), "
                f"attempts INTEGER, claimed_until {stamp}, updated_at {stamp}, "
                "payload VARCHAR(200))"
            )
            cursor.execute(
                f"CREATE TABLE bench_floor_attempt (id {serial}, posting_id BIGINT "
                f"REFERENCES bench_floor_posting (id), number INTEGER, started_at {stamp}, "
                f"finished_at {stamp}, outcome VARCHAR(20), UNIQUE (posting_id, number))"
            )
            cursor.execute(
                f"CREATE TABLE bench_floor_entry (id {serial}, posting_id BIGINT UNIQUE "
                f"REFERENCES bench_floor_posting (id), amount DECIMAL(12, 2), "
                f"recorded_at {stamp})"
            )
            for _ in range(rows):
                cursor.execute(
                    "INSERT INTO bench_floor_posting (state, attempts, payload) "
                    "VALUES ('pending', 0, %s)",
                    ["x" * 200],
                )
            cursor.execute("SELECT id FROM bench_floor_posting ORDER BY id")
            self.ids = iter([row[0] for row in cursor.fetchall()])
        self.posting = self.attempt = None

    def claim(self) -> None:
        from django.db import transaction
        from django.utils import timezone

        self.posting, now = next(self.ids), timezone.now()
        until = now + dt.timedelta(minutes=5)
        with self.connection.cursor() as cursor:
            if self.pg:
                cursor.execute(
                    "WITH c AS (UPDATE bench_floor_posting SET state = 'in_flight', "
                    "attempts = attempts + 1, claimed_until = %s, updated_at = %s "
                    "WHERE id = %s AND state = 'pending' RETURNING id, attempts) "
                    "INSERT INTO bench_floor_attempt (posting_id, number, started_at) "
                    "SELECT id, attempts, %s FROM c RETURNING id",
                    [until, now, self.posting, now],
                )
                self.attempt = cursor.fetchone()[0]
                return
            with transaction.atomic():
                cursor.execute(
                    "UPDATE bench_floor_posting SET state = 'in_flight', attempts = attempts "
                    "+ 1, claimed_until = %s, updated_at = %s WHERE id = %s AND state = "
                    "'pending'",
                    [until, now, self.posting],
                )
                cursor.execute(
                    "INSERT INTO bench_floor_attempt (posting_id, number, started_at) "
                    "VALUES (%s, 1, %s)",
                    [self.posting, now],
                )
                self.attempt = cursor.lastrowid

    def finish(self, amount) -> None:
        from django.db import transaction
        from django.utils import timezone

        now = timezone.now()
        with self.connection.cursor() as cursor:
            if self.pg:
                cursor.execute(
                    "WITH u AS (UPDATE bench_floor_posting SET state = 'posted', "
                    "claimed_until = NULL, updated_at = %s WHERE id = %s AND state = "
                    "'in_flight' RETURNING id), a AS (UPDATE bench_floor_attempt SET "
                    "finished_at = %s, outcome = 'posted' WHERE id = %s AND EXISTS "
                    "(SELECT 1 FROM u)) INSERT INTO bench_floor_entry (posting_id, amount, "
                    "recorded_at) SELECT id, %s, %s FROM u ON CONFLICT (posting_id) DO UPDATE "
                    "SET amount = EXCLUDED.amount, recorded_at = EXCLUDED.recorded_at",
                    [now, self.posting, now, self.attempt, amount, now],
                )
                return
            with transaction.atomic():
                cursor.execute(
                    "UPDATE bench_floor_posting SET state = 'posted', claimed_until = NULL, "
                    "updated_at = %s WHERE id = %s AND state = 'in_flight'",
                    [now, self.posting],
                )
                cursor.execute(
                    "UPDATE bench_floor_attempt SET finished_at = %s, outcome = 'posted' "
                    "WHERE id = %s",
                    [now, self.attempt],
                )
                cursor.execute(
                    "INSERT INTO bench_floor_entry (posting_id, amount, recorded_at) VALUES "
                    "(%s, %s, %s) ON CONFLICT (posting_id) DO UPDATE SET amount = "
                    "excluded.amount, recorded_at = excluded.recorded_at",
                    [self.posting, str(amount), now],
                )


class _Phases:
    """Times of the in-process path's parts (claim, the provider's call, finish), taken by
    wrapping the functions ``outbox.deliver`` calls; recorded only while ``on``."""

    def __init__(self):
        self.on = False
        self.times: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def wrap(self, owner, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if self.on:
                    self.add(name, time.perf_counter() - t0)

        setattr(owner, attr, timed)


PHASES = [
    "accept_payment",
    "deliver (claim + call + finish + the rest)",
    "  claim",
    "  provider call (AddPayment, its document, reply)",
    "  finish (outcome, landing)",
]


def _time_phases(provider) -> _Phases:
    from integrations.outbox import _delivery

    phases = _Phases()
    phases.wrap(_delivery, "claim", PHASES[2])
    phases.wrap(type(provider), "deliver", PHASES[3])
    phases.wrap(_delivery, "_finish", PHASES[4])
    return phases


def _count(path, connection, profile_dir: str = "", kind: str = "", name: str = "") -> dict:
    """SQL statements, commits and database connections opened by one more payment through
    ``path`` (with a profile folder, the statements are written there too)."""
    from django.db.backends.signals import connection_created
    from django.test.utils import CaptureQueriesContext

    opened = []

    def note(sender, connection, **kwargs):
        opened.append(connection.alias)

    connection_created.connect(note, weak=False)
    try:
        with CaptureQueriesContext(connection) as ctx:
            path()
    finally:
        connection_created.disconnect(note)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        sql = "\n".join(q["sql"][:300] for q in ctx.captured_queries)
        (Path(profile_dir) / f"posting-{kind}-{name}-sql.txt").write_text(sql + "\n")
    return {
        "queries": len(ctx.captured_queries),
        "commits": _commits(q["sql"] for q in ctx.captured_queries),
        "connects": len(opened),
    }


WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")


def _commits(statements) -> int:
    """Commits among captured statements: each COMMIT, and each write run outside a
    transaction (autocommit: the claim's one conditional statement is its own commit)."""
    commits, open_ = 0, False
    for sql in statements:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            open_ = True
        elif word in ("COMMIT", "ROLLBACK"):
            commits += word == "COMMIT"
            open_ = False
        elif word in WRITES and not open_:
            commits += 1
    return commits


def _profile(kind: str, run: dict, n: int, profile_dir: str) -> dict[str, str]:
    """cProfile of n payments through each platform path: where the stats were written."""
    written = {}
    for name in ("in-process", "task"):
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            run[name]()
        profiler.disable()
        title = f"{n} payments, path {name}, {kind}"
        written[name] = c.write_profile(profiler, profile_dir, f"posting-{kind}-{name}", title)
    return written


def _over(r: dict, path: str, floor: str) -> str:
    """``path`` over ``floor`` in one child's result: "+min / +median ms"."""
    p, f = r["paths"][path], r["paths"][floor]
    return f"{(p['min'] - f['min']) * 1000:+.1f} / {(p['median'] - f['median']) * 1000:+.1f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10 rounds on SQLite, no verdict")
    parser.add_argument("--profile", default="", help="folder for cProfile stats of b and c")
    parser.add_argument("--database-url", default="", help="PostgreSQL server (else local)")
    c.experiment_args(parser)
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 10
        if args.db == "both":
            args.db = "sqlite"
    if args.child:
        env = c.experiment_env(args.q_option, args.conn_max_age)
        result = child(args.child, args.rounds, args.profile, args.database_url, env)
        print(json.dumps(result))
        return 0
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    experiment = [f"Q_CLUSTER {item}" for item in args.q_option]
    if args.conn_max_age is not None:
        experiment.append(f"DB_CONN_MAX_AGE={args.conn_max_age}")
    print(
        c.header(
            "bench/posting.py",
            rounds=args.rounds,
            quick=args.quick,
            experiment=", ".join(experiment) or "none (the platform's settings)",
        ),
        flush=True,
    )
    print()
    rows, phase_rows, failed, missed = [], [], False, []
    over_floors: list[str] = []
    for db in dbs:
        cmd = [c.PYTHON, __file__, "--child", db, "--rounds", str(args.rounds)]
        if args.profile:
            cmd += ["--profile", args.profile]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        if args.conn_max_age is not None:
            cmd += ["--conn-max-age", str(args.conn_max_age)]
        for item in args.q_option:
            cmd += ["--q-option", item]
        done = subprocess.run(cmd, cwd=c.ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{db}: FAILED\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            failed = True
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        bare = r["paths"]["bare"]
        for name in PATHS:
            p = r["paths"][name]
            extra_min = (p["min"] - bare["min"]) * 1000
            extra_med = (p["median"] - bare["median"]) * 1000
            verdict = ""
            if name in TARGETS and not args.quick:
                ok = extra_med <= TARGETS[name]
                verdict = f"<= {TARGETS[name]:g} ms: {'met' if ok else 'MISSED'}"
                if not ok:
                    missed.append(f"{db} {name}")
            n = r["counts"][name]
            rows.append(
                [db, name, c.ms(p["min"]), c.ms(p["median"]), c.ms(p["p95"]),
                 "" if name == "bare" else f"{extra_min:+.1f}",
                 "" if name == "bare" else f"{extra_med:+.1f}", verdict,
                 f"{n['queries']} / {n['commits']} / {n['connects']}"]
            )  # fmt: skip
        rows.append(["", "(accept_payment alone)", "", c.ms(r["accept_median"])] + [""] * 5)
        over_floors.append(
            f"{db}: task over its own floor (the bare call in a sync task): "
            f"{_over(r, 'task', 'bare in a sync task')}; in-process over the two commits by "
            f"hand: {_over(r, 'in-process', 'bare + two commits')} (min / median)"
        )
        for name, path in r.get("profiles", {}).items():
            print(f"{db}: profile of path {name}: {path}")
        for name in PHASES:
            if name not in r.get("phases", {}):
                continue
            low, mid = r["phases"][name]
            phase_rows.append([db, name, c.ms(low), c.ms(mid)])
    headings = ["db", "path", "min ms", "median ms", "p95 ms", "min - bare", "median - bare"]
    headings += ["target", "SQL statements / commits / connections opened per payment"]
    print(c.table(headings, rows))
    for line in over_floors:
        print(line)
    print()
    print("The in-process path in parts (each part's own min and median):")
    print(c.table(["db", "part", "min ms", "median ms"], phase_rows))
    print(c.footer())
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
