"""The sandbox as a program: ``python -m integrations_amsi.sandbox`` (no Django needed), and the
same options and run for ``manage.py amsi_sandbox``, which wraps it.

Examples:
    python -m integrations_amsi.sandbox --addr 127.0.0.1:8089 --seed demo
    python -m integrations_amsi.sandbox --seed var/sandbox/portfolio   # from amsi_sandbox_seed
    python -m integrations_amsi.sandbox --seed demo --variant duplicates=accept
    AMSI_SANDBOX_CONTROL_TOKEN=... python -m integrations_amsi.sandbox --addr 0.0.0.0:8089

The control API (/sandbox/) is open only on loopback; on any other address the sandbox refuses
to start without --control-token (or AMSI_SANDBOX_CONTROL_TOKEN), and control requests must then
carry it in the X-Sandbox-Token header.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LOAD_BODY,
    DEFAULT_PASSWORD,
    DEFAULT_PORTFOLIO,
    DEFAULT_STATE,
    DEFAULT_USER,
)
from .seed import load_demo, load_dir
from .server import CONTROL_TOKEN_HEADER, ControlTokenRequired, Sandbox, is_loopback, make_server
from .variants import help_text, parse_assignments

TOKEN_ENV = "AMSI_SANDBOX_CONTROL_TOKEN"
# What a starter waits for (sandbox/process.py): the control API's health check.
HEALTH_PATH = "/sandbox/health"


class UsageError(Exception):
    """Bad options, or the sandbox cannot listen: the message says which."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addr", default="127.0.0.1:8089", help="HOST:PORT (port 0 = free)")
    parser.add_argument("--state", default=DEFAULT_STATE, help="SQLite state file")
    parser.add_argument("--portfolio", default=DEFAULT_PORTFOLIO)
    parser.add_argument("--user", default=DEFAULT_USER)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument(
        "--seed",
        "--load",
        dest="seed",
        default=None,
        help="'demo' or a folder written by amsi_sandbox_seed",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        help="largest SOAP/JSON request body in bytes (HTTP 413 beyond)",
    )
    parser.add_argument(
        "--max-load-body",
        type=int,
        default=DEFAULT_MAX_LOAD_BODY,
        help="largest control upload (units/residents XML) in bytes",
    )
    parser.add_argument(
        "--control-token",
        default=None,
        help=f"required to listen beyond loopback: every /sandbox/ control request must "
        f"send it as {CONTROL_TOKEN_HEADER} (default: ${TOKEN_ENV}, which keeps it out of "
        "the process list)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="switch a behaviour nothing shows real eSite's choice for (repeatable; "
        "docs/sandbox.md, Variants). " + help_text().replace("%", "%%"),
    )


def serve(opts: Mapping[str, Any], write: Callable[[str], None]) -> None:
    """Open the state, seed it, listen and serve until SIGTERM or Ctrl-C.

    Raises UsageError (before any state is opened, where it can be told then)."""
    host, _, port = opts["addr"].rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--addr must be HOST:PORT, got {opts['addr']!r}")
    try:
        variants = parse_assignments(opts["variant"] or [])
    except ValueError as err:
        raise UsageError(str(err)) from err
    token = opts["control_token"]
    if token is None:
        token = os.environ.get(TOKEN_ENV, "")
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to listen on {opts['addr']} without --control-token: the control "
            "API (/sandbox/: reset the books, inject faults, read the ledger) would be open "
            "to anyone who can reach that address. Give --control-token TOKEN (or set "
            f"{TOKEN_ENV}); clients then send it as {CONTROL_TOKEN_HEADER}. Or listen on "
            "127.0.0.1."
        )
    seed = opts["seed"]
    if seed and seed != "demo" and not Path(seed).is_dir():
        raise UsageError(f"--seed: {seed} is neither 'demo' nor a folder")
    sandbox = Sandbox(
        Path(opts["state"]),
        portfolio=opts["portfolio"],
        user=opts["user"],
        password=opts["password"],
        max_body=opts["max_body"],
        max_load_body=opts["max_load_body"],
        variants=variants,
        control_token=token,
    )
    if seed == "demo":
        load_demo(sandbox.store)
        write("Loaded the demo portfolio (property 001 Maple Court).")
    elif seed:
        for pid, (units, leases) in load_dir(sandbox.store, Path(seed)).items():
            write(f"Loaded property {pid}: {units} units, {leases} leases.")
    try:
        httpd = make_server(sandbox, host, int(port))
    except ControlTokenRequired as err:
        sandbox.store.close()
        raise UsageError(str(err)) from err
    except OSError as err:
        sandbox.store.close()
        raise UsageError(f"cannot listen on {opts['addr']}: {err}") from err
    base = "http://{}:{}".format(*httpd.server_address[:2])
    write(f"AMSI eDex sandbox on {base}/")
    for path in (
        "/edexweb/esite/leasing.asmx?wsdl",
        "/edexweb/esite/ledger.asmx?wsdl",
        "/edexweb/esite/cashbatches",
        "/edexweb/esite/externaldeposits",
        HEALTH_PATH,
        "/sandbox/variants",
    ):
        write(f"  {base}{path}")
    write("Variants: " + " ".join(f"{k}={v}" for k, v in sandbox.variants.items()) + ".")
    write(
        f"Control API: {CONTROL_TOKEN_HEADER} required (token not shown)."
        if token
        else "Control API: open (loopback only)."
    )
    write(
        f"Portfolio {sandbox.portfolio!r}, user {sandbox.user!r} (password not shown), "
        f"state {sandbox.state}. Ctrl-C to stop."
    )

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        httpd.close_connections()
        sandbox.store.close()
        write("Sandbox stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m integrations_amsi.sandbox",
        description="Run the local AMSI eSite eDex sandbox (SOAP, pages, control API).",
    )
    add_arguments(parser)
    opts = vars(parser.parse_args(argv))

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # a log file shows each line as it happens

    try:
        serve(opts, write)
    except UsageError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    return 0
