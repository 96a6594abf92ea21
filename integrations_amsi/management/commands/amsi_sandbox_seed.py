"""Write a deterministic eSite portfolio for the sandbox and benchmarks.

Examples:
    python manage.py amsi_sandbox_seed --properties 3 --leases 200 --out var/sandbox/portfolio
    python manage.py amsi_sandbox --seed var/sandbox/portfolio
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations_amsi.sandbox.seed import write_portfolio


class Command(BaseCommand):
    help = "Generate <PropertyId>.units.xml / .residents.xml files in eSite's own format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--properties", type=int, default=1)
        parser.add_argument("--leases", type=int, default=100, help="leases per property")
        parser.add_argument("--out", required=True, help="output folder")
        parser.add_argument("--seed", type=int, default=1, help="random seed (deterministic)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["properties"] < 1 or opts["leases"] < 1:
            raise CommandError("--properties and --leases must be at least 1")
        written = write_portfolio(
            Path(opts["out"]), opts["properties"], opts["leases"], opts["seed"]
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {len(written)} files to {opts['out']} "
                f"({opts['properties']} properties x {opts['leases']} leases)."
            )
        )
