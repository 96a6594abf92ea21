"""Run the demo: a day of resident payments through a real django-q2 worker.

Examples::

    make demo                      # the usual way (fresh state under var/demo/)
    python manage.py demo --keep   # keep the worker running afterwards? no: exits when done

The demo migrates its database, loads a property with six leases (one blocked by a platform
admin, one cards-only), starts a django-q2 cluster in a subprocess, takes payments through the
resident API exactly as a browser would, waits until every posting has reached the accounting
provider (the fake one until the AMSI provider is wired in), and prints a summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from integrations.demo_data import DEMO_PASSWORD, load_demo_property
from integrations.models import Connection, FakeRemoteEntry, Posting, PostingState
from rentplatform.models import Lease
from rentplatform.services.batches import batch_totals

PAYMENTS = [
    ("ana", "card", "1250.00"),
    ("ben", "ach", "975.50"),
    ("chloe", "card", "1100.00"),
    ("farid", "ach", "1320.25"),
    ("erin", "card", "890.00"),
    ("ana", "ach", "25.00"),
]
REFUSED = [("dev", "card", "1000.00"), ("erin", "ach", "890.00")]


class Command(BaseCommand):
    help = "Run the demo day against the accounting provider with a real django-q2 worker."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args, **options):
        self.stdout.write(f"Database: {settings.DATABASES['default']['NAME']}")
        call_command("migrate", verbosity=0)
        call_command("integrations_schedule", verbosity=0, stdout=open(os.devnull, "w"))
        prop = load_demo_property()
        Connection.objects.get_or_create(property=prop, defaults={"provider": "fake"})
        worker = self._start_worker()
        try:
            self._take_payments(prop)
            self._wait_for_postings(options["timeout"])
        finally:
            self._stop_worker(worker)
        self._summary(prop)

    def _start_worker(self) -> subprocess.Popen:
        self.stdout.write("Starting a django-q2 cluster (python manage.py qcluster) ...")
        env = {**os.environ, "Q_WORKERS": "2"}
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(worker.pid, signal.SIGKILL)

    def _client_for(self, username: str) -> Client:
        client = Client()
        if not client.login(username=username, password=DEMO_PASSWORD):
            raise CommandError(f"demo resident {username} cannot log in")
        return client

    def _lease_id(self, client: Client) -> int:
        leases = client.get("/api/leases/").json()
        results = leases["results"] if isinstance(leases, dict) else leases
        return results[0]["id"]

    def _take_payments(self, prop) -> None:
        self.stdout.write("Residents pay through the API:")
        for username, method, amount in PAYMENTS + REFUSED:
            client = self._client_for(username)
            lease_id = self._lease_id(client)
            response = client.post(
                f"/api/leases/{lease_id}/payments/",
                {"amount": amount, "method": method},
                content_type="application/json",
            )
            body = response.json()
            if response.status_code == 201:
                self.stdout.write(
                    f"  {username:6} {method:4} {amount:>9}  accepted {body['id'][:10]}"
                )
            else:
                self.stdout.write(
                    self.style.WARNING(
                        f"  {username:6} {method:4} {amount:>9}  refused: {body.get('detail')}"
                    )
                )

    def _wait_for_postings(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_postings = Posting.objects.exclude(
                state__in=[PostingState.POSTED, PostingState.NEEDS_ATTENTION]
            ).count()
            if open_postings == 0:
                return
            time.sleep(0.3)
        raise CommandError("postings did not reach the provider in time; is the worker running?")

    def _summary(self, prop) -> None:
        postings = Posting.objects.filter(connection__property=prop)
        posted = postings.filter(state=PostingState.POSTED).count()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Summary"))
        self.stdout.write(f"  postings: {postings.count()} total, {posted} posted")
        remote_total = sum((e.amount for e in FakeRemoteEntry.objects.all()), Decimal("0.00"))
        for batch in prop.batches.all():
            totals = batch_totals(batch)
            self.stdout.write(
                f"  batch {batch.batch_id} {batch.stream:4} {batch.business_day} "
                f"{totals['payments']} payment(s) net {totals['net']}"
            )
        self.stdout.write(f"  remote ledger (fake provider): total {remote_total}")
        blocked = Lease.objects.filter(platform_blocked=True).count()
        self.stdout.write(f"  refused as expected: {len(REFUSED)} ({blocked} blocked lease)")
