"""Benchmark: import N leases from the AMSI sandbox, then an unchanged re-import.

Run by hand; CI runs ``--quick`` untimed (tests/test_benches.py) so it keeps working::

    .venv/bin/python bench/import.py                      # 10,000 and 100,000 leases
    .venv/bin/python bench/import.py --leases 10000       # just one size
    .venv/bin/python bench/import.py --leases 10000 --profile var/import.prof
    .venv/bin/python bench/import.py --quick              # 200 leases, untimed (CI)
    .venv/bin/python bench/import.py --database postgres  # PostgreSQL (sqlite, postgres, or both)
    .venv/bin/python bench/import.py --leases 100000 --profile-delta var/delta.prof
    .venv/bin/python bench/import.py --leases 100000 --profile-reimport var/reimport.prof

Each size and database runs in its own worker process with a fresh database (a SQLite file in a
temp directory, or a new PostgreSQL database dropped afterwards; ``RENTPLATFORM_VAR_DIR`` is set
before Django starts). The sandbox runs as a separate process
(``manage.py amsi_sandbox``), so its memory is not counted. Memory is the importing process's
RSS growth: the kernel's high-water mark (VmHWM) is reset just before the import and compared
with the RSS measured at that moment.

Then 1% of the leases change in eSite (their CreditStatus, through the sandbox's control API)
and a delta resync is timed (exactly those leases updated, asserted), then "sync now" for one
changed lease (the delta query finds it) and for one unchanged lease (looked for in the lists).

Beside the unchanged re-import, its floor: the sandbox answering the current and notice lists
(every lease) read as bytes and dropped, and the same replies parsed into elements (no mapping,
no database).

Targets (2-core machine): 10,000 leases <= 5 s; 100,000 <= 50 s with peak memory growth
< 150 MB; an unchanged re-import writes nothing (asserted); the delta resync with 1% of
100,000 leases changed <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c  # bench/ is the script's folder, so first on sys.path

TARGETS = {10_000: (5.0, None), 100_000: (50.0, 150.0)}
DELTA_TARGET = {100_000: 3.0}  # seconds for the delta resync with 1% changed
QUICK = [200]  # --quick: one small import, untimed (CI keeps the bench working)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def worker(leases: int, kind: str, database_url: str, profiles: dict[str, str | None]) -> dict:
    """One measurement in this process: fresh DB, sandbox subprocess, import, re-import."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-import-{leases}-{kind}-"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RENTPLATFORM_VAR_DIR"] = str(tmp / "sandbox-var")
    portfolio = tmp / "portfolio"
    subprocess.run(
        [
            c.PYTHON,
            "manage.py",
            "amsi_sandbox_seed",
            "--properties",
            "1",
            "--leases",
            str(leases),
            "--out",
            str(portfolio),
        ],
        cwd=c.ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (tmp / "var").mkdir()
    db_url, drop = c.database_for(kind, tmp / "var", database_url)
    # As in production: with DEBUG on, Django keeps the text of the last 9,000 SQL statements
    # (multi-row INSERTs of 500 rows each) in memory, which is most of the growth measured.
    c.setup_django(db_url, tmp / "var", DEBUG=os.environ.get("DEBUG", "0"))
    sandbox = c.start_sandbox(tmp, db_url, seed=str(portfolio))
    try:
        return _measure(leases, sandbox, profiles)
    finally:
        sandbox.kill()
        if drop:
            from django.db import connections

            connections.close_all()
            c.drop_database(db_url, drop)


def _profiled(path: str | None):
    """A cProfile profiler started now, or None; ``_dump`` stops it and writes ``path``."""
    if not path:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _dump(profiler, path: str | None) -> None:
    if profiler:
        profiler.disable()
        profiler.dump_stats(path)


def _measure(leases: int, sandbox, profiles: dict[str, str | None]) -> dict:
    base_url = sandbox.base_url
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    from integrations.models import SyncKind, SyncStatus
    from integrations.services import run_sync
    from rentplatform.models import Lease
    from tests.integrations_amsi.world import connect_to_sandbox

    _prop, conn = connect_to_sandbox(base_url, timeout=55)
    # Load the WSDLs first: a one-off per process, not part of an import.
    assert conn.get_provider().test_connection().ok

    rss_before = _status_kb("VmRSS")
    peak_reset = _reset_peak()
    profiler = _profiled(profiles["import"])
    start = time.perf_counter()
    run = run_sync(conn, SyncKind.IMPORT)
    first = time.perf_counter() - start
    _dump(profiler, profiles["import"])
    peak = _status_kb("VmHWM") if peak_reset else _status_kb("VmHWM")
    growth_mb = (peak - rss_before) / 1024
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.created == leases == Lease.objects.count(), (run.created, leases)

    floor = _read_floor(conn)
    from django.db import reset_queries

    reset_queries()  # the log is a bounded deque: start empty so the capture is exact
    with CaptureQueriesContext(db) as ctx:
        start = time.perf_counter()
        profiler = _profiled(profiles["reimport"])
        rerun = run_sync(conn, SyncKind.IMPORT)
        second = time.perf_counter() - start
        _dump(profiler, profiles["reimport"])
    writes = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and "integrations_syncrun" not in q["sql"]
    ]
    assert rerun.status == SyncStatus.SUCCEEDED, rerun.message
    assert (rerun.created, rerun.updated, rerun.deactivated) == (0, 0, 0)
    assert rerun.unchanged == leases
    assert writes == [], writes[:3]
    _age_the_load(sandbox.state)
    delta = _delta_and_lease_sync(conn, base_url, leases, profiles["delta"])
    return {
        **delta,
        **floor,
        "leases": leases,
        "import_s": round(first, 2),
        "peak_growth_mb": round(growth_mb, 1),
        "peak_exact": peak_reset,
        "reimport_s": round(second, 2),
        "reimport_rows_written": len(writes),
        "queries_reimport": len(ctx.captured_queries),
    }


