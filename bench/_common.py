"""What every benchmark shares: the machine line, databases, Django, the sandbox, statistics.

Each bench prints the same header first (date, machine, CPUs, load average, Python) and the load
again at the end, so a figure copied into docs/performance.md says what the machine was doing.

Databases: ``sqlite`` is a file in the run's work folder; ``postgres`` is a new database
``bench_<time>_<pid>`` on the server named by ``--database-url`` / ``DATABASE_URL`` (default
the local server at 127.0.0.1:5432, user postgres), dropped afterwards. Django can be set up once
per process, so a bench that measures several databases runs one child process per database.

The sandbox runs as its own process (``tests.faults.harness.SandboxProcess``): its CPU and
memory are not the measured process's, as in production where eSite is another machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
POSTGRES_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


# -- the machine --------------------------------------------------------------------------------
def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def tree() -> str:
    """The code measured: its folder and commit (with "+ changes" when the tree differs)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        head, dirty = "", ""
    if not head:
        # A snapshot (``git archive REV | tar -x``) measured apart from a busy working tree
        # names its commit in a COMMIT file.
        stamp = ROOT / "COMMIT"
        commit = stamp.read_text().strip() if stamp.exists() else "not a git checkout"
        return f"{ROOT} (snapshot of {commit})"
    return f"{ROOT} at {head}" + (" + uncommitted changes" if dirty else "")


def header(title: str, **details: object) -> str:
    """The table every bench prints first: what ran, when, on what, under what load."""
    uname = platform.uname()
    rows = {
        "bench": title,
        "code": tree(),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{uname.system} {uname.release} {uname.machine}",
        "CPUs": os.cpu_count(),
        "load (1/5/15 min)": load(),
        "python": sys.version.split()[0],
        **details,
    }
    return table(["", ""], [[k, v] for k, v in rows.items()])


def footer() -> str:
    return f"load at the end (1/5/15 min): {load()}"


# -- tables and numbers -------------------------------------------------------------------------
def table(headings: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (it pastes into docs/performance.md as printed)."""
    text = [[str(h) for h in headings]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headings))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in text
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def write_profile(profiler, folder: str, stem: str, title: str) -> str:
    """``<stem>.prof`` (for snakeviz / pstats) and ``<stem>.txt``: the top 60 lines by
    cumulative time, then the top 40 by own time. Returns the text file's path."""
    import io
    import pstats

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out / f"{stem}.prof")
    text = io.StringIO()
    text.write(title + "\n")
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    (out / f"{stem}.txt").write_text(text.getvalue())
    return str(out / f"{stem}.txt")


# -- databases ----------------------------------------------------------------------------------
def server_url(given: str = "") -> str:
    """The PostgreSQL server to create bench databases on."""
    url = given or os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgres") else POSTGRES_DEFAULT


def fresh_database(url: str, workdir: Path, prefix: str = "bench") -> tuple[str, str | None]:
    """(DATABASE_URL of a new empty database, name to drop afterwards or None).

    ``url`` empty or SQLite: a file in ``workdir``. PostgreSQL: a new database on that server."""
    if not url or url.startswith("sqlite"):
        return f"sqlite:///{workdir / f'{prefix}.sqlite3'}", None
    import psycopg

    name = f"{prefix}_{int(time.time())}_{os.getpid()}"
    base, _, _db = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}", name


def drop_database(url: str, name: str) -> None:
    import psycopg

    base, _, _db = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_for(kind: str, workdir: Path, given: str = "") -> tuple[str, str | None]:
    """``kind`` sqlite or postgres: (DATABASE_URL, PostgreSQL database to drop or None)."""
    if kind == "sqlite":
        return fresh_database("", workdir)
    return fresh_database(server_url(given), workdir)


