"""Accepting payments and reversing them."""

from __future__ import annotations

import datetime as dt
import re

from django.db import transaction
from django.utils import timezone

from rentplatform import signals
from rentplatform.models import (
    ALLOWED_TRANSITIONS,
    Lease,
    LeaseStatus,
    NachaReturnCode,
    Payment,
    PaymentMethod,
    PaymentState,
    Resident,
    Reversal,
    ReversalKind,
)
from rentplatform.money import MoneyError, positive_money

from .batches import batch_for_payment, batch_for_reversal
from .errors import PaymentRefused, ServiceError

R_CODE = re.compile(r"^R[0-9]{2}$")


def _check_can_pay(lease: Lease, resident: Resident | None, method: str) -> None:
    if method not in PaymentMethod.values:
        raise PaymentRefused(f"unknown payment method {method!r}; use card or ach", code="method")
    if lease.status not in (LeaseStatus.ACTIVE, LeaseStatus.NOTICE):
        raise PaymentRefused(
            f"lease #{lease.pk} is {lease.get_status_display().lower()}; it takes no payments",
            code="lease_inactive",
        )
    if resident is not None:
        membership = lease.memberships.filter(resident=resident).first()
        if membership is None:
            raise PaymentRefused(f"{resident} is not on lease #{lease.pk}", code="not_on_lease")
        if not membership.responsible:
            raise PaymentRefused(
                f"{resident} is not financially responsible on lease #{lease.pk}",
                code="not_responsible",
            )
    access = lease.effective_access
    if not access.allows(method):
        contact = ", ".join(lease.property.manager_email_list) or "your property manager"
        if access.access == "blocked":
            raise PaymentRefused(
                "Online payments are blocked on this lease "
                f"({access.reason or 'no reason given'}). Please contact {contact}.",
                code="blocked",
            )
        raise PaymentRefused(
            f"This lease accepts card payments only ({access.reason or 'no reason given'}); "
            f"bank (ACH) payments are refused. Please contact {contact} with questions.",
            code="cards_only",
        )


def accept_payment(
    lease: Lease,
    amount: object,
    method: str,
    *,
    resident: Resident | None = None,
    now: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> Payment:
    """Accept a payment as the portal would: every check runs here, at the moment of payment."""
    try:
        value = positive_money(amount)
    except MoneyError as err:
        raise PaymentRefused(str(err), code="amount") from None
    now = now or timezone.now()
    with transaction.atomic():
        # Lock the lease so a block written concurrently is seen before we accept.
        lease = (
            Lease.objects.select_for_update()
            .select_related("unit__building__property")
            .get(pk=lease.pk)
        )
        if idempotency_key:
            existing = Payment.objects.filter(idempotency_key=idempotency_key).first()
            if existing:
                if existing.lease_id != lease.pk:
                    raise PaymentRefused("idempotency key reused for another lease", code="key")
                return existing
        _check_can_pay(lease, resident, method)
        prop = lease.property
        batch = batch_for_payment(prop, method, now)
        payment = Payment.objects.create(
            lease=lease,
            resident=resident,
            amount=value,
            method=method,
            batch=batch,
            business_day=prop.local_day(now),
            accepted_at=now,
            idempotency_key=idempotency_key or None,
        )
        signals.payment_accepted.send(sender=Payment, payment=payment)
    return payment


def _locked(payment: Payment) -> Payment:
    return Payment.objects.select_for_update().select_related("batch", "lease").get(pk=payment.pk)


def _move(payment: Payment, state: str) -> None:
    if state not in ALLOWED_TRANSITIONS[payment.state]:
        raise ServiceError(
            f"payment {payment.public_id} is {payment.get_state_display().lower()}; "
            f"it cannot become {PaymentState(state).label.lower()}",
            code="state",
        )
    payment.state = state


@transaction.atomic
def settle_payment(payment: Payment) -> Payment:
    payment = _locked(payment)
    _move(payment, PaymentState.SETTLED)
    payment.save(update_fields=["state", "updated_at"])
    signals.payment_settled.send(sender=Payment, payment=payment)
    return payment


def _reverse(
    payment: Payment,
    kind: str,
    state: str,
    signal,
    *,
    now: dt.datetime | None,
    return_code: str = "",
    note: str = "",
) -> Reversal:
    now = now or timezone.now()
    with transaction.atomic():
        payment = _locked(payment)
        _move(payment, state)
        if return_code:
            payment.return_code = return_code
        payment.save(update_fields=["state", "return_code", "updated_at"])
        prop = payment.batch.property
        reversal = Reversal.objects.create(
            payment=payment,
            kind=kind,
            return_code=return_code,
            amount=payment.amount,
            batch=batch_for_reversal(payment, now),
            business_day=prop.local_day(now),
            created_at=now,
            note=note,
        )
        signal.send(sender=Payment, payment=payment, reversal=reversal)
    return reversal


def void_payment(payment: Payment, *, now: dt.datetime | None = None, note: str = "") -> Reversal:
    """Void a processing payment; only on the property's day it was made (rule 7)."""
    now = now or timezone.now()
    payment = Payment.objects.select_related("batch__property").get(pk=payment.pk)
    if payment.state != PaymentState.PROCESSING:
        raise ServiceError(
            f"payment {payment.public_id} is {payment.get_state_display().lower()}; only a "
            "processing payment can be voided",
            code="state",
        )
    prop = payment.batch.property
    today = prop.local_day(now)
    if today != payment.business_day:
        raise ServiceError(
            f"payment {payment.public_id} was made on {payment.business_day:%m/%d/%Y} "
            f"({prop.time_zone}); it can only be voided that day. Refund it instead once settled.",
            code="void_window",
        )
    return _reverse(
        payment, ReversalKind.VOID, PaymentState.VOIDED, signals.payment_voided, now=now, note=note
    )


def refund_payment(payment: Payment, *, now: dt.datetime | None = None, note: str = "") -> Reversal:
    return _reverse(
        payment,
        ReversalKind.REFUND,
        PaymentState.REFUNDED,
        signals.payment_refunded,
        now=now,
        note=note,
    )


def return_payment(
    payment: Payment, code: str, *, now: dt.datetime | None = None, note: str = ""
) -> Reversal:
    """An ACH payment returned by the bank with a NACHA R-code."""
    code = (code or "").strip().upper()
    if not R_CODE.match(code):
        raise ServiceError(f"{code!r} is not a NACHA return code (R01-R99)", code="r_code")
    if payment.method != PaymentMethod.ACH:
        raise ServiceError(
            f"payment {payment.public_id} was by card; only ACH payments are returned "
            "(use a chargeback)",
            code="method",
        )
    known = NachaReturnCode.objects.filter(code=code).first()
    note = note or (known.description if known else "")
    return _reverse(
        payment,
        ReversalKind.RETURN,
        PaymentState.RETURNED,
        signals.payment_returned,
        now=now,
        return_code=code,
        note=note,
    )


def charge_back_payment(
    payment: Payment, *, now: dt.datetime | None = None, note: str = ""
) -> Reversal:
    if payment.method != PaymentMethod.CARD:
        raise ServiceError(
            f"payment {payment.public_id} was ACH; only card payments are charged back "
            "(use return or refund)",
            code="method",
        )
    return _reverse(
        payment,
        ReversalKind.CHARGEBACK,
        PaymentState.CHARGED_BACK,
        signals.payment_charged_back,
        now=now,
        note=note,
    )
