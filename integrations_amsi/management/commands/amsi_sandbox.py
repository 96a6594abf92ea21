"""Run the AMSI eSite eDex sandbox as its own process.

Examples:
    python manage.py amsi_sandbox
    python manage.py amsi_sandbox --addr 127.0.0.1:8089 --seed demo \
        --state var/sandbox/state.sqlite3
    python manage.py amsi_sandbox --seed var/sandbox/portfolio   # a folder from amsi_sandbox_seed
    python manage.py amsi_sandbox --seed demo --variant ids=lenient --variant duplicates=accept
    AMSI_SANDBOX_CONTROL_TOKEN=... python manage.py amsi_sandbox --addr 0.0.0.0:8089

The sandbox needs no Django: this command wraps ``python -m integrations_amsi.sandbox``
(integrations_amsi/sandbox/cli.py), with the same options.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations_amsi.sandbox.cli import UsageError, add_arguments, serve


class Command(BaseCommand):
    help = "Run the local AMSI eSite eDex sandbox (SOAP, pages, control API) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **opts: Any) -> None:
        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            serve(opts, write)
        except UsageError as err:
            raise CommandError(str(err)) from err
