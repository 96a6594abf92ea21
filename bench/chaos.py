"""Soak test: many payments and reversals through a real django-q2 cluster into the AMSI sandbox
while random faults fire; then compare the sandbox's ledger with ours, batch by batch.

    python bench/chaos.py                                   # 2,000 payments, 200 reversals
    python bench/chaos.py --payments 500 --reversals 50 --fault-rate 0.3 --workers 4
    python bench/chaos.py --short                           # 60 / 8: what CI runs
    python bench/chaos.py --quick                           # 12 / 4, no disruptions (CI, fast)
    python bench/chaos.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    python bench/chaos.py --short --variant duplicates=accept   # the person settles unknowns

A fresh database every run: a SQLite file in a temporary folder by default; with a PostgreSQL
URL, a new database ``chaos_<time>_<pid>`` on that server (dropped afterwards). The sandbox runs
as its own process with the demo portfolio (or ``--portfolio DIR`` from amsi_sandbox_seed), the
cluster as ``manage.py qcluster``. Faults (lost reply after the write, slow writes past the
client's timeout, HTTP 500, resets, malformed replies) fire at ``--fault-rate`` on every SOAP
call, split evenly across the modes; midway the sandbox process is killed and restarted and one
worker is killed with SIGKILL. Then the script waits until every posting is posted or needs
attention, closes the day's batches (as of tomorrow noon, faults still on), prints the tally
table and one summary line (``FAULTS chaos ...``), and exits 1 on any difference.

``--variant NAME=VALUE`` (repeatable) is passed to the sandbox (``amsi_sandbox --variant``).
Under ``duplicates=refuse`` (the default) the connection checks payments' unknown outcomes
unattended (the operator's "duplicates refused" confirmation: re-send, eSite's refusal of the
repeat proves it landed); a reversal's waits for the person, played here as below. Under
``duplicates=accept`` a repeat would be booked twice, so no operator would confirm that:
unknown outcomes leave postings "unconfirmed" and the script plays the person, who looks each
one up in the sandbox's ledger once no slow write can still land, and says "found" (with its
receipt) or "not there, post it".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import _common as c  # bench/ is the script's folder, so first on sys.path

MODES = ("lost_reply", "latency", "http500", "reset", "malformed")
LATENCY_SECONDS = 1.5  # a slow write: past the client's timeout, lands while it is unconfirmed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--reversals", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of SOAP calls hit")
    parser.add_argument("--workers", type=int, default=2, help="django-q2 workers")
    parser.add_argument("--short", action="store_true", help="60 payments, 8 reversals (CI)")
    parser.add_argument(
        "--quick", action="store_true", help="12 payments, 4 reversals, no disruptions (CI)"
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use")
    parser.add_argument("--portfolio", default="demo", help="'demo' or an amsi_sandbox_seed dir")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--timeout", type=float, default=0, help="seconds to wait for postings")
    parser.add_argument("--no-disruptions", action="store_true", help="no restart, no SIGKILL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a sandbox variant (repeatable), e.g. duplicates=accept (see amsi_sandbox --help)",
    )
    args = parser.parse_args(argv)
    args.variants = {}
    for item in args.variant:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--variant takes NAME=VALUE, got {item!r}")
        args.variants[name.strip()] = value.strip()
    if args.short:
        args.payments, args.reversals = 60, 8
    if args.quick:
        args.payments, args.reversals, args.no_disruptions = 12, 4, True
    if not args.timeout:
        args.timeout = 90 + 0.25 * (args.payments + args.reversals) * 2 / max(args.workers, 1)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    db_url, drop = c.fresh_database(args.database_url, workdir, prefix="chaos")

    from tests.faults.harness import TIMINGS

    os.environ.update(TIMINGS)
    os.environ.update(
        {
            "DATABASE_URL": db_url,
            "RENTPLATFORM_VAR_DIR": str(workdir),
            "DJANGO_SETTINGS_MODULE": "rentplatform.settings",
            "LOG_LEVEL": "ERROR",
            "INTEGRATIONS_LOG_LEVEL": "ERROR",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from tests.faults.harness import Cluster, Platform, SandboxProcess

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async"}
    started = time.monotonic()
    print(
        c.header(
            "bench/chaos.py",
            payments=args.payments,
            reversals=args.reversals,
            fault_rate=args.fault_rate,
            workers=args.workers,
            disruptions=not args.no_disruptions,
        ),
        flush=True,
    )
    print(f"chaos: database {db_url.rsplit('@', 1)[-1]}, work folder {workdir}", flush=True)
    call_command("migrate", verbosity=0)

    sandbox = SandboxProcess(workdir, db_url, seed=args.portfolio, variants=args.variants)
    cluster = Cluster(workdir, db_url, name="chaos", workers=args.workers)
    code = 1
    try:
        sandbox.start()
        running = sandbox.running_variants()
        # Automatic checking only where eSite refuses a repeat, and for payments only (a
        # reversal is never re-sent unattended); otherwise a person (played here).
        platform = Platform(sandbox, max_write_delay=LATENCY_SECONDS)
        who = (
            "automatic checking (payments) and a person (this script: reversals)"
            if platform.automatic
            else "a person (this script)"
        )
        variants = " ".join(f"{k}={v}" for k, v in sorted(running.items()))
        print(f"chaos: sandbox variants {variants}; unknown outcomes settled by {who}", flush=True)
        platform.import_property()
        rng = random.Random(args.seed)

        def add_faults(round_: int) -> None:
            if args.fault_rate <= 0:
                return
            share = args.fault_rate / len(MODES)
            for i, mode in enumerate(MODES):
                options = {"seconds": LATENCY_SECONDS} if mode == "latency" else {}
                sandbox.add_fault(
                    mode, "*", ratio=share, seed=args.seed + 10 * round_ + i, **options
                )

        add_faults(0)
        cluster.start()
        half = args.payments // 2
        platform.pay(half, rng=rng)
        print(f"chaos: {half} payments taken ({time.monotonic() - started:.0f} s)", flush=True)
        if not args.no_disruptions:
            disrupt(platform, cluster, sandbox)
            add_faults(1)
        platform.pay(args.payments - half, rng=rng)
        # The cutoff settles the day's eSite batches before the reversals: each return then
        # names a settled batch (eSite's own batch under return_batch=separate, the original
        # reopened under return_batch=original). Reversals into open batches: tests/faults.
        platform.wait_until_done(timeout=args.timeout)
        platform.close_batches(rounds=20)
        print(f"chaos: cutoff: batches settled ({time.monotonic() - started:.0f} s)", flush=True)
        platform.reverse(args.reversals, rng=rng)
        print(
            f"chaos: {len(platform.payments)} payments, {len(platform.reversals)} reversals "
            f"taken ({time.monotonic() - started:.0f} s); waiting for the postings",
            flush=True,
        )
        platform.wait_until_done(timeout=args.timeout)
        platform.close_batches(rounds=20)
        sandbox.note_fired()
        tally = platform.tally("chaos")
        print(tally.table())
        print(
            f"chaos: {args.payments} payments / {args.reversals} reversals asked, fault rate "
            f"{args.fault_rate:g}, {args.workers} workers, {connections['default'].vendor}, "
            f"{time.monotonic() - started:.0f} s"
        )
        if platform.person_log:
            found = sum(what.startswith("found") for _, what in platform.person_log)
            print(
                f"chaos: the person looked at {len(platform.person_log)} unconfirmed posting(s): "
                f"{found} found in the ledger, {len(platform.person_log) - found} not there "
                "(posted)"
            )
        print(tally.line(), flush=True)
        print(c.footer(), flush=True)
        code = 0 if tally.ok and tally.payments == args.payments else 1
    except Exception as err:  # noqa: BLE001  (say what broke, then clean up)
        print(f"chaos: FAILED: {type(err).__name__}: {err}", flush=True)
        print(cluster.log_tail(), flush=True)
    finally:
        cluster.stop()
        sandbox.kill()
        connections.close_all()
        if drop:
            with contextlib.suppress(Exception):
                c.drop_database(db_url, drop)
        if args.keep:
            print(f"chaos: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def disrupt(platform, cluster, sandbox) -> None:
    """Midway: kill a worker in the middle of a posting, then kill and restart the sandbox."""
    from integrations.models import PostingAttempt

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        attempt = PostingAttempt.objects.filter(finished_at__isnull=True).first()
        if attempt is not None:
            pid = int(attempt.worker.rsplit(":", 1)[1])
            if cluster.owns(pid):
                os.kill(pid, signal.SIGKILL)
                print(f"chaos: killed worker {pid} during posting {attempt.posting_id}")
                break
        time.sleep(0.01)
    sandbox.kill()
    time.sleep(1)
    sandbox.start()
    print("chaos: sandbox killed and restarted", flush=True)


if __name__ == "__main__":
    sys.exit(main())
