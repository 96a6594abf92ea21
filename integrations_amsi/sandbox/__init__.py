"""A local AMSI eSite eDex server: the demo, the tests and the benchmarks run against it.

Pure Python (stdlib + lxml); no Django models. See docs/sandbox.md.
"""

from __future__ import annotations

DEFAULT_PORTFOLIO = "DEMO"
DEFAULT_USER = "edex_demo"
DEFAULT_PASSWORD = "sandbox-secret"
DEFAULT_STATE = "var/sandbox/state.sqlite3"
DEFAULT_BANK_BOOK = "1000"
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_MAX_LOAD_BODY = 1024 * 1024 * 1024