def _read_floor(conn) -> dict:
    """What an unchanged re-import cannot go below: the sandbox answering GetPropertyResidents
    (current and notice lists, every lease) read as bytes and dropped, and the same replies
    read and parsed into <Lease> elements by the client's stream (no mapping, no database)."""
    import httpx
    from lxml import etree

    from integrations_amsi.client import SOAP_ACTION
    from integrations_amsi.importer import LEASE_STATUSES
    from integrations_amsi.queries import residents_query

    provider = conn.get_provider()
    client, settings = provider.client, provider.settings
    zeep_client, _service = client._service("Leasing")
    operation = "GetPropertyResidents"
    answer = parse = 0.0
    for status in LEASE_STATUSES:
        query = residents_query(settings.property_id, status)
        envelope = zeep_client.create_message(
            zeep_client.service, operation, **client._credentials(), XMLData=query
        )
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{SOAP_ACTION.format(operation)}"',
        }
        start = time.perf_counter()
        with httpx.stream(
            "POST", f"{settings.base_url}/leasing.asmx", content=body, headers=headers,
            timeout=120,
        ) as resp:  # fmt: skip
            for _chunk in resp.iter_bytes(256 * 1024):
                pass
        answer += time.perf_counter() - start
        start = time.perf_counter()
        for _el in client.stream_elements(operation, query, "Lease"):
            pass
        parse += time.perf_counter() - start
    return {"floor_answer_s": round(answer, 2), "floor_parse_s": round(parse, 2)}


def _age_the_load(state) -> None:
    """The sandbox stamps every lease of a freshly loaded portfolio as changed now; a real
    eSite's portfolio was loaded long ago. Date those stamps back a year (in the sandbox's own
    state file), so the delta query lists what changed since the last sync, as it would."""
    import sqlite3

    with sqlite3.connect(state) as db:
        db.execute("UPDATE status_changes SET changed_at = '2025-01-01T00:00:00.000000'")


