"""One "world" for AMSI end-to-end tests (dj-stripe's stripe_world pattern).

A sandbox eSite on a loopback port, a property connected to it and imported, and helpers to
pay, reverse, deposit and read the sandbox's ledger back, so each test reads as the business
rule it checks instead of a stack of setup.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.utils import timezone

from integrations import outbox
from integrations.models import Connection, Posting, PostingKind, PostingState, SyncKind
from integrations.services import run_sync
from integrations_amsi.client import clear_clients
from integrations_amsi.conf import AmsiSettings, record_duplicates_refused
from integrations_amsi.demo import look_in_sandbox
from integrations_amsi.errors import DUPLICATE_TRANSACTION
from integrations_amsi.models import AmsiBatchLink, AmsiLeaseLink
from integrations_amsi.provider import AmsiProvider
from integrations_amsi.sandbox import DEFAULT_PASSWORD, DEFAULT_PORTFOLIO, DEFAULT_USER
from integrations_amsi.sandbox.testing import SandboxServer
from rentplatform import services
from rentplatform.models import Lease, Payment, PaymentMethod, Property

CHICAGO = zoneinfo.ZoneInfo("America/Chicago")


def sandbox_settings(base_url: str, *, timeout: float = 3.0, **extra) -> AmsiSettings:
    """The settings of an eDex client for a sandbox with the demo portfolio, property 001 (the
    connection connect_to_sandbox writes, without the database): the one set the client tests
    build."""
    return AmsiSettings(
        url=f"{base_url}/edexweb/esite",
        portfolio=DEFAULT_PORTFOLIO,
        user_id=DEFAULT_USER,
        password=DEFAULT_PASSWORD,
        property_id="001",
        merchant_id="1001",
        created_by=DEFAULT_USER,
        close_cutoff=dt.time(22, 0),
        timeout=timeout,
        **extra,
    )


def connect_to_sandbox(base_url: str, *, timeout: float) -> tuple[Property, Connection]:
    """The Maple Court property with an AMSI connection to a sandbox at ``base_url``."""
    prop = Property.objects.create(
        code="maple",
        name="Maple Court",
        time_zone="America/Chicago",
        manager_emails="manager@maple.example, office@maple.example",
    )
    connection = Connection.objects.create(
        property=prop,
        provider=AmsiProvider.id,
        settings={
            "url": f"{base_url}/edexweb/esite",
            "portfolio": "DEMO",
            "user_id": "edex_demo",
            "property_id": "001",
            "merchant_id": "1001",
            "close_cutoff": "22:00",
            "timeout": timeout,
        },
        credentials={"password": "sandbox-secret"},
    )
    return prop, connection


class AmsiWorld:
    def __init__(self, tmp_path: Path, *, seed: str | None = "demo", timeout: float = 3.0):
        self.server = SandboxServer(tmp_path / "esite.sqlite3", seed=seed).start()
        self.control = self.server.control()
        self.property, self.connection = connect_to_sandbox(self.server.base_url, timeout=timeout)

    def close(self) -> None:
        self.control.close()
        self.server.stop()
        clear_clients()

    # -- setup ---------------------------------------------------------------------------------
    def confirm_duplicates_refused(self, who: str = "ops@example.test") -> None:
        """What an operator records after seeing this eSite refuse a repeated
        ClientTransactionID (the sandbox answers 206): unknown outcomes are then re-sent and
        checked unattended."""
        record_duplicates_refused(self.connection, who=who, code=DUPLICATE_TRANSACTION)

    def import_property(self):
        run = run_sync(self.connection, SyncKind.IMPORT)
        assert run.status == "succeeded", run.message
        return run

    def lease(self, composite: str) -> Lease:
        p, b, u, r = composite.split("-")
        return AmsiLeaseLink.objects.get(
            connection=self.connection, property_id=p, bldg_id=b, unit_id=u, resi_id=r
        ).lease

    def resident_user(self, lease: Lease, username: str):
        membership = lease.memberships.filter(responsible=True).first()
        user = get_user_model().objects.create_user(
            username, f"{username}@example.test", "pw-123456"
        )
        membership.resident.user = user
        membership.resident.save(update_fields=["user"])
        return user, membership.resident

    def at(self, day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=CHICAGO)

    # -- money -----------------------------------------------------------------------------------
    def pay(
        self, composite: str, amount: str, method: str = PaymentMethod.CARD, *, when=None
    ) -> Payment:
        return services.accept_payment(self.lease(composite), Decimal(amount), method, now=when)

    def posting(self, payment: Payment, kind: str = PostingKind.PAYMENT) -> Posting:
        if kind == PostingKind.PAYMENT:
            return Posting.objects.get(payment=payment, kind=PostingKind.PAYMENT)
        return Posting.objects.get(reversal__payment=payment, kind=PostingKind.REVERSAL)

    def deliver_all(self, rounds: int = 10, max_wait: float = 10.0) -> None:
        """Run due postings until none is left (what the retry sweep does in production),
        waiting for a retry that is due within ``max_wait`` seconds."""
        for _ in range(rounds):
            due = list(outbox.due_postings().values_list("pk", flat=True))
            if not due:
                upcoming = (
                    Posting.objects.filter(state=PostingState.RETRYING)
                    .order_by("next_attempt_at")
                    .values_list("next_attempt_at", flat=True)
                    .first()
                )
                if upcoming is None:
                    return
                wait = (upcoming - timezone.now()).total_seconds()
                if wait > max_wait:
                    return
                time.sleep(max(wait, 0) + 0.05)
                continue
            for pk in due:
                outbox.deliver(pk)

    def settle_and_deposit(self, payment: Payment, *, when=None):
        for p in payment.batch.payments.filter(state="processing"):
            services.settle_payment(p)
        return services.deposit_batch(payment.batch, now=when)

    def close_batches(self, now: dt.datetime):
        return self.connection.get_provider().close_batches(now=now)

    # -- the sandbox's books -----------------------------------------------------------------------
    def ledger(self) -> dict[str, dict]:
        return {b["client_jnl_no"]: b for b in self.control.ledger()}

    def entries(self, jnl: str) -> list[dict]:
        return self.ledger()[jnl]["entries"]

    def batch_link(self, batch) -> AmsiBatchLink:
        """The payments batch eSite opened for our batch id (returns have their own)."""
        return AmsiBatchLink.objects.get(batch=batch, client_jnl_no=batch.batch_id)

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for state in Posting.objects.values_list("state", flat=True):
            out[state] = out.get(state, 0) + 1
        return out

    def resolve_unconfirmed(self) -> int:
        """Play the person (integrations_amsi.demo.look_in_sandbox): each unconfirmed posting
        is looked up in the sandbox's ledger, then "found" or "not there, post it"."""
        return len(look_in_sandbox(self.control, who="world"))

    def all_posted(self) -> bool:
        return not Posting.objects.exclude(state=PostingState.POSTED).exists()
