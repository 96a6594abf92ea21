"""Taking payments while the same day's batches are settled, closed and deposited: no deadlock.

PostgreSQL only. Residents pay through the API (DRF's APIClient, one thread and one database
connection each, two threads per lease so payments on one lease queue on its row lock), a
resident voids some of their payments, and two processor threads settle the day's processing
payments and deposit (close + deposit) the day's batches over and over, racing each other. The
property has an accounting connection, so the outbox writes its postings inside each payment's
and void's transaction, as in production.

Every service takes its row locks in one order (docs/reliability.md, "Lock order"):
lease -> deposit batch (payments batch, then a reversals batch) -> payment, and locks only the
rows it means (``select_for_update(of=("self",))``). Before that order, a settle locked payment,
batch and lease in one joined ``SELECT ... FOR UPDATE`` while a payment held its lease and
waited for its batch, and a deposit held the batch and waited for the settled payment: PostgreSQL
broke those cycles with ``DeadlockDetected`` (an HTTP 500 for the resident). Bounded: it stops
at PAYMENTS payments or after DEADLINE seconds, whichever comes first.

On SQLite the test is skipped: every write transaction takes the one database write lock first
(``transaction_mode=IMMEDIATE``), so SQLite cannot deadlock; there is nothing to observe.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import traceback
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import Connection, Posting
from rentplatform.models import BatchStatus, DepositBatch, Payment, PaymentState
from rentplatform.services import (
    ServiceError,
    accept_payment,
    close_batch,
    deposit_batch,
    refund_payment,
    return_payment,
    settle_payment,
    void_payment,
)
from rentplatform.services import payments as payments_module
from tests.factories import LeaseFactory, LeaseResidentFactory, PropertyFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

PAYMENTS = 200
LEASES = 4
PAYERS_PER_LEASE = 2
PROCESSORS = 2
DEADLINE = 30.0


@pytest.fixture
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "the deadlock stress test needs PostgreSQL (row locks); SQLite serializes every "
            "write transaction on one database lock and cannot deadlock. Run it with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db>"
        )


@pytest.fixture
def manual_delivery(settings):
    """Postings are written in the payment's transaction; no task runs (not under test here)."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


