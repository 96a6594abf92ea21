"""The service layer's rules, and the database constraints behind them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from rentplatform.models import (
    BatchKind,
    BatchStatus,
    DepositBatch,
    InvalidTransition,
    Payment,
    PaymentState,
)
from rentplatform.money import MoneyError, to_money
from rentplatform.services import (
    PaymentRefused,
    ServiceError,
    accept_payment,
    deposit_batch,
    refund_payment,
    return_payment,
    settle_payment,
    void_payment,
)
from rentplatform.services.batches import batch_totals

from .conftest import chicago

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("amount", ["0", "0.00", "-1.00", 0, -5])
def test_non_positive_amount_refused_by_service(leased, amount):
    with pytest.raises(PaymentRefused) as info:
        accept_payment(leased[0], amount, "card")
    assert info.value.code == "amount"
    assert not Payment.objects.exists()


@pytest.mark.parametrize("amount", [0.0, -1.0])
def test_non_positive_amount_refused_by_database(leased, amount):
    lease, _ = leased
    payment = accept_payment(lease, "10.00", "card")
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(
            lease=lease,
            amount=Decimal(str(amount)),
            method="card",
            batch=payment.batch,
            business_day=payment.business_day,
            accepted_at=payment.accepted_at,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(amount=Decimal("-5.00"))
    payment.refresh_from_db()
    assert payment.amount == Decimal("10.00")


@pytest.mark.parametrize("amount", [125.0, 0.1, float("nan")])
def test_floats_refused(leased, amount):
    with pytest.raises(PaymentRefused, match="float"):
        accept_payment(leased[0], amount, "card")
    with pytest.raises(MoneyError):
        to_money(amount)
    assert not Payment.objects.exists()


def test_invalid_transitions_refused(leased):
    payment = accept_payment(leased[0], "10.00", "card")
    settle_payment(payment)
    with pytest.raises(ServiceError) as info:
        settle_payment(payment)
    assert info.value.code == "state"
    with pytest.raises(ServiceError):
        void_payment(payment)
    # Even bypassing the services, the model refuses a move off the state graph.
    payment = Payment.objects.get(pk=payment.pk)
    payment.state = PaymentState.PROCESSING
    with pytest.raises(InvalidTransition):
        payment.save()


def test_late_evening_payment_lands_in_that_local_day(leased):
    lease, _ = leased
    late = chicago(2025, 3, 1, 23, 30)  # already March 2 in UTC
    assert late.astimezone(dt.UTC).date() == dt.date(2025, 3, 2)
    payment = accept_payment(lease, "10.00", "card", now=late)
    assert payment.business_day == dt.date(2025, 3, 1)
    assert payment.batch.business_day == dt.date(2025, 3, 1)
    next_morning = accept_payment(lease, "10.00", "card", now=chicago(2025, 3, 2, 0, 30))
    assert next_morning.batch != payment.batch
    assert next_morning.batch.business_day == dt.date(2025, 3, 2)


def test_card_and_ach_settle_in_separate_batches(leased):
    lease, _ = leased
    now = chicago(2025, 3, 1, 10)
    card = accept_payment(lease, "10.00", "card", now=now)
    ach = accept_payment(lease, "10.00", "ach", now=now)
    again = accept_payment(lease, "5.00", "card", now=now)
    assert card.batch == again.batch != ach.batch
    assert card.batch.batch_id.isdigit()


def test_reversal_before_deposit_goes_to_the_original_batch(leased):
    lease, _ = leased
    payment = settle_payment(accept_payment(lease, "40.00", "ach", now=chicago(2025, 3, 1, 10)))
    reversal = return_payment(payment, "R01", now=chicago(2025, 3, 3, 10))
    assert reversal.batch == payment.batch
    assert batch_totals(payment.batch)["net"] == Decimal("0.00")


def test_reversal_after_deposit_goes_to_a_reversals_batch_of_that_day(leased):
    lease, _ = leased
    payment = settle_payment(accept_payment(lease, "40.00", "ach", now=chicago(2025, 3, 1, 10)))
    deposit_batch(payment.batch, now=chicago(2025, 3, 2, 9))
    reversal = refund_payment(payment, now=chicago(2025, 3, 5, 23, 30))
    batch = reversal.batch
    assert batch != payment.batch
    assert batch.kind == BatchKind.REVERSALS
    assert batch.business_day == dt.date(2025, 3, 5)
    totals = batch_totals(batch)
    assert totals["reversals_total"] == Decimal("-40.00")
    assert totals["net"] == Decimal("-40.00")
    assert batch_totals(payment.batch)["net"] == Decimal("40.00")


def test_void_only_on_the_property_day(leased):
    lease, _ = leased
    payment = accept_payment(lease, "10.00", "card", now=chicago(2025, 3, 1, 9))
    with pytest.raises(ServiceError) as info:
        void_payment(payment, now=chicago(2025, 3, 2, 0, 5))
    assert info.value.code == "void_window"
    payment.refresh_from_db()
    assert payment.state == PaymentState.PROCESSING
    # 23:59 Chicago is the next day in UTC, but still the property's day.
    reversal = void_payment(payment, now=chicago(2025, 3, 1, 23, 59))
    assert reversal.payment.state == PaymentState.VOIDED


def test_one_open_batch_per_property_stream_day_enforced_by_database(leased):
    lease, _ = leased
    batch = accept_payment(lease, "10.00", "card", now=chicago(2025, 3, 1, 9)).batch
    with pytest.raises(IntegrityError), transaction.atomic():
        DepositBatch.objects.create(
            batch_id="999",
            property=batch.property,
            stream=batch.stream,
            business_day=batch.business_day,
            kind=batch.kind,
        )
    # A closed batch does not count: a second open one is then allowed.
    DepositBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.CLOSED)
    DepositBatch.objects.create(
        batch_id="998",
        property=batch.property,
        stream=batch.stream,
        business_day=batch.business_day,
        kind=batch.kind,
    )


def test_batch_id_must_be_digits(leased):
    prop = leased[0].property
    with pytest.raises(IntegrityError), transaction.atomic():
        DepositBatch.objects.create(
            batch_id="B-1", property=prop, stream="card", business_day=dt.date(2025, 1, 1)
        )


def test_deposit_marks_settled_payments_deposited_and_refuses_processing(leased):
    lease, _ = leased
    now = chicago(2025, 3, 1, 9)
    processing = accept_payment(lease, "10.00", "card", now=now)
    with pytest.raises(ServiceError, match="settle them first"):
        deposit_batch(processing.batch)
    settle_payment(processing)
    batch = deposit_batch(processing.batch)
    assert batch.status == BatchStatus.DEPOSITED
    processing.refresh_from_db()
    assert processing.state == PaymentState.DEPOSITED
    with pytest.raises(ServiceError, match="already deposited"):
        deposit_batch(batch)
