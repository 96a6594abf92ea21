"""``rentplatform.prepared``: querysets compiled once and one-row writes, on the database the
tests run on (SQLite, and PostgreSQL in CI's second pass): what they return and store is what
the ORM returns and stores."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from rentplatform.models import BatchKind, BatchStatus, DepositBatch, Lease, Payment
from rentplatform.prepared import (
    Prepared,
    Upsert,
    insert_row,
    update_row,
    update_then_insert,
    update_then_update,
    upsert_row,
)
from rentplatform.services import accept_payment
from tests.factories import lease_with_resident

from .conftest import chicago

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_WITH_PROPERTY = Prepared(
    lambda pk: (
        Lease.objects.select_related("unit__building__property")
        .annotate(payments_made=Count("payments"))
        .filter(pk=pk)
        .order_by()
    )
)
LOCKED_BATCH = Prepared(
    lambda prop_id, stream, day: (
        DepositBatch.objects.select_for_update()
        .filter(property_id=prop_id, stream=stream, business_day=day, status=BatchStatus.OPEN)
        .order_by()
    ),
    int,
    str,
    dt.date,
)


@pytest.fixture
def paid():
    lease, resident = lease_with_resident()
    payment = accept_payment(lease, "12.34", "card", now=chicago(2026, 11, 2, 9))
    return lease, payment


def test_a_prepared_read_returns_what_the_orm_returns_in_one_query(paid):
    lease, payment = paid
    with CaptureQueriesContext(connection) as queries:
        (got,) = LEASE_WITH_PROPERTY(lease.pk)
        prop = got.unit.building.property  # loaded with it: no query
    assert len(queries) == 1
    expected = (
        Lease.objects.select_related("unit__building__property")
        .annotate(payments_made=Count("payments"))
        .get(pk=lease.pk)
    )
    assert got.payments_made == expected.payments_made == 1
    assert prop == expected.unit.building.property and prop.code == lease.property.code
    # Converted as the ORM converts: Decimal, aware datetimes, dates.
    assert got.balance == expected.balance and isinstance(got.balance, Decimal)
    assert got.start_date == expected.start_date


def test_values_of_each_kind_reach_the_sql_and_other_values_find_nothing(paid):
    lease, payment = paid
    batch = payment.batch
    with transaction.atomic():
        assert LOCKED_BATCH(lease.property.pk, batch.stream, batch.business_day) == [batch]
        assert LOCKED_BATCH(lease.property.pk, "ach", batch.business_day) == []
        later = batch.business_day + dt.timedelta(days=1)
        assert LOCKED_BATCH(lease.property.pk, batch.stream, later) == []
    assert LEASE_WITH_PROPERTY(lease.pk + 1000) == []


def test_compiled_once_then_only_run(paid):
    lease, _ = paid
    LEASE_WITH_PROPERTY(lease.pk)
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True) as compiling:
        assert LEASE_WITH_PROPERTY.first(lease.pk).pk == lease.pk
    assert compiling.call_count == 0


def test_converters_are_worked_out_once_and_every_run_is_converted(paid):
    lease, payment = paid
    read = Prepared(lambda pk: Payment.objects.select_related("batch", "lease").filter(pk=pk))
    original = SQLCompiler.get_converters
    with mock.patch.object(
        SQLCompiler, "get_converters", autospec=True, side_effect=original
    ) as working_out:
        got = [read.first(payment.pk) for _ in range(3)]
    assert working_out.call_count == 1
    expected = Payment.objects.select_related("batch", "lease").get(pk=payment.pk)
    for row in got:  # Decimal, aware datetime, date: converted on every run, not only the first
        assert row.amount == expected.amount == Decimal("12.34")
        assert isinstance(row.amount, Decimal)
        assert row.accepted_at == expected.accepted_at and row.accepted_at.tzinfo is not None
        assert row.batch.business_day == expected.batch.business_day
        assert isinstance(row.batch.business_day, dt.date)


def test_a_locking_read_outside_a_transaction_is_refused_as_the_orm_refuses(paid):
    lease, payment = paid
    batch = payment.batch
    with pytest.raises(transaction.TransactionManagementError):
        LOCKED_BATCH(lease.property.pk, batch.stream, batch.business_day)


def test_a_value_that_does_not_reach_the_sql_is_a_mistake_said_at_once(paid):
    unused = Prepared(lambda pk, other: Lease.objects.filter(pk=pk))
    with pytest.raises(ValueError, match=r"values \[1\] do not reach its SQL"):
        unused(paid[0].pk, 5)


def test_each_thread_compiles_for_its_own_connection(paid):
    lease, _ = paid
    LEASE_WITH_PROPERTY(lease.pk)
    found = []

    def other_thread():
        try:
            found.append(LEASE_WITH_PROPERTY.first(lease.pk).pk)
        finally:
            connection.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert found == [lease.pk]


def test_insert_row_stores_what_create_would_defaults_and_auto_now_included(paid):
    lease, payment = paid
    prop = lease.property
    batch = insert_row(
        DepositBatch(
            batch_id="900000001",
            property=prop,
            stream="ach",
            business_day=dt.date(2026, 11, 3),
            kind=BatchKind.PAYMENTS,
        )
    )
    assert batch.pk and not batch._state.adding
    stored = DepositBatch.objects.get(pk=batch.pk)
    assert stored.status == BatchStatus.OPEN  # the field's default
    assert stored.opened_at is not None and stored.opened_at.tzinfo is not None  # auto_now_add
    assert stored.business_day == dt.date(2026, 11, 3)
    copy = Payment.objects.get(pk=payment.pk)
    copy.pk = None
    copy.reference = Payment._meta.get_field("reference").get_default()
    copy.idempotency_key = None
    insert_row(copy)
    again = Payment.objects.get(pk=copy.pk)
    assert (again.amount, again.method, again.batch_id) == (
        Decimal("12.34"),
        "card",
        payment.batch_id,
    )
    assert again.reference == copy.reference and again.reference != payment.reference


def test_update_row_writes_the_fields_named_on_its_condition(paid):
    _, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    batch.closed_at = chicago(2026, 11, 2, 18)
    # The condition does not hold: nothing written.
    assert update_row(batch, ["status", "closed_at"], where={"status": BatchStatus.DEPOSITED}) == 0
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
    # None is IS NULL; the condition holds: written.
    where = {"status": BatchStatus.OPEN, "deposited_at": None}
    assert update_row(batch, ["status", "closed_at"], where=where) == 1
    stored = DepositBatch.objects.get(pk=batch.pk)
    assert stored.status == BatchStatus.CLOSED and stored.closed_at == chicago(2026, 11, 2, 18)


def _next_batch(payment, batch_id: str) -> DepositBatch:
    return DepositBatch(
        batch_id=batch_id,
        property=payment.batch.property,
        stream="ach",
        business_day=dt.date(2026, 11, 3),
        kind=BatchKind.PAYMENTS,
    )


def test_update_then_insert_writes_both_only_when_the_condition_holds(paid):
    _, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    closing = {"status": BatchStatus.DEPOSITED}  # does not hold
    new = _next_batch(payment, "900000002")
    assert not update_then_insert(batch, ["status"], where=closing, new=new)
    assert new.pk is None and not DepositBatch.objects.filter(batch_id="900000002").exists()
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
    with CaptureQueriesContext(connection) as queries:
        changed = update_then_insert(
            batch, ["status"], where={"status": BatchStatus.OPEN, "closed_at": None}, new=new
        )
    assert changed and new.pk and not new._state.adding
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.CLOSED
    assert DepositBatch.objects.get(pk=new.pk).batch_id == "900000002"
    if connection.vendor == "postgresql":
        # One statement, its own transaction: no BEGIN, no COMMIT.
        assert len(queries) == 1
        assert queries[0]["sql"].startswith("WITH changed AS (UPDATE")


def test_update_then_insert_changes_nothing_when_the_insert_fails(paid):
    _, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    taken = _next_batch(payment, batch.batch_id)  # the batch id is unique: refused
    with pytest.raises(IntegrityError):
        update_then_insert(batch, ["status"], where={"status": BatchStatus.OPEN}, new=taken)
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
    # Inside a caller's transaction: a savepoint, so the caller's transaction goes on.
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            update_then_insert(batch, ["status"], where={"status": BatchStatus.OPEN}, new=taken)
        assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
        other = _next_batch(payment, "900000003")
        assert update_then_insert(batch, ["status"], where={"status": BatchStatus.OPEN}, new=other)
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.CLOSED
    assert DepositBatch.objects.filter(batch_id="900000003").exists()


def test_update_then_update_writes_the_second_row_only_when_the_first_changed(paid):
    lease, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    payment.state = "posted_test"
    with transaction.atomic():
        assert not update_then_update(
            batch, ["status"], where={"status": BatchStatus.DEPOSITED}, other=payment,
            other_fields=["state"],
        )  # fmt: skip
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
    assert Payment.objects.get(pk=payment.pk).state != "posted_test"
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert update_then_update(
            batch, ["status"], where={"status": BatchStatus.OPEN}, other=payment,
            other_fields=["state"],
        )  # fmt: skip
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.CLOSED
    assert Payment.objects.get(pk=payment.pk).state == "posted_test"
    if connection.vendor == "postgresql":
        assert len([q for q in queries if q["sql"].startswith("WITH changed AS (UPDATE")]) == 1
        assert len(queries) == 1  # inside the transaction: its BEGIN and COMMIT are not here


def test_update_then_update_undoes_both_without_the_second_row_in_a_transaction(paid):
    _, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    gone = Payment(pk=payment.pk + 1000, state="x")
    with pytest.raises(Payment.DoesNotExist, match=f"{payment.pk + 1000}"):
        with transaction.atomic():
            update_then_update(batch, ["status"], where={}, other=gone, other_fields=["state"])
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.OPEN
    # Outside a transaction: SQLite's two statements run in one of their own, undone alike;
    # PostgreSQL's one statement is its own commit, so the first row's change is kept (the
    # docstring says so: called so only where the second row cannot be missing).
    with pytest.raises(Payment.DoesNotExist):
        update_then_update(batch, ["status"], where={}, other=gone, other_fields=["state"])
    kept = BatchStatus.CLOSED if connection.vendor == "postgresql" else BatchStatus.OPEN
    assert DepositBatch.objects.get(pk=batch.pk).status == kept


def test_update_then_update_with_an_upsert_writes_all_three_only_when_the_first_changed(paid):
    lease, payment = paid
    batch = payment.batch
    batch.status = BatchStatus.CLOSED
    payment.state = "posted_test"
    landing = Upsert(
        _next_batch(payment, "900000005"), unique=["batch_id"], update=["stream", "business_day"]
    )
    # The condition fails: nothing is written, the upsert's row included.
    assert not update_then_update(
        batch, ["status"], where={"status": BatchStatus.DEPOSITED}, other=payment,
        other_fields=["state"], upsert=landing,
    )  # fmt: skip
    assert not DepositBatch.objects.filter(batch_id="900000005").exists()
    assert landing.instance.pk is None
    assert Payment.objects.get(pk=payment.pk).state != "posted_test"
    # Outside a transaction: one statement on PostgreSQL, its own commit (no BEGIN, no COMMIT).
    with CaptureQueriesContext(connection) as queries:
        assert update_then_update(
            batch, ["status"], where={"status": BatchStatus.OPEN}, other=payment,
            other_fields=["state"], upsert=landing,
        )  # fmt: skip
    assert DepositBatch.objects.get(pk=batch.pk).status == BatchStatus.CLOSED
    assert Payment.objects.get(pk=payment.pk).state == "posted_test"
    stored = DepositBatch.objects.get(batch_id="900000005")
    assert landing.instance.pk == stored.pk and not landing.instance._state.adding
    if connection.vendor == "postgresql":
        assert [q["sql"][:22] for q in queries] == ["WITH changed AS (UPDAT"]
    else:  # the three writes in a transaction of their own
        assert [q["sql"].split()[0] for q in queries] == [
            "BEGIN", "UPDATE", "UPDATE", "INSERT", "COMMIT"
        ]  # fmt: skip
    # Again, with the same unique field: the row is updated, not doubled.
    batch.status = BatchStatus.OPEN
    again = _next_batch(payment, "900000005")
    again.stream = "card"
    assert update_then_update(
        batch, ["status"], where={"status": BatchStatus.CLOSED}, other=payment,
        other_fields=["state"], upsert=Upsert(again, ["batch_id"], ["stream", "business_day"]),
    )  # fmt: skip
    assert again.pk == stored.pk
    assert DepositBatch.objects.get(pk=stored.pk).stream == "card"
    assert DepositBatch.objects.filter(batch_id="900000005").count() == 1


def test_upsert_row_inserts_then_updates_the_same_row_in_one_statement(paid):
    _, payment = paid
    first = _next_batch(payment, "900000004")
    with CaptureQueriesContext(connection) as queries:
        upsert_row(first, unique=["batch_id"], update=["stream", "business_day"])
    assert len(queries) == 1 and first.pk and not first._state.adding
    again = _next_batch(payment, "900000004")
    again.stream, again.business_day, again.kind = "card", dt.date(2026, 11, 4), "reversals"
    with CaptureQueriesContext(connection) as queries:
        upsert_row(again, unique=["batch_id"], update=["stream", "business_day"])
    assert len(queries) == 1 and again.pk == first.pk
    stored = DepositBatch.objects.get(batch_id="900000004")
    # The fields named are updated; the others keep what the row held.
    assert (stored.stream, stored.business_day, stored.kind) == (
        "card",
        dt.date(2026, 11, 4),
        BatchKind.PAYMENTS,
    )
    assert DepositBatch.objects.filter(batch_id="900000004").count() == 1


def _this_database_url() -> str:
    from urllib.parse import quote

    d = connection.settings_dict
    login = quote(d["USER"]) + (f":{quote(d['PASSWORD'])}" if d["PASSWORD"] else "")
    return f"postgres://{login}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{d['NAME']}"


def _connection_options(**env: str) -> str:
    import os
    import subprocess
    import sys

    code = (
        "from django.db import connection as c; c.ensure_connection(); "
        "print(c.features.uses_server_side_binding, c.connection.prepare_threshold)"
    )
    return (
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            env={**os.environ, "DATABASE_URL": _this_database_url(), **env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_postgresql_prepares_repeated_statements_unless_told_not_to():
    assert _connection_options() == "True 5"
    assert _connection_options(DB_PREPARED_STATEMENTS="0") == "False None"