class Run:
    """What the threads share: counters, errors, the stop condition."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.paid = 0
        self.statuses: Counter[int] = Counter()
        self.events: Counter[str] = Counter()
        self.errors: list[str] = []
        self.payers_done = threading.Event()

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > DEADLINE

    def take_ticket(self) -> bool:
        with self.lock:
            if self.paid >= PAYMENTS or self.out_of_time():
                return False
            self.paid += 1
            return True

    def error(self, where: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else "".join(traceback.format_exception_only(exc))
        with self.lock:
            self.errors.append(f"{where}: {text.strip()[:400]}")

    def count(self, event: str) -> None:
        with self.lock:
            self.events[event] += 1


def _in_own_connection(run: Run, where: str, body) -> threading.Thread:
    def target() -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - every failure is the test's result
            run.error(where, exc)
        finally:
            connections.close_all()

    return threading.Thread(target=target, name=where, daemon=True)


def _payer(run: Run, lease, user, number: int):
    def body() -> None:
        client = APIClient()
        client.force_authenticate(user=user)
        url = reverse("api:lease-payments", args=[lease.pk])
        for n in itertools.count():
            if not run.take_ticket():
                return
            amount = f"{10 + (number * 7 + n) % 90}.{n % 100:02d}"
            method = "card" if n % 3 else "ach"
            try:
                response = client.post(
                    url,
                    {"amount": amount, "method": method},
                    format="json",
                    HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
                )
            except Exception as exc:  # noqa: BLE001 - an exception here is an HTTP 500
                run.error(f"payer {number} POST", exc)
                continue
            with run.lock:
                run.statuses[response.status_code] += 1
            if response.status_code != 201:
                run.error(f"payer {number}", f"{response.status_code} {response.content[:300]!r}")
                continue
            if n % 10 == 3:  # the resident changes their mind: void it (if still processing)
                void_url = reverse("api:payment-void", args=[response.json()["id"]])
                voided = client.post(void_url, HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
                with run.lock:
                    run.statuses[voided.status_code] += 1
                if voided.status_code == 200:
                    run.count("voided")
                elif voided.status_code == 409:
                    run.count("void refused (already settled)")
                else:
                    run.error(
                        f"payer {number} void", f"{voided.status_code} {voided.content[:300]!r}"
                    )

    return body


def _settle_and_deposit(prop, day, *, close_first: bool = False) -> None:
    """One processor pass: settle what is processing, then deposit (close) each batch.

    ``close_first``: close the day's open batches before settling (the cutoff), so payments
    taken from then on open a new batch of the same day and the closed one can be deposited.
    """
    if close_first:
        for batch in list(
            DepositBatch.objects.filter(
                property=prop, business_day=day, status=BatchStatus.OPEN
            ).order_by("batch_id")
        ):
            try:
                close_batch(batch)
            except ServiceError as err:
                if err.code != "not_open":  # the other processor deposited it meanwhile
                    raise
    processing = Payment.objects.filter(
        batch__property=prop, business_day=day, state=PaymentState.PROCESSING
    ).order_by("accepted_at")
    for payment in list(processing):
        try:
            settle_payment(payment)
        except ServiceError as err:
            if err.code != "state":  # the other processor (or a void) got there first
                raise
    batches = (
        DepositBatch.objects.filter(property=prop, business_day=day)
        .exclude(status=BatchStatus.DEPOSITED)
        .order_by("batch_id")
    )
    for batch in list(batches):
        try:
            deposit_batch(batch)
        except ServiceError as err:
            # A payment joined after this pass's settles, or the other processor deposited it.
            if err.code not in ("unsettled", "deposited"):
                raise


def _processor(run: Run, prop, day, number: int):
    def body() -> None:
        while True:
            finished = run.payers_done.is_set()
            _settle_and_deposit(prop, day, close_first=number == 0)
            run.count("processor passes")
            if finished or run.out_of_time():
                return

    return body


def _reverser(run: Run, prop, day):
    """The bank's and the card network's side: ACH returns and card refunds of settled payments
    (whatever batch they are in, deposited or about to be)."""

    def body() -> None:
        n = 0
        while not run.payers_done.is_set() and not run.out_of_time():
            settled = list(
                Payment.objects.filter(batch__property=prop, state=PaymentState.SETTLED).order_by(
                    "?"
                )[:1]
            )
            if not settled:
                time.sleep(0.01)
                continue
            payment = settled[0]
            n += 1
            if n % 2:  # leave most payments alone: the batches must still add up
                continue
            try:
                if payment.method == "ach":
                    return_payment(payment, "R01")
                    run.count("returned")
                else:
                    refund_payment(payment)
                    run.count("refunded")
            except ServiceError as err:
                if err.code != "state":  # deposited meanwhile is fine; another state is not
                    raise

    return body


def test_paying_while_the_days_batches_are_deposited_never_deadlocks(
    postgresql_only, manual_delivery, capsys
):
    prop = PropertyFactory()
    Connection.objects.create(property=prop, provider="fake")
    leases = []
    for _ in range(LEASES):
        lease = LeaseFactory(unit__building__property=prop, balance=Decimal("1000.00"))
        member = LeaseResidentFactory(lease=lease)
        leases.append((lease, member.resident.user))
    day = prop.local_day(timezone.now())
    deadlocks_before = _deadlocks()

    run = Run()
    payers = [
        _in_own_connection(run, f"payer-{i}", _payer(run, lease, user, i))
        for i, (lease, user) in enumerate(leases * PAYERS_PER_LEASE)
    ]
    processors = [
        _in_own_connection(run, f"processor-{i}", _processor(run, prop, day, i))
        for i in range(PROCESSORS)
    ]
    reversers = [_in_own_connection(run, "reverser", _reverser(run, prop, day))]
    for thread in processors + payers + reversers:
        thread.start()
    for thread in payers:
        thread.join(DEADLINE + 10)
    run.payers_done.set()
    for thread in processors + reversers:
        thread.join(DEADLINE + 10)
    stuck = [t.name for t in payers + processors + reversers if t.is_alive()]
    elapsed = time.monotonic() - run.started

    # The last pass, alone: everything settles and every batch of the day is deposited.
    if not stuck:
        _settle_and_deposit(prop, day)
    time.sleep(1.1)  # PostgreSQL flushes its statistics counters about once a second
    deadlocks = _deadlocks() - deadlocks_before

    payments = Payment.objects.filter(batch__property=prop)
    states = Counter(payments.values_list("state", flat=True))
    late = Payment.objects.filter(
        batch__status=BatchStatus.DEPOSITED,
        state__in=[PaymentState.PROCESSING, PaymentState.SETTLED],
    ).count()
    line = (
        f"DEADLOCK-STRESS [{connection.vendor}] payments={payments.count()} "
        f"http={dict(sorted(run.statuses.items()))} events={dict(run.events)} "
        f"states={dict(states)} batches={DepositBatch.objects.filter(property=prop).count()} "
        f"deadlocks={deadlocks} errors={len(run.errors)} stuck={stuck} elapsed={elapsed:.1f}s"
    )
    with capsys.disabled():
        print(f"\n{line}")
        for error in run.errors[:10]:
            print(f"  {error}")

    assert not stuck, f"threads still running after the deadline: {stuck}"
    assert run.errors == [], run.errors[:10]
    assert not [code for code in run.statuses if code >= 500]
    assert deadlocks == 0, line
    assert run.statuses[201] == payments.count() >= 50, line
    # Nothing joined a batch after it was deposited, and the last pass deposited everything.
    assert late == 0, line
    assert set(states) <= {
        PaymentState.DEPOSITED,
        PaymentState.VOIDED,
        PaymentState.REFUNDED,
        PaymentState.RETURNED,
    }, line
    assert Posting.objects.filter(payment__batch__property=prop, reversal=None).count() == (
        payments.count()
    )


def _wait_until_blocked_or_done(thread: threading.Thread, timeout: float = 3.0) -> None:
    """Until ``thread`` finished or another backend of this database waits for a row lock."""
    end = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)


def test_a_payment_never_joins_a_batch_deposited_while_it_was_taken(
    postgresql_only, manual_delivery, monkeypatch
):
    """Deterministic: the payment has chosen the day's open batch when the batch is deposited.

    The payment locks the open batch it joins (``FOR NO KEY UPDATE``) and the deposit locks the
    batch first, so one waits for the other: the deposit either sees the new payment (and
    refuses: it is not settled) or runs first, and then the payment opens a new batch. Before,
    the payment only read the batch: the deposit ran, and the payment then joined a deposited
    batch, where it would never be deposited.
    """
    prop = PropertyFactory()
    lease = LeaseFactory(unit__building__property=prop)
    resident = LeaseResidentFactory(lease=lease).resident
    first = settle_payment(payments_module.accept_payment(lease, "10.00", "card"))
    batch = first.batch

    chosen, go = threading.Event(), threading.Event()
    real = payments_module.batch_for_payment

    def pausing(*args, **kwargs):
        picked = real(*args, **kwargs)
        if threading.current_thread().name == "payer":
            chosen.set()
            go.wait(10)
        return picked

    monkeypatch.setattr(payments_module, "batch_for_payment", pausing)
    run = Run()
    result = {}

    def pay() -> None:
        result["payment"] = payments_module.accept_payment(
            lease, "20.00", "card", resident=resident
        )

    def deposit() -> None:
        try:
            deposit_batch(batch)
            result["deposit"] = "deposited"
        except ServiceError as err:
            result["deposit"] = err.code

    payer = _in_own_connection(run, "payer", pay)
    payer.start()
    assert chosen.wait(10)
    depositor = _in_own_connection(run, "depositor", deposit)
    depositor.start()
    _wait_until_blocked_or_done(depositor)
    go.set()
    payer.join(15)
    depositor.join(15)

    assert run.errors == [], "\n".join(run.errors)
    payment = Payment.objects.select_related("batch").get(pk=result["payment"].pk)
    assert not (
        payment.batch.status == BatchStatus.DEPOSITED and payment.state == PaymentState.PROCESSING
    ), f"payment joined batch {payment.batch.batch_id} after it was deposited ({result})"


LOCK_RANK = {"rentplatform_lease": 0, "rentplatform_depositbatch": 1, "rentplatform_payment": 2}
_LOCKING = re.compile(r"\bFOR (?:NO KEY )?UPDATE(?: OF (?P<of>[^;]+?))?(?: NOWAIT| SKIP LOCKED)?$")
_FROM = re.compile(r'\bFROM "(?P<table>\w+)"')


def _locks(queries) -> list[str]:
    """The tables each row-locking query locked, in order; a join without OF names them all."""
    locked = []
    for query in queries:
        sql = query["sql"].strip()
        match = _LOCKING.search(sql)
        if not match:
            continue
        if match["of"] is None:
            tables = [_FROM.search(sql)["table"], *re.findall(r'JOIN "(\w+)"', sql)]
            locked.append("+".join(tables))
        else:
            locked.append("+".join(t.strip('" ') for t in match["of"].split(",")))
    return locked


def test_every_service_locks_only_its_own_rows_in_the_one_order(postgresql_only, manual_delivery):
    """The lock-order rule as a regression guard, read from the SQL the services send.

    Each locking query locks one table's rows (``OF`` that table), and within one service call
    the tables come in the order lease -> deposit batch -> payment (a reversal may lock the
    original batch, then the day's reversals batch). Before: ``accept_payment`` locked lease,
    unit, building and property in one ``FOR UPDATE``; settling and reversing locked payment,
    batch and lease in one, in the opposite order to a deposit (batch, then payments).
    """
    prop = PropertyFactory()
    Connection.objects.create(property=prop, provider="fake")
    lease = LeaseFactory(unit__building__property=prop)
    resident = LeaseResidentFactory(lease=lease).resident
    seen = {}

    def record(name, call):
        with CaptureQueriesContext(connection) as ctx:
            result = call()
        seen[name] = _locks(ctx.captured_queries)
        return result

    first = record("accept", lambda: accept_payment(lease, "10.00", "ach", resident=resident))
    second = accept_payment(lease, "11.00", "card", resident=resident)
    record("void", lambda: void_payment(second))
    record("settle", lambda: settle_payment(first))
    third = accept_and_settle(lease)
    record("refund before deposit", lambda: refund_payment(third))
    batch = DepositBatch.objects.get(pk=first.batch_id)
    record("deposit", lambda: deposit_batch(batch))
    record("return after deposit", lambda: return_payment(first, "R01"))
    fourth = accept_payment(lease, "12.00", "ach")
    record("close", lambda: close_batch(fourth.batch))

    for name, tables in seen.items():
        assert tables, f"{name} locked nothing"
        for locked in tables:
            assert locked in LOCK_RANK, f"{name} locked {locked} in one query: {tables}"
        ranks = [LOCK_RANK[t] for t in tables]
        assert ranks == sorted(ranks), f"{name} locked out of order: {tables}"
    assert seen["accept"][:2] == ["rentplatform_lease", "rentplatform_depositbatch"], seen
    assert seen["settle"] == ["rentplatform_payment"], seen
    assert seen["deposit"][0] == "rentplatform_depositbatch", seen


def accept_and_settle(lease) -> Payment:
    return settle_payment(accept_payment(lease, "13.00", "card"))
