"""The import's bulk writes (``rentplatform.bulk``) on the database the tests run on: on
PostgreSQL ``fast_insert`` loads through COPY with ids taken from the sequence, on SQLite through
multi-row INSERT ... RETURNING. Either way each id returned is its own row's, in order, and the
values arrive as given (text a COPY line must escape, dates, money, NULLs, aware times)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from rentplatform.bulk import fast_insert, refresh_statistics
from rentplatform.models import Lease, LeaseResident, PaymentAccess, Resident
from rentplatform.services import imports as host
from tests.factories import LeaseFactory, ResidentFactory, UnitFactory

pytestmark = pytest.mark.django_db

AWKWARD = ["tab\there", "back\\slash", "new\nline", "cr\rhere", "\\N", "Zoë 東京", "", "'quote\""]


def test_fast_insert_returns_each_rows_own_id_in_order_with_the_values_as_given():
    ResidentFactory()  # ids already taken: the new ones continue the sequence
    now = timezone.now()
    rows = [
        {"first_name": f"p{i}", "last_name": AWKWARD[i % len(AWKWARD)], "email": "", "phone": ""}
        for i in range(1_203)
    ]
    ids = fast_insert(Resident, rows, now)
    assert len(ids) == len(set(ids)) == len(rows)
    stored = {r.pk: r for r in Resident.objects.filter(pk__in=ids)}
    for i, pk in enumerate(ids):
        assert (stored[pk].first_name, stored[pk].last_name) == (
            rows[i]["first_name"],
            rows[i]["last_name"],
        )
        assert stored[pk].created_at == now  # auto_now_add filled with ``now``
    # A row inserted afterwards the usual way gets an id the bulk load did not take.
    assert ResidentFactory().pk > max(ids)


def test_leases_with_dates_money_nulls_and_access_then_memberships_without_ids():
    unit = UnitFactory()
    now = timezone.now()
    rows = [
        {"unit_id": unit.pk, "status": "active", "start_date": dt.date(2025, 1, 31),
         "end_date": None, "balance": Decimal("-1234.56"), "access": PaymentAccess.ALLOWED,
         "access_reason": ""},
        {"unit_id": unit.pk, "status": "notice", "start_date": None,
         "end_date": dt.date(2026, 12, 1), "balance": None, "access": PaymentAccess.BLOCKED,
         "access_reason": "Block Payment Access is set\tin AMSI"},
    ]  # fmt: skip
    ids = host.create_leases(rows, now)
    first, second = (Lease.objects.get(pk=pk) for pk in ids)
    assert (first.start_date, first.end_date, first.balance) == (
        dt.date(2025, 1, 31), None, Decimal("-1234.56"),
    )  # fmt: skip
    assert (first.accounting_access, first.accounting_access_since) == (PaymentAccess.ALLOWED, None)
    assert (second.status, second.start_date, second.balance) == ("notice", None, None)
    assert second.accounting_access == PaymentAccess.BLOCKED
    assert second.accounting_access_reason == "Block Payment Access is set\tin AMSI"
    assert second.accounting_access_since == now
    person = ResidentFactory()
    host.add_memberships([(ids[0], person.pk, True), (ids[1], person.pk, False)], now)
    assert set(
        LeaseResident.objects.filter(resident=person).values_list("lease_id", "responsible")
    ) == {(ids[0], True), (ids[1], False)}
    assert LeaseFactory().pk > max(ids)
    refresh_statistics(Lease, LeaseResident)  # ANALYZE on PostgreSQL, nothing on SQLite