def _delta_and_lease_sync(conn, base_url: str, leases: int, profile: str | None) -> dict:
    """A delta resync after 1% of the leases changed in eSite (their CreditStatus, set through
    the sandbox's control API as a manager would), then "sync now" for one lease: one that
    changed (the delta query finds it) and one that did not (looked for in the lists)."""
    from integrations.models import SyncKind, SyncStatus
    from integrations.services import run_sync
    from integrations_amsi.models import AmsiLeaseLink
    from integrations_amsi.sandbox.testing import SandboxControl

    links = list(AmsiLeaseLink.objects.filter(connection=conn).order_by("pk"))
    changed = links[:: max(1, len(links) // max(1, leases // 100))][: max(1, leases // 100)]
    control = SandboxControl(base_url)
    for link in changed:
        status = "C" if link.credit_status != "C" else "N"
        control.patch_lease(*link.key, CreditStatus=status)
    control.close()
    profiler = _profiled(profile)
    start = time.perf_counter()
    run = run_sync(conn, SyncKind.DELTA)
    delta_s = time.perf_counter() - start
    _dump(profiler, profile)
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.updated == len(changed), (run.updated, len(changed))
    start = time.perf_counter()
    one = run_sync(conn, SyncKind.LEASE, lease_id=changed[0].lease_id)
    lease_changed_s = time.perf_counter() - start
    unchanged = next(link for link in reversed(links) if link not in changed)
    start = time.perf_counter()
    other = run_sync(conn, SyncKind.LEASE, lease_id=unchanged.lease_id)
    lease_unchanged_s = time.perf_counter() - start
    assert one.status == other.status == SyncStatus.SUCCEEDED, (one.message, other.message)
    return {
        "delta_changed": len(changed),
        "delta_s": round(delta_s, 2),
        "lease_changed_s": round(lease_changed_s, 2),
        "lease_unchanged_s": round(lease_unchanged_s, 2),
    }


def _profile_path(given: str | None, kind: str, n: int, several: bool) -> str | None:
    """The profile file of one worker: as given, or with the database and size in its name
    when the bench runs more than one."""
    if not given or not several:
        return given
    path = Path(given)
    return str(path.with_name(f"{path.stem}-{kind}-{n}{path.suffix}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--database", choices=["sqlite", "postgres", "both"], default=None,
        help="where the platform's data is (default: both; sqlite with --quick)",
    )  # fmt: skip
    parser.add_argument("--database-url", default="", help="PostgreSQL server (else local)")
    parser.add_argument("--profile", help="write a cProfile of the first import here")
    parser.add_argument("--profile-reimport", help="write a cProfile of the re-import here")
    parser.add_argument("--profile-delta", help="write a cProfile of the delta resync here")
    parser.add_argument("--quick", action="store_true", help="200 leases, no verdict (CI)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="sqlite", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        profiles = {
            "import": args.profile,
            "reimport": args.profile_reimport,
            "delta": args.profile_delta,
        }
        print(json.dumps(worker(args.worker, args.kind, args.database_url, profiles)))
        return 0
    sizes = QUICK if args.quick else args.leases
    database = args.database or ("sqlite" if args.quick else "both")
    kinds = ["sqlite", "postgres"] if database == "both" else [database]
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    print(
        c.header(
            "bench/import.py",
            database=", ".join(names[k] for k in kinds),
            sandbox="a subprocess",
            quick=args.quick,
        )
    )
    print(flush=True)
    several = len(kinds) * len(sizes) > 1
    failed, rows = False, []
    for n in sizes:
        for kind in kinds:
            cmd = [c.PYTHON, __file__, "--worker", str(n), "--kind", kind]
            if args.database_url:
                cmd += ["--database-url", args.database_url]
            for flag, given in (
                ("--profile", args.profile),
                ("--profile-reimport", args.profile_reimport),
                ("--profile-delta", args.profile_delta),
            ):
                path = _profile_path(given, kind, n, several)
                if path:
                    cmd += [flag, path]
            out = subprocess.run(cmd, cwd=c.ROOT, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{n} leases, {names[kind]}: FAILED\n{out.stderr[-3000:]}")
                failed = True
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            verdict = [] if args.quick else _verdict(n, r)
            failed |= any("MISSED" in v for v in verdict)
            rows.append(
                [f"{n:,}", names[kind], f"{r['import_s']:.2f}", f"{r['peak_growth_mb']:.1f}",
                 f"{r['reimport_s']:.2f}",
                 f"{r['floor_answer_s']:.2f} / {r['floor_parse_s']:.2f}",
                 f"{r['reimport_rows_written']} ({r['queries_reimport']})",
                 f"{r['delta_s']:.2f} ({r['delta_changed']:,} changed)",
                 f"{r['lease_changed_s']:.2f} / {r['lease_unchanged_s']:.2f}",
                 ", ".join(verdict)]
            )  # fmt: skip
    print(
        c.table(
            [
                "leases",
                "db",
                "import s",
                "peak RSS growth MB",
                "unchanged re-import s",
                "floor s (sandbox answers / read+parse)",
                "rows written on re-import (queries)",
                "delta resync s (1% changed)",
                "sync now s (changed / unchanged lease)",
                "target",
            ],
            rows,
        )  # fmt: skip
    )
    print(c.footer())
    return 1 if failed else 0


def _verdict(n: int, r: dict) -> list[str]:
    seconds_target, memory_target = TARGETS.get(n, (None, None))
    verdict = []
    if seconds_target:
        ok = r["import_s"] <= seconds_target
        verdict.append(f"<= {seconds_target:g} s: {'met' if ok else 'MISSED'}")
    if memory_target:
        ok = r["peak_growth_mb"] < memory_target
        verdict.append(f"< {memory_target:g} MB: {'met' if ok else 'MISSED'}")
    if n in DELTA_TARGET:
        ok = r["delta_s"] <= DELTA_TARGET[n]
        verdict.append(f"delta <= {DELTA_TARGET[n]:g} s: {'met' if ok else 'MISSED'}")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
