"""Accepting payments and reversing them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from rentplatform import signals
from rentplatform.models import (
    ALLOWED_TRANSITIONS,
    Lease,
    LeaseStatus,
    NachaReturnCode,
    Payment,
    PaymentAccess,
    PaymentMethod,
    PaymentState,
    Resident,
    Reversal,
    ReversalKind,
)
from rentplatform.money import MoneyError, parse_amount
from rentplatform.prepared import Prepared

from .batches import batch_for_payment, batch_for_reversal, lock_batch
from .errors import IdempotencyConflict, PaymentRefused, ServiceError
from .idempotency import clean_key
from .transactions import committing

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
        if access.access == PaymentAccess.BLOCKED:
            raise PaymentRefused(
                "Online payments are blocked on this lease "
                f"({access.reason or 'no reason given'}). Please contact {contact}.",
                code=PaymentAccess.BLOCKED,
            )
        raise PaymentRefused(
            f"This lease accepts card payments only ({access.reason or 'no reason given'}); "
            f"bank (ACH) payments are refused. Please contact {contact} with questions.",
            code=PaymentAccess.CARDS_ONLY,
        )


def _method_label(method: str) -> str:
    return "card" if method == PaymentMethod.CARD else "ACH"


def _payment_replay(
    key: str, resident: Resident | None, lease: Lease, amount: Decimal, method: str
) -> Payment | None:
    """The payment this resident already made with ``key``, or None; a conflict if it differs."""
    existing = (
        Payment.objects.filter(idempotency_key=key, resident=resident)
        .select_related("batch")
        .first()
    )
    if existing is None:
        return None
    if existing.lease_id != lease.pk or existing.amount != amount or existing.method != method:
        raise IdempotencyConflict(
            f"This idempotency key was already used for a payment of ${existing.amount} by "
            f"{_method_label(existing.method)} on lease #{existing.lease_id} (reference "
            f"{existing.short_id}); send a new key for a different payment.",
            existing=existing,
        )
    existing.replayed = True
    return existing


def _bad_key(idempotency_key: object) -> str | None:
    try:
        return clean_key(idempotency_key)
    except ValueError as err:
        raise ServiceError(str(err), code="idempotency_key") from None


# Read for every payment taken: compiled once (rentplatform/prepared.py).
_LOCKED_LEASE = Prepared(
    lambda pk: (
        Lease.objects.select_for_update(of=("self",), no_key=True)
        .select_related("unit__building__property")
        .filter(pk=pk)
        .order_by()
    )
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
    """Accept a payment as the portal would: every check runs here, at the moment of payment.

    With an ``idempotency_key``, a retry of the same request (same resident, key, lease, amount
    and method) returns the first request's payment with ``replayed`` set, whatever happened
    since (the lease blocked, the payment settled); the same key with a different request raises
    IdempotencyConflict. Keys are scoped by ``resident``.

    Locks, in the platform's one order (docs/reliability.md): the lease, then the open batch the
    payment joins; each only its own row.
    """
    try:
        value = parse_amount(amount)
    except MoneyError as err:
        raise PaymentRefused(str(err), code="amount") from None
    key = _bad_key(idempotency_key)
    now = now or timezone.now()
    if key:
        replay = _payment_replay(key, resident, lease, value, method)
        if replay:
            return replay
    try:
        with committing():
            # Lock the lease (its row only: not its unit, building or property) so a block
            # written concurrently is seen before we accept, and so retries on it queue here.
            lease = _LOCKED_LEASE.first(lease.pk)
            if lease is None:
                raise Lease.DoesNotExist("Lease matching query does not exist.")
            if key:
                replay = _payment_replay(key, resident, lease, value, method)
                if replay:
                    return replay
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
                idempotency_key=key,
            )
            signals.payment_accepted.send(sender=Payment, payment=payment)
    except IntegrityError:
        # The same resident sent the same key for another lease at the same moment, and that
        # request committed first (the unique index waited for it): answer as a retry would.
        replay = key and _payment_replay(key, resident, lease, value, method)
        if replay:
            return replay
        raise
    return payment


def _lock_payment(payment: Payment) -> Payment:
    """Lock the payment's row only (not its batch or lease: they come first in the lock order)."""
    return (
        Payment.objects.select_for_update(of=("self",), no_key=True)
        .select_related("batch__property", "lease")
        .get(pk=payment.pk)
    )


