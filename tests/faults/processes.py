"""The sandbox and a django-q2 cluster as processes of their own, each in a new session and
stopped by its process group id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from django.db import connection

from integrations_amsi.sandbox.process import free_port, start_process, stop_group
from tests.faults.timings import REPO, TIMINGS


def database_url() -> str:
    """The URL of the database this process is using now (the test database in a test)."""
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


class SandboxProcess:
    """The sandbox as its own process (integrations_amsi.sandbox.process) on a fixed loopback
    port; restarts keep the state file and the variants (``--variant NAME=VALUE``, e.g.
    ``{"duplicates": "accept"}``)."""

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
        self.proc = start_process(
            self.state,
            port=self.port,
            seed=self.seed if self.starts == 0 else None,
            variants=self.variants,
            log=self.workdir / "sandbox.log",
            env=self.env,
            timeout=timeout,
        ).proc
        self.starts += 1
        return self

    def stop(self) -> None:
        self._forget()
        stop_group(self.proc)

    def kill(self) -> None:
        self._forget()
        stop_group(self.proc, signal.SIGKILL)

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
        log = open(self.workdir / f"cluster-{self.name}.log", "ab")
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
