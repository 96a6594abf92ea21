"""What a logged-in user may see: their own leases and the payments on them.

The portal pages and the API both start every lookup from these querysets, so "another
resident's lease" is simply not found (404), never "forbidden" (403): we do not confirm that
it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404

from rentplatform.models import (
    EffectiveAccess,
    Lease,
    LeaseResident,
    LeaseStatus,
    Payment,
    PaymentMethod,
    PaymentState,
    Resident,
)
from rentplatform.models.payment import ReferenceFormatError, reference_q

PAYABLE_STATUSES = (LeaseStatus.ACTIVE, LeaseStatus.NOTICE)


def resident_of(user: Any) -> Resident | None:
    """The user's Resident, or None for staff and other users without one."""
    if not getattr(user, "is_authenticated", False):
        return None
    # The reverse one-to-one raises RelatedObjectDoesNotExist, an AttributeError.
    return getattr(user, "resident", None)


def own_leases(user: Any) -> QuerySet[Lease]:
    """Leases the user is on, annotated with ``is_responsible`` (may pay online)."""
    if not getattr(user, "is_authenticated", False):
        return Lease.objects.none()
    mine = LeaseResident.objects.filter(lease=OuterRef("pk"), resident__user=user)
    return (
        Lease.objects.filter(memberships__resident__user=user)
        .select_related("unit__building__property")
        .annotate(is_responsible=Exists(mine.filter(responsible=True)))
    )


def own_payments(user: Any) -> QuerySet[Payment]:
    """Payments on the user's leases (a roommate's payments included: they share the lease)."""
    if not getattr(user, "is_authenticated", False):
        return Payment.objects.none()
    return Payment.objects.filter(lease__memberships__resident__user=user).select_related(
        "lease__unit__building__property", "batch", "resident"
    )


def get_payment_or_404(queryset: QuerySet[Payment], public_id: str) -> Payment:
    """The payment named by its reference: the short form shown, or all 32 hex digits.

    A short form that starts two of the user's payments is a 404 too (never a guess).
    """
    try:
        matching = reference_q(public_id)
    except ReferenceFormatError:
        raise Http404("no such payment") from None
    payments = list(queryset.filter(matching)[:2])
    if len(payments) != 1:
        raise Http404("no such payment")
    return payments[0]


@dataclass(frozen=True)
class LeaseFacts:
    """What the page shows about paying; a hint only, the service decides at payment time."""

    access: EffectiveAccess
    responsible: bool
    payable_status: bool
    contacts: list[str]
    balance: Decimal | None = None

    @property
    def balance_text(self) -> str:
        """The balance as a resident reads it: "$35.00 due", "Credit $35.00", "Nothing due".

        The accounting system reports money the resident has paid ahead as a negative balance;
        "-35.00" reads like a debt, so it is shown as a credit.
        """
        if self.balance is None:
            return ""
        if self.balance < 0:
            return f"Credit ${-self.balance:,.2f}"
        if self.balance == 0:
            return "Nothing due"
        return f"${self.balance:,.2f} due"

    @property
    def has_credit(self) -> bool:
        return self.balance is not None and self.balance < 0

    def can_pay(self, method: str) -> bool:
        return self.responsible and self.payable_status and self.access.allows(method)

    @property
    def can_pay_card(self) -> bool:
        return self.can_pay(PaymentMethod.CARD)

    @property
    def can_pay_ach(self) -> bool:
        return self.can_pay(PaymentMethod.ACH)

    @property
    def allowed_methods(self) -> list[tuple[str, str]]:
        return [(value, label) for value, label in PaymentMethod.choices if self.can_pay(value)]

    @property
    def contact_text(self) -> str:
        return ", ".join(self.contacts) or "your property manager"


def lease_facts(lease: Lease) -> LeaseFacts:
    """Facts about a lease from ``own_leases`` (needs its ``is_responsible`` annotation)."""
    return LeaseFacts(
        access=lease.effective_access,
        responsible=bool(getattr(lease, "is_responsible", False)),
        payable_status=lease.status in PAYABLE_STATUSES,
        contacts=lease.property.manager_email_list,
        balance=lease.balance,
    )


def voidable_today(payment: Payment, resident: Resident | None) -> bool:
    """Whether to offer a void button: the resident's own processing payment of today."""
    if resident is None or payment.resident_id != resident.pk:
        return False
    if payment.state != PaymentState.PROCESSING:
        return False
    return payment.business_day == payment.lease.property.local_day()