def _move(payment: Payment, state: str) -> None:
    if state not in ALLOWED_TRANSITIONS[payment.state]:
        raise ServiceError(
            f"payment {payment.short_id} is {payment.get_state_display().lower()}; "
            f"it cannot become {PaymentState(state).label.lower()}",
            code="state",
        )
    payment.state = state


def settle_payment(payment: Payment) -> Payment:
    """Processing -> settled. Locks the payment only (and takes no lock after it)."""
    with committing():
        payment = _lock_payment(payment)
        _move(payment, PaymentState.SETTLED)
        payment.save(update_fields=["state", "updated_at"])
        signals.payment_settled.send(sender=Payment, payment=payment)
    return payment


def _reversal_replay(key: str, requested_by: Any, payment: Payment, kind: str) -> Reversal | None:
    existing = (
        Reversal.objects.filter(idempotency_key=key, requested_by=requested_by)
        .select_related("payment")
        .first()
    )
    if existing is None:
        return None
    if existing.payment_id != payment.pk or existing.kind != kind:
        raise IdempotencyConflict(
            f"This idempotency key was already used for a {existing.get_kind_display().lower()} "
            f"of payment {existing.payment.short_id}; send a new key for another request.",
            existing=existing,
        )
    existing.replayed = True
    return existing


def _reverse(
    payment: Payment,
    kind: str,
    state: str,
    signal,
    *,
    now: dt.datetime | None,
    return_code: str = "",
    note: str = "",
    idempotency_key: str | None = None,
    requested_by: Any = None,
) -> Reversal:
    """Reverse a whole payment. Locks, in the platform's order: the payment's batch, the
    reversals batch when the original is deposited, then the payment."""
    now = now or timezone.now()
    key = idempotency_key
    batch_id = Payment.objects.filter(pk=payment.pk).values_list("batch_id", flat=True).get()
    try:
        with committing():
            original = lock_batch(batch_id)
            target = batch_for_reversal(payment, now, original=original)
            payment = _lock_payment(payment)
            if key:
                replay = _reversal_replay(key, requested_by, payment, kind)
                if replay:
                    return replay
            _move(payment, state)
            if return_code:
                payment.return_code = return_code
            payment.save(update_fields=["state", "return_code", "updated_at"])
            reversal = Reversal.objects.create(
                payment=payment,
                kind=kind,
                return_code=return_code,
                amount=payment.amount,
                batch=target,
                business_day=original.property.local_day(now),
                created_at=now,
                note=note,
                requested_by=requested_by,
                idempotency_key=key,
            )
            signal.send(sender=Payment, payment=payment, reversal=reversal)
    except IntegrityError:
        replay = key and _reversal_replay(key, requested_by, payment, kind)
        if replay:
            return replay
        raise
    return reversal


def void_payment(
    payment: Payment,
    *,
    now: dt.datetime | None = None,
    note: str = "",
    idempotency_key: str | None = None,
    requested_by: Any = None,
) -> Reversal:
    """Void a processing payment; only on the property's day it was made (rule 7).

    With an ``idempotency_key`` (scoped by ``requested_by``, the user asking), a retry returns
    the first request's reversal with ``replayed`` set; the key reused for another payment
    raises IdempotencyConflict.
    """
    now = now or timezone.now()
    key = _bad_key(idempotency_key)
    if key and requested_by is None:
        raise ServiceError(
            "an idempotency key for a void belongs to the user asking; none was given",
            code="idempotency_key",
        )
    payment = Payment.objects.select_related("batch__property").get(pk=payment.pk)
    if key:
        replay = _reversal_replay(key, requested_by, payment, ReversalKind.VOID)
        if replay:
            return replay
    if payment.state != PaymentState.PROCESSING:
        raise ServiceError(
            f"payment {payment.short_id} is {payment.get_state_display().lower()}; only a "
            "processing payment can be voided",
            code="state",
        )
    prop = payment.batch.property
    today = prop.local_day(now)
    if today != payment.business_day:
        raise ServiceError(
            f"payment {payment.short_id} was made on {payment.business_day:%m/%d/%Y} "
            f"({prop.time_zone}); it can only be voided that day. Refund it instead once settled.",
            code="void_window",
        )
    return _reverse(
        payment,
        ReversalKind.VOID,
        PaymentState.VOIDED,
        signals.payment_voided,
        now=now,
        note=note,
        idempotency_key=key,
        requested_by=requested_by,
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
            f"payment {payment.short_id} was by card; only ACH payments are returned "
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
            f"payment {payment.short_id} was ACH; only card payments are charged back "
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
