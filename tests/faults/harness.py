"""Processes and checks for the fault suite and bench/chaos.py.

- ``SandboxProcess``: the eSite sandbox as its own process (integrations_amsi.sandbox.process),
  so it can be restarted, stopped for a while, or killed.
- ``Cluster``: a real django-q2 cluster (``manage.py qcluster``) in its own process group, reading
  the database and the (short) timings from its environment.
- ``Platform``: the property connected to the sandbox, imported; payments, reversals, a driver
  that stands in for the retry-sweep schedule, batch closing, and the ledger comparison.

Two ways an unknown outcome (a reply lost, a timeout, a worker killed mid-call) is settled,
following the sandbox's ``duplicates`` variant:

- ``duplicates=refuse``: the platform runs automatic checking (the operator's "duplicates
  refused" confirmation is on the connection): the write is re-sent and eSite's refusal of the
  repeated ClientTransactionID proves it landed (attempt outcome ``found_posted``). A
  reversal is never re-sent: its unknown outcome waits for the person, as below.
- ``duplicates=accept``: a repeat would be booked again, so no operator would confirm that; the
  posting becomes "unconfirmed" and the harness plays the person: once no slow write can still
  land, it looks the posting up in the sandbox's ledger and says "found" (with the receipt) or
  "not there, post it".

Every process is started in a new session and stopped by its own process group id.

The pieces live in ``timings``, ``processes``, ``platform_side`` and ``tally``; this module
gathers them under the one name the suite and the benches import.
"""

from __future__ import annotations

from tests.faults.platform_side import Platform
from tests.faults.processes import Cluster, SandboxProcess, child_env, database_url, free_port
from tests.faults.tally import Tally
from tests.faults.timings import (
    BOTH_DUPLICATES,
    CHICAGO,
    CLIENT_TIMEOUT,
    REPO,
    SLOW_WRITE_SECONDS,
    TIMINGS,
)

__all__ = [
    "BOTH_DUPLICATES",
    "CHICAGO",
    "CLIENT_TIMEOUT",
    "REPO",
    "SLOW_WRITE_SECONDS",
    "TIMINGS",
    "Cluster",
    "Platform",
    "SandboxProcess",
    "Tally",
    "child_env",
    "database_url",
    "free_port",
]
