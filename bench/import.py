"""Benchmark: import N leases from the AMSI sandbox, then an unchanged re-import.

Run by hand, not in CI::

    .venv/bin/python bench/import.py                      # 10,000 and 100,000 leases
    .venv/bin/python bench/import.py --leases 10000       # just one size
    .venv/bin/python bench/import.py --leases 10000 --profile var/import.prof

Each size runs in its own worker process with a fresh SQLite database in a temp directory
(``RENTPLATFORM_VAR_DIR`` is set before Django starts). The sandbox runs as a separate process
(``manage.py amsi_sandbox``), so its memory is not counted. Memory is the importing process's
RSS growth: the kernel's high-water mark (VmHWM) is reset just before the import and compared
with the RSS measured at that moment.

Targets (2-core machine): 10,000 leases <= 5 s; 100,000 <= 50 s with peak memory growth
< 150 MB; an unchanged re-import writes nothing (asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGETS = {10_000: (5.0, None), 100_000: (50.0, 150.0)}


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the sandbox did not answer {url} within {seconds} s")


def worker(leases: int, profile: str | None) -> dict:
    """One measurement in this process: fresh DB, sandbox subprocess, import, re-import."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-import-{leases}-"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RENTPLATFORM_VAR_DIR"] = str(tmp / "sandbox-var")
    portfolio = tmp / "portfolio"
    subprocess.run(
        [
            PYTHON,
            "manage.py",
            "amsi_sandbox_seed",
            "--properties",
            "1",
            "--leases",
            str(leases),
            "--out",
            str(portfolio),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = _free_port()
    sandbox = subprocess.Popen(
        [
            PYTHON,
            "manage.py",
            "amsi_sandbox",
            "--addr",
            f"127.0.0.1:{port}",
            "--state",
            str(tmp / "state.sqlite3"),
            "--seed",
            str(portfolio),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/sandbox/health", sandbox)
        return _measure(leases, port, tmp, profile)
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sandbox.kill()


def _measure(leases: int, port: int, tmp: Path, profile: str | None) -> dict:
    os.environ.pop("DATABASE_URL", None)
    os.environ["RENTPLATFORM_VAR_DIR"] = str(tmp / "var")
    # As in production: with DEBUG on, Django keeps the text of the last 9,000 SQL statements
    # (multi-row INSERTs of 500 rows each) in memory, which is most of the growth measured.
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rentplatform.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    from integrations.models import Connection
    from integrations.services import run_sync
    from rentplatform.models import Lease, Property

    call_command("migrate", verbosity=0)
    prop = Property.objects.create(code="bench", name="Bench", time_zone="America/Chicago")
    conn = Connection.objects.create(
        property=prop,
        provider="amsi",
        settings={
            "url": f"http://127.0.0.1:{port}/edexweb/esite",
            "portfolio": "DEMO",
            "user_id": "edex_demo",
            "property_id": "001",
            "merchant_id": "1001",
            "timeout": 55,
        },
        credentials={"password": "sandbox-secret"},
    )
    # Load the WSDLs first: a one-off per process, not part of an import.
    assert conn.get_provider().test_connection().ok

    rss_before = _status_kb("VmRSS")
    peak_reset = _reset_peak()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    run = run_sync(conn, "import")
    first = time.perf_counter() - start
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    peak = _status_kb("VmHWM") if peak_reset else _status_kb("VmHWM")
    growth_mb = (peak - rss_before) / 1024
    assert run.status == "succeeded", run.message
    assert run.created == leases == Lease.objects.count(), (run.created, leases)

    from django.db import reset_queries

    reset_queries()  # the log is a bounded deque: start empty so the capture is exact
    with CaptureQueriesContext(db) as ctx:
        start = time.perf_counter()
        rerun = run_sync(conn, "import")
        second = time.perf_counter() - start
    writes = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and "integrations_syncrun" not in q["sql"]
    ]
    assert rerun.status == "succeeded", rerun.message
    assert (rerun.created, rerun.updated, rerun.deactivated) == (0, 0, 0)
    assert rerun.unchanged == leases
    assert writes == [], writes[:3]
    return {
        "leases": leases,
        "import_s": round(first, 2),
        "peak_growth_mb": round(growth_mb, 1),
        "peak_exact": peak_reset,
        "reimport_s": round(second, 2),
        "reimport_rows_written": len(writes),
        "queries_reimport": len(ctx.captured_queries),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--profile", help="write a cProfile of the first import here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.profile)))
        return 0
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, SQLite, sandbox in a subprocess"
    )
    failed = False
    for n in args.leases:
        cmd = [PYTHON, __file__, "--worker", str(n)]
        if args.profile:
            cmd += ["--profile", args.profile]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n} leases: FAILED\n{out.stderr[-3000:]}")
            failed = True
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        seconds_target, memory_target = TARGETS.get(n, (None, None))
        verdict = []
        if seconds_target:
            verdict.append("time OK" if r["import_s"] <= seconds_target else "TIME MISSED")
        if memory_target:
            verdict.append("memory OK" if r["peak_growth_mb"] < memory_target else "MEMORY MISSED")
        failed |= any("MISSED" in v for v in verdict)
        print(
            f"{n:>7} leases: import {r['import_s']:6.2f} s, peak RSS growth "
            f"{r['peak_growth_mb']:6.1f} MB; unchanged re-import {r['reimport_s']:6.2f} s, "
            f"{r['reimport_rows_written']} rows written ({r['queries_reimport']} queries)"
            + (f"  [{', '.join(verdict)}]" if verdict else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
