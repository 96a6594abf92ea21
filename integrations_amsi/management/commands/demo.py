"""Run the demo day end to end against the AMSI sandbox, then print what happened.

Examples::

    make demo                     # the usual way: the Makefile first removes the last demo
    .venv/bin/python manage.py demo --variant duplicates=accept   # on the state as it is

The state is settings.VAR_DIR (var/ by default), the one every other command reads, so the
README's commands run on the demo's database afterwards. Reports are emailed to files in
var/mail/; the portal logins are named after the AMSI residents on the demo's leases.

Steps: start the sandbox (its own process), connect and import the demo property, start a
django-q2 cluster, take payments through the resident API (a blocked lease and an ACH payment on
a cards-only lease are refused), void one same-day payment, settle and deposit the batches, a
card chargeback, an ACH refund, an ACH return before deposit and one after deposit, close the
AMSI batches, print the Batch Deposit Reports and a reconciliation, and say where to look.
"""

from __future__ import annotations

import io
import logging
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import Client, override_settings
from django.utils import timezone

from integrations import services as integration_services
from integrations.attention import attention_mail
from integrations.models import (
    Connection,
    Posting,
    PostingState,
    ReportDelivery,
    SyncKind,
    SyncStatus,
)
from integrations.models.posting import ReportDeliveryState
from integrations.reconciliation import reconcile
from integrations.reports import build_report
from integrations_amsi import demo
from integrations_amsi.models import AmsiBatchLink, AmsiLeaseLink
from integrations_amsi.provider import AmsiProvider
from integrations_amsi.sandbox.testing import SandboxControl
from rentplatform import services
from rentplatform.models import (
    BatchKind,
    BatchStatus,
    DepositBatch,
    Payment,
    PaymentMethod,
    PaymentState,
    Property,
)

PAYMENTS = [
    ("ana", PaymentMethod.CARD, "1250.00"),
    ("ben", PaymentMethod.ACH, "975.50"),
    ("chloe", PaymentMethod.CARD, "1100.00"),
    ("farid", PaymentMethod.ACH, "1320.25"),
    ("erin", PaymentMethod.CARD, "890.00"),
    ("gia", PaymentMethod.ACH, "640.00"),
    ("hugo", PaymentMethod.ACH, "720.00"),
    ("ana", PaymentMethod.ACH, "25.00"),
    ("chloe", PaymentMethod.CARD, "35.00"),
]
REFUSED = [("dev", PaymentMethod.CARD, "1000.00"), ("erin", PaymentMethod.ACH, "890.00")]


