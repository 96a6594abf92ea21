"""Benchmark: settling many eSite batches against a distant eSite (issue 12 item 4).

    .venv/bin/python bench/settle.py                          # 200 batches, 150 ms a call
    .venv/bin/python bench/settle.py --batches 1000 --concurrency 8 --db postgres
    .venv/bin/python bench/settle.py --quick                  # CI: 12 batches, no verdict

One child process per concurrency level: a fresh database and sandbox, the demo property
imported, ``--batches`` payments on as many days (one payments batch each) posted in process,
then every UpdateSettlementData answered ``--latency`` seconds late (the sandbox's latency
fault on every call, as a distant eSite) and ``close_due_batches`` timed once, with the
connection's ``settle_concurrency`` set to the level. Printed: the time, batches per second,
the projection for 1,000 batches, and a check that every eSite batch was settled exactly once
at its total (the sandbox's ledger against our links). Target: 1,000 batches <= 30 s at
150 ms (one by one they take 150 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import _common as c

TARGET_SECONDS_PER_1000 = 30.0


def child(db: str, batches: int, concurrency: int, latency: float, database_url: str) -> dict:
    with c.child_world(db, database_url, "settle", DEBUG="0") as sandbox:
        return _run(sandbox, batches, concurrency, latency)


def _run(sandbox, batches: int, concurrency: int, latency: float) -> dict:
    from django.conf import settings

    from integrations import outbox
    from integrations.models import Posting, PostingState
    from integrations_amsi.batches import close_due_batches
    from integrations_amsi.models import AmsiBatchLink
    from integrations_amsi.sandbox.testing import SandboxControl
    from rentplatform import services
    from rentplatform.models import PaymentMethod
    from tests.faults.harness import Platform

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    platform = Platform(sandbox)
    platform.import_property()
    leases = platform.payable(PaymentMethod.CARD)
    tz = platform.property.tz
    first = dt.date.today() - dt.timedelta(days=batches + 10)
    for n in range(batches):
        when = dt.datetime.combine(first + dt.timedelta(days=n), dt.time(12), tzinfo=tz)
        payment = services.accept_payment(
            leases[n % len(leases)], Decimal("100.00") + n % 97, PaymentMethod.CARD, now=when
        )
        outbox.deliver(Posting.objects.get(payment=payment).pk)
    unposted = Posting.objects.exclude(state=PostingState.POSTED).count()
    assert unposted == 0, f"{unposted} postings not posted"
    connection = platform.connection
    connection.settings["settle_concurrency"] = concurrency
    connection.save(update_fields=["settings"])
    control = SandboxControl(sandbox.base_url)
    control.add_fault("latency", "UpdateSettlementData", seconds=latency, ratio=1.0)
    provider = connection.get_provider()
    started = time.perf_counter()
    lines = close_due_batches(provider, now=dt.datetime.now(tz) + dt.timedelta(days=1))
    seconds = time.perf_counter() - started
    ledger = {b["client_jnl_no"]: b for b in control.ledger()}
    calls = sum(f["fired"] for f in control.faults())
    control.close()
    settled = [jnl for jnl, b in ledger.items() if b["settled"]]
    wrong = [
        link.client_jnl_no
        for link in AmsiBatchLink.objects.filter(connection=connection)
        if link.settled_amount is None
        or Decimal(ledger[link.client_jnl_no]["settled_amount"]) != link.settled_amount
    ]
    return {
        "vendor": connection_vendor(),
        "batches": batches,
        "concurrency": concurrency,
        "seconds": seconds,
        "settled": len(settled),
        "calls": calls,
        "wrong": len(wrong),
        "lines": len(lines),
    }


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per eSite call")
    parser.add_argument("--quick", action="store_true", help="12 batches, levels 1 and 4")
    parser.add_argument("--database-url", default="", help="PostgreSQL server (else local)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.concurrency, args.latency = 12, [1, 4], 0.05
    if args.child is not None:
        result = child(args.db, args.batches, args.child, args.latency, args.database_url)
        print("RESULT " + json.dumps(result))
        return 0
    print(
        c.header(
            "bench/settle.py",
            database=args.db,
            batches=args.batches,
            latency=f"{args.latency * 1000:g} ms per UpdateSettlementData",
            quick=args.quick,
        )
    )
    rows, failed = [], False
    for level in args.concurrency:
        cmd = [sys.executable, __file__, *_pass_on(args), "--child", str(level)]
        done = subprocess.run(cmd, cwd=c.ROOT, capture_output=True, text=True, env=os.environ)
        found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not found:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            failed = True
            continue
        r = json.loads(found[-1][len("RESULT ") :])
        per_1000 = r["seconds"] / r["batches"] * 1000
        verdict = "" if args.quick else _verdict(per_1000)
        exact = r["settled"] == r["batches"] == r["calls"] and r["wrong"] == 0
        failed |= not exact
        rows.append(
            [
                "sqlite" if r["vendor"] == "sqlite" else "postgres",
                level,
                r["batches"],
                f"{r['seconds']:.2f}",
                f"{r['batches'] / r['seconds']:.1f}",
                f"{per_1000:.1f}",
                verdict,
                f"{r['settled']} settled, {r['calls']} calls, {r['wrong']} wrong"
                + ("" if exact else ": NOT EXACT"),
            ]
        )
    print(
        c.table(
            [
                "db",
                "concurrency",
                "batches",
                "settling s",
                "batches/s",
                "s per 1,000 (projected)",
                "target <= 30 s",
                "exactly once",
            ],
            rows,
        )
    )
    print(c.footer())
    return 1 if failed else 0


def _pass_on(args) -> list[str]:
    out = ["--db", args.db, "--batches", str(args.batches), "--latency", str(args.latency)]
    if args.database_url:
        out += ["--database-url", args.database_url]
    return out


def _verdict(per_1000: float) -> str:
    return "met" if per_1000 <= TARGET_SECONDS_PER_1000 else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