def setup_django(db_url: str, workdir: Path, **env: str) -> None:
    """Point this process at ``db_url`` with its var folder in ``workdir``, set Django up and
    migrate. ``env``: more environment (timings, REDIS_URL, DEBUG) read by the settings."""
    os.environ.update(
        {
            "DATABASE_URL": db_url,
            "RENTPLATFORM_VAR_DIR": str(workdir),
            "DJANGO_SETTINGS_MODULE": "rentplatform.settings",
            "LOG_LEVEL": "ERROR",
            "INTEGRATIONS_LOG_LEVEL": "ERROR",
            **env,  # may name bench/_settings.py (an experiment)
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def experiment_env(q_options: list[str], conn_max_age: int | None) -> dict[str, str]:
    """Environment for a settings experiment: ``--q-option NAME=VALUE`` (a JSON value merged
    into Q_CLUSTER through bench/_settings.py) and ``--conn-max-age`` (DB_CONN_MAX_AGE)."""
    import json

    env: dict[str, str] = {}
    if conn_max_age is not None:
        env["DB_CONN_MAX_AGE"] = str(conn_max_age)
    if q_options:
        options = {}
        for item in q_options:
            name, _, value = item.partition("=")
            try:
                options[name] = json.loads(value)
            except ValueError:
                options[name] = value
        env["BENCH_Q_CLUSTER"] = json.dumps(options)
        env["DJANGO_SETTINGS_MODULE"] = "bench._settings"
    return env


def experiment_args(parser) -> None:
    parser.add_argument(
        "--q-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an experiment: a Q_CLUSTER option changed (JSON value), e.g. save_limit=-1",
    )
    parser.add_argument(
        "--conn-max-age", type=int, default=None, help="an experiment: DB_CONN_MAX_AGE (seconds)"
    )


@contextlib.contextmanager
def child_world(kind: str, database_url: str, prefix: str, **env: str):
    """A bench child's world: a work folder, a fresh database of ``kind`` (Django set up and
    migrated on it, ``env`` in the environment) and the sandbox; all removed afterwards.
    Yields the sandbox process."""
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-{kind}-"))
    db_url, drop = database_for(kind, workdir, database_url)
    setup_django(db_url, workdir, **env)
    sandbox = start_sandbox(workdir, db_url)
    try:
        yield sandbox
    finally:
        sandbox.kill()
        from django.db import connections

        connections.close_all()
        if drop:
            drop_database(db_url, drop)
        shutil.rmtree(workdir, ignore_errors=True)


def start_sandbox(workdir: Path, db_url: str, *, seed: str = "demo"):
    """The eSite sandbox as its own process, started and answering (stop with ``.kill()``)."""
    from tests.faults.harness import SandboxProcess

    return SandboxProcess(workdir, db_url, seed=seed).start(timeout=300)


# -- CPU by role --------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _role(pid: int, group: int, comm: str, cmdline: str, groups: dict[int, str]) -> str:
    if pid == os.getpid():
        return "taker (this process)"
    if group in groups:
        return groups[group]
    if "qcluster" in cmdline:
        return "workers (qcluster)"
    if comm.startswith("postgres"):
        return "PostgreSQL"
    if comm.startswith("redis"):
        return "Redis"
    return "other"


def cpu_by_role(groups: dict[int, str] | None = None) -> dict[int, tuple[str, float]]:
    """CPU seconds each process has used so far, with its role (Linux /proc; {} elsewhere):
    this process, ``groups`` (process group id -> role: the sandbox), qcluster, PostgreSQL,
    Redis, other. ``cpu_shares`` of two readings says how the CPUs were shared between them."""
    seconds: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        pid = int(entry.name)
        seconds[pid] = (_role(pid, int(fields[2]), comm, cmdline, groups or {}), used)
    if seconds:  # the whole machine, processes that end meanwhile (recycled workers) included
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for v in cpu[:8]) - int(cpu[3]) - int(cpu[4])  # all but idle, iowait
        seconds[MACHINE] = ("machine", busy / _TICK)
    return seconds


def cpu_ms_each(before: dict, after: dict, n: int) -> dict[str, float]:
    """Each role's CPU milliseconds per item (task, posting) between two ``cpu_by_role``
    readings, and ``machine``: all CPU time spent meanwhile, per item, whoever spent it. The
    roles miss what processes that ended meanwhile spent (django-q2 recycles a worker after
    500 tasks); ``machine`` does not."""
    each: dict[str, float] = {}
    for pid, (role, used) in after.items():
        earlier = before.get(pid, (role, 0.0))[1]
        each[role] = each.get(role, 0.0) + 1000 * max(used - earlier, 0.0) / max(n, 1)
    machine = each.pop("machine", 0.0)
    each = dict(sorted(((k, v) for k, v in each.items() if v >= 0.05), key=lambda kv: -kv[1]))
    return {**each, "machine": machine}


MACHINE = -1  # cpu_by_role's key for the whole machine's busy time


def cpu_shares(before: dict, after: dict, wall: float) -> dict[str, float]:
    """Each role's CPU use between two ``cpu_by_role`` readings, as a share of the machine
    (all CPUs). A process that started in between counts whole; one that ended in between
    (a recycled worker, a closed connection's backend) is missing its last part."""
    capacity = wall * (os.cpu_count() or 1)
    shares: dict[str, float] = {}
    for pid, (role, used) in after.items():
        earlier = before.get(pid, (role, 0.0))[1]
        shares[role] = shares.get(role, 0.0) + max(used - earlier, 0.0) / capacity
    return dict(sorted(((k, v) for k, v in shares.items() if v >= 0.005), key=lambda kv: -kv[1]))