class Command(BaseCommand):
    help = "Run the demo day against the AMSI sandbox with a real django-q2 worker."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8089, help="sandbox port (if free)")
        parser.add_argument("--timeout", type=float, default=90.0)
        parser.add_argument(
            "--variant",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="run the sandbox with this variant of an unknown eSite behaviour (repeatable; "
            "see amsi_sandbox --help), e.g. duplicates=accept",
        )

    def handle(self, *args, **options):
        # The demo narrates what happens; the refusals it provokes are not server errors.
        for name in ("django.request", "integrations", "integrations_amsi"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.out = self.stdout.write
        self.logins: dict[str, tuple[str, str]] = {}  # handle -> (login, the resident's name)
        demo.mail_dir().mkdir(parents=True, exist_ok=True)
        with override_settings(**demo.demo_mail_settings()):
            self._run(options)

    def _run(self, options) -> None:
        self.out(self.style.MIGRATE_HEADING("Demo day: the platform and AMSI eSite (sandbox)"))
        call_command("migrate", verbosity=0)
        call_command("integrations_schedule", stdout=io.StringIO())
        port = demo.free_port(options["port"])
        sandbox = worker = control = None
        demo.stop_children_on_sigterm()
        try:
            sandbox = demo.start_sandbox(port, seed=True, variants=options["variant"])
            self.out(
                f"1. Sandbox eSite running on http://127.0.0.1:{port}/ "
                f"(state {demo.sandbox_state()})"
                + (f", variants {', '.join(options['variant'])}" if options["variant"] else "")
            )
            connection = self._connect(port)
            self._import(connection)
            worker = demo.start_worker()
            self.out("4. django-q2 cluster started (python manage.py qcluster)")
            control = SandboxControl(f"http://127.0.0.1:{port}")
            # One reply is lost on purpose: the write lands in eSite, the answer never comes.
            control.add_fault("lost_reply", "AddPayment", count=1)
            payments = self._take_payments()
            self._wait(options["timeout"])
            self._unconfirmed(control, options["timeout"])
            self._day(connection, payments)
            self._wait(options["timeout"])
            self._close(connection, "7. The cutoff: AMSI batches closed by the integration")
            self._deposit(connection, payments)
            self._wait(options["timeout"])
            self._close(
                connection, "   and the returns' own eSite batches settled (the sandbox's, above)"
            )
            self._close_reversal_batches(connection)
            self._reports(connection, options["timeout"])
            ok = self._reconcile(connection)
        finally:
            if control is not None:
                control.close()
            demo.stop(worker, sandbox)
        self._where(port)
        if not ok:
            raise CommandError("the demo's reconciliation found differences (see above)")

    # -- steps -----------------------------------------------------------------------------------
    def _connect(self, port: int) -> Connection:
        prop, _ = Property.objects.update_or_create(
            code=demo.DEMO_PROPERTY,
            defaults={
                "name": "Maple Court",
                "time_zone": "America/Chicago",
                "manager_emails": "manager@maplecourt.example",
            },
        )
        connection, _ = Connection.objects.update_or_create(
            property=prop,
            defaults={
                "provider": AmsiProvider.id,
                "settings": {
                    "url": f"http://127.0.0.1:{port}/edexweb/esite",
                    "portfolio": "DEMO",
                    "user_id": demo.SANDBOX_USER,
                    "property_id": "001",
                    "merchant_id": "1001",
                    "created_by": demo.SANDBOX_USER,
                    # The demo day closes its batches at once instead of at 22:00.
                    "close_cutoff": "00:00",
                    "timeout": 10,
                },
                "credentials": {"password": demo.SANDBOX_PASSWORD},
            },
        )
        check = integration_services.test_connection(connection)
        if not check.ok:
            raise CommandError(f"connection test failed: {check.message}")
        self.out(f"2. Connected property {prop.code}: {check.message}")
        User = get_user_model()
        if not User.objects.filter(username=demo.ADMIN_USER).exists():
            User.objects.create_superuser(
                demo.ADMIN_USER, "admin@example.test", demo.ADMIN_PASSWORD
            )
        return connection

    def _import(self, connection: Connection) -> None:
        run = integration_services.run_sync(connection, SyncKind.IMPORT, triggered_by="demo")
        if run.status != SyncStatus.SUCCEEDED:
            raise CommandError(f"import failed: {run.summary()}")
        self.out(f"3. Imported from AMSI: {run.summary()}")
        User = get_user_model()
        for handle, composite in demo.RESIDENTS:
            p, b, u, r = composite.split("-")
            link = AmsiLeaseLink.objects.get(
                connection=connection, property_id=p, bldg_id=b, unit_id=u, resi_id=r
            )
            member = (
                link.lease.memberships.filter(responsible=True).select_related("resident").first()
            )
            resident = member.resident
            username = demo.login_name(resident)
            user = User.objects.filter(username=username).first() or User.objects.create_user(
                username, f"{username}@example.test", demo.RESIDENT_PASSWORD
            )
            resident.user = user
            resident.save(update_fields=["user"])
            full = f"{resident.first_name} {resident.last_name}".strip() or username
            self.logins[handle] = (username, full)

    def login(self, handle: str) -> str:
        return self.logins[handle][0]

    def name(self, handle: str) -> str:
        return self.logins[handle][1]

    def _client(self, username: str) -> tuple[Client, int]:
        client = Client()
        if not client.login(username=username, password=demo.RESIDENT_PASSWORD):
            raise CommandError(f"demo resident {username} cannot log in")
        leases = client.get("/api/leases/").json()
        results = leases["results"] if isinstance(leases, dict) else leases
        return client, results[0]["id"]

    def _take_payments(self) -> dict[str, list[Payment]]:
        self.out("5. Residents pay through the portal API:")
        taken: dict[str, list[Payment]] = {}
        width = max(len(login) for login, _ in self.logins.values())
        for handle, method, amount in PAYMENTS + REFUSED:
            username = self.login(handle)
            client, lease_id = self._client(username)
            response = client.post(
                f"/api/leases/{lease_id}/payments/",
                {"amount": amount, "method": method},
                content_type="application/json",
            )
            body = response.json()
            if response.status_code in (200, 201):
                payment = Payment.objects.get(reference=body["id"])
                taken.setdefault(handle, []).append(payment)
                self.out(
                    f"   {username:{width}} {method:4} {amount:>9}  accepted, "
                    f"batch {body['batch_id']}"
                )
            else:
                self.out(
                    self.style.WARNING(
                        f"   {username:{width}} {method:4} {amount:>9}  refused: "
                        f"{body.get('detail')}"
                    )
                )
        return taken

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        done = [PostingState.POSTED, PostingState.NEEDS_ATTENTION, PostingState.UNCONFIRMED]
        while time.monotonic() < deadline:
            if not Posting.objects.exclude(state__in=done).exists():
                return
            time.sleep(0.25)
        raise CommandError(
            f"postings did not reach AMSI in time; see {demo.shown(demo.demo_dir() / 'worker.log')}"
        )

    def _unconfirmed(self, control: SandboxControl, timeout: float) -> None:
        """The lost reply: the posting waits as unconfirmed and the demo plays the manager."""
        waiting = Posting.objects.filter(state=PostingState.UNCONFIRMED)
        if not waiting.exists():
            return
        provider = waiting.first().connection.get_provider()
        self.out(
            f"   {waiting.count()} reply lost on the way back (injected): the posting waits as "
            "'unconfirmed', never re-sent blindly. What the console tells the manager:"
        )
        self.out(f"     {provider.explain(waiting.first()).what_to_do}")
        # What the schedule integrations.attention_mail does every 15 minutes, run now.
        if attention_mail():
            self.out(
                "   the managers were mailed about it (what happened, what to do, the console "
                f"page): a message file in {demo.shown(demo.mail_dir())}/"
            )
        deadline = time.monotonic() + timeout
        while waiting.exists() and time.monotonic() < deadline:
            for _key, line in demo.look_in_sandbox(control):
                self.out(f"   the manager looked in eSite: {line}")
            time.sleep(0.5)
        self._wait(timeout)

    def _day(self, connection: Connection, taken: dict[str, list[Payment]]) -> None:
        self.out("6. The rest of the day:")
        chloe_small = taken["chloe"][1]
        services.void_payment(chloe_small, note="resident asked to cancel")
        self.out(f"   voided {self.name('chloe')}'s same-day card payment {chloe_small.amount}")
        hugo = taken["hugo"][0]
        services.return_payment(hugo, "R01")
        self.out(
            f"   {self.name('hugo')}'s ACH {hugo.amount} returned R01 before deposit "
            "(original batch)"
        )

    def _deposit(self, connection: Connection, taken: dict[str, list[Payment]]) -> None:
        self.out("8. The bank deposits the batches; reversals after deposit:")
        now = timezone.now()
        for batch in DepositBatch.objects.filter(
            property=connection.property, kind=BatchKind.PAYMENTS
        ):
            for payment in batch.payments.filter(state=PaymentState.PROCESSING):
                services.settle_payment(payment)
            services.deposit_batch(batch, now=now)
            self.out(f"   batch {batch.batch_id} ({batch.stream}) settled and deposited")
        ana = taken["ana"][0]
        services.charge_back_payment(ana)
        self.out(f"   {self.name('ana')}'s card payment {ana.amount} charged back after deposit")
        ben = taken["ben"][0]
        services.refund_payment(ben)
        self.out(f"   {self.name('ben')}'s ACH payment {ben.amount} refunded after deposit")
        gia = taken["gia"][0]
        services.return_payment(gia, "R09")
        self.out(
            f"   {self.name('gia')}'s ACH payment {gia.amount} returned R09 after deposit "
            "(reversals batch)"
        )
        self.out(
            "   each names the original ClientTransactionID and batch (as production did); "
            "the sandbox books it in a separate batch with a negative amount (where a real eSite "
            "books a return is not known: docs/amsi.md)"
        )

    def _close(self, connection: Connection, title: str) -> None:
        lines = connection.get_provider().close_batches()
        self.out(f"{title} (UpdateSettlementData):")
        for line in lines:
            self.out(f"   {line}")

    def _close_reversal_batches(self, connection: Connection) -> None:
        for batch in DepositBatch.objects.filter(
            property=connection.property, kind=BatchKind.REVERSALS
        ):
            services.close_batch(batch)
            services.deposit_batch(batch)

    def _reports(self, connection: Connection, timeout: float) -> None:
        mail = demo.shown(demo.mail_dir())
        self.out(
            f"9. Batch Deposit Reports (the worker emails them to the managers, into {mail}/):"
        )
        for batch in DepositBatch.objects.filter(property=connection.property).order_by("batch_id"):
            report = build_report(batch)
            self.out("")
            for line in report.as_text().splitlines():
                self.out(f"   {line}")
        self.out("")
        # Each deposited batch's report is sent by the worker (its delivery row is written by
        # the task): wait until all are sent, so the folder printed holds them.
        deposited = DepositBatch.objects.filter(
            property=connection.property, status=BatchStatus.DEPOSITED
        ).count()
        sent = ReportDelivery.objects.filter(
            batch__property=connection.property, state=ReportDeliveryState.SENT
        )
        deadline = time.monotonic() + timeout
        while sent.count() < deposited and time.monotonic() < deadline:
            time.sleep(0.25)
        files = len(list(demo.mail_dir().glob("*.log")))
        told = Posting.objects.filter(
            connection=connection, attention_mailed_at__isnull=False
        ).exists()
        self.out(
            f"   emailed {sent.count()} of {deposited} reports to "
            f"{connection.property.manager_emails}: {files} message "
            f"{'file' if files == 1 else 'files'} in {mail}/"
            + (" (with the mail about the unconfirmed posting)" if told else "")
        )

    def _reconcile(self, connection: Connection) -> bool:
        result = reconcile(connection, timezone.localdate().replace(day=1), ran_by="demo")
        style = self.style.SUCCESS if result.ok else self.style.ERROR
        self.out("10. Reconciliation with AMSI's External Deposits report:")
        self.out(style(f"   {result.summary()}"))
        for d in result.differences:
            self.out(f"   batch {d.batch_id}: {d.kind}: {d.message}")
        posted = Posting.objects.filter(state=PostingState.POSTED).count()
        attention = Posting.objects.filter(state=PostingState.NEEDS_ATTENTION).count()
        settled = AmsiBatchLink.objects.filter(settled_at__isnull=False).count()
        self.out(
            f"   postings: {posted} posted, {attention} need attention; "
            f"AMSI batches settled: {settled} of {AmsiBatchLink.objects.count()}"
        )
        total = sum((p.amount for p in Payment.objects.all()), Decimal("0.00"))
        self.out(f"   payments taken today: {Payment.objects.count()} for {total}")
        return result.ok and attention == 0

    def _where(self, port: int) -> None:
        d, manage = demo.demo_dir(), demo.manage_command()
        leases = dict(demo.RESIDENTS)
        self.out("")
        self.out(self.style.SUCCESS("Where to look"))
        self.out(
            f"   state: {demo.shown(d)}/ (database db.sqlite3, sandbox books sandbox.sqlite3, "
            "worker.log, sandbox.log, mail/); every manage.py command reads it"
        )
        self.out("   explore: make serve (another port: make serve PORT=8001), then")
        self.out(
            "     admin      http://127.0.0.1:8000/admin/  "
            f"({demo.ADMIN_USER} / {demo.ADMIN_PASSWORD})"
        )
        self.out(
            "     portal     http://127.0.0.1:8000/  as a resident, password "
            f"{demo.RESIDENT_PASSWORD}:"
        )
        width = max(len(login) for login, _ in self.logins.values())
        for handle, (login, full) in self.logins.items():
            self.out(f"       {login:{width}}  {full}, AMSI lease {leases[handle]}")
        self.out(f"     eSite      http://127.0.0.1:{port}/edexweb/esite/cashbatches")
        self.out(
            f"     deposits   http://127.0.0.1:{port}/edexweb/esite/externaldeposits?level=payment"
        )
        month = timezone.localdate().strftime("%Y-%m")
        self.out(
            "   commands on the demo's state, while `make serve` runs (it starts the demo's "
            "sandbox, which they call):"
        )
        self.out(f"     {manage} integrations_reconcile --property maple --month {month}")
        self.out(f"     {manage} amsi_probe maple")
        self.out(f"     {manage} integrations_sync --property maple")
        self.out(
            f"   the sandbox alone instead: {manage} amsi_sandbox --addr 127.0.0.1:{port} "
            f"--state {demo.shown(demo.sandbox_state())}"
        )
