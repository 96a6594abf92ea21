"""Run the AMSI eSite eDex sandbox as its own process.

Examples:
    python manage.py amsi_sandbox
    python manage.py amsi_sandbox --addr 127.0.0.1:8089 --seed demo \
        --state var/sandbox/state.sqlite3
    python manage.py amsi_sandbox --seed var/sandbox/portfolio   # a folder from amsi_sandbox_seed
    python manage.py amsi_sandbox --seed demo --variant ids=lenient --variant duplicates=accept
    AMSI_SANDBOX_CONTROL_TOKEN=... python manage.py amsi_sandbox --addr 0.0.0.0:8089

The control API (/sandbox/) is open only on loopback; on any other address the command refuses
to start without --control-token (or AMSI_SANDBOX_CONTROL_TOKEN), and control requests must then
carry it in the X-Sandbox-Token header.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations_amsi.sandbox import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LOAD_BODY,
    DEFAULT_PASSWORD,
    DEFAULT_PORTFOLIO,
    DEFAULT_STATE,
    DEFAULT_USER,
)
from integrations_amsi.sandbox.seed import load_demo, load_dir
from integrations_amsi.sandbox.server import (
    CONTROL_TOKEN_HEADER,
    ControlTokenRequired,
    Sandbox,
    is_loopback,
    make_server,
)
from integrations_amsi.sandbox.variants import help_text, parse_assignments

TOKEN_ENV = "AMSI_SANDBOX_CONTROL_TOKEN"


class Command(BaseCommand):
    help = "Run the local AMSI eSite eDex sandbox (SOAP, pages, control API) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
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

    def handle(self, *args: Any, **opts: Any) -> None:
        host, _, port = opts["addr"].rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--addr must be HOST:PORT, got {opts['addr']!r}")
        try:
            variants = parse_assignments(opts["variant"] or [])
        except ValueError as err:
            raise CommandError(str(err)) from err
        token = opts["control_token"]
        if token is None:
            token = os.environ.get(TOKEN_ENV, "")
        if not is_loopback(host) and not token:
            # Said before any state is opened or seeded.
            raise CommandError(
                f"refusing to listen on {opts['addr']} without --control-token: the control "
                "API (/sandbox/: reset the books, inject faults, read the ledger) would be open "
                "to anyone who can reach that address. Give --control-token TOKEN (or set "
                f"{TOKEN_ENV}); clients then send it as {CONTROL_TOKEN_HEADER}. Or listen on "
                "127.0.0.1."
            )
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
        seed = opts["seed"]
        if seed == "demo":
            load_demo(sandbox.store)
            self.stdout.write("Loaded the demo portfolio (property 001 Maple Court).")
        elif seed:
            folder = Path(seed)
            if not folder.is_dir():
                raise CommandError(f"--seed: {folder} is neither 'demo' nor a folder")
            counts = load_dir(sandbox.store, folder)
            for pid, (units, leases) in counts.items():
                self.stdout.write(f"Loaded property {pid}: {units} units, {leases} leases.")
        try:
            httpd = make_server(sandbox, host, int(port))
        except ControlTokenRequired as err:
            sandbox.store.close()
            raise CommandError(str(err)) from err
        except OSError as err:
            sandbox.store.close()
            raise CommandError(f"cannot listen on {opts['addr']}: {err}") from err
        base = "http://{}:{}".format(*httpd.server_address[:2])
        self.stdout.write(self.style.SUCCESS(f"AMSI eDex sandbox on {base}/"))
        for path in (
            "/edexweb/esite/leasing.asmx?wsdl",
            "/edexweb/esite/ledger.asmx?wsdl",
            "/edexweb/esite/cashbatches",
            "/edexweb/esite/externaldeposits",
            "/sandbox/health",
            "/sandbox/variants",
        ):
            self.stdout.write(f"  {base}{path}")
        self.stdout.write(
            "Variants: " + " ".join(f"{k}={v}" for k, v in sandbox.variants.items()) + "."
        )
        self.stdout.write(
            f"Control API: {CONTROL_TOKEN_HEADER} required (token not shown)."
            if token
            else "Control API: open (loopback only)."
        )
        self.stdout.write(
            f"Portfolio {sandbox.portfolio!r}, user {sandbox.user!r} (password not shown), "
            f"state {sandbox.state}. Ctrl-C to stop."
        )
        self.stdout.flush()

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
            self.stdout.write("Sandbox stopped.")
