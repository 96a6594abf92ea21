"""Leases and who may pay on them.

Payment access has two independent sources: the accounting system (AMSI's Block Payment Access
and credit status, written by an integration through ``services.access``) and a platform admin.
Both are stored; the effective access is derived (the stricter wins), so lifting one block never
silently lifts the other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import models

from rentplatform.money import MoneyField

from .property import Resident, Unit


class PaymentAccess(models.TextChoices):
    ALLOWED = "allowed", "Allowed"
    CARDS_ONLY = "cards_only", "Cards only"
    BLOCKED = "blocked", "Blocked"


class AccessSource(models.TextChoices):
    NONE = "", "None"
    ACCOUNTING = "accounting", "Accounting system"
    PLATFORM = "platform", "Platform admin"


_STRICTNESS = {PaymentAccess.ALLOWED: 0, PaymentAccess.CARDS_ONLY: 1, PaymentAccess.BLOCKED: 2}


@dataclass(frozen=True)
class EffectiveAccess:
    access: str
    reason: str
    source: str
    since: dt.datetime | None

    @property
    def label(self) -> str:
        return PaymentAccess(self.access).label

    def allows(self, method: str) -> bool:
        if self.access == PaymentAccess.BLOCKED:
            return False
        if self.access == PaymentAccess.CARDS_ONLY:
            from .payment import PaymentMethod  # here: payment.py imports this module (Lease)

            return method == PaymentMethod.CARD
        return True


class LeaseStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Current"
    NOTICE = "notice", "On notice"
    INACTIVE = "inactive", "Inactive"


class Lease(models.Model):
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="leases")
    residents = models.ManyToManyField(Resident, through="LeaseResident", related_name="leases")
    status = models.CharField(
        max_length=16, choices=LeaseStatus.choices, default=LeaseStatus.ACTIVE
    )
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    balance = MoneyField(null=True, blank=True, help_text="Balance due as last reported.")

    accounting_access = models.CharField(
        max_length=16, choices=PaymentAccess.choices, default=PaymentAccess.ALLOWED
    )
    accounting_access_reason = models.CharField(max_length=200, blank=True)
    accounting_access_since = models.DateTimeField(null=True, blank=True)
    platform_blocked = models.BooleanField(default=False)
    platform_block_reason = models.CharField(max_length=200, blank=True)
    platform_blocked_since = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["unit", "pk"]
        permissions = [("block_payments", "Can block and unblock online payments")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(platform_blocked=False) | ~models.Q(platform_block_reason=""),
                name="platform_block_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Lease #{self.pk} {self.unit}"

    @property
    def effective_access(self) -> EffectiveAccess:
        candidates = [
            EffectiveAccess(
                self.accounting_access,
                self.accounting_access_reason,
                AccessSource.ACCOUNTING if self.accounting_access != PaymentAccess.ALLOWED else "",
                self.accounting_access_since,
            )
        ]
        if self.platform_blocked:
            candidates.append(
                EffectiveAccess(
                    PaymentAccess.BLOCKED,
                    self.platform_block_reason,
                    AccessSource.PLATFORM,
                    self.platform_blocked_since,
                )
            )
        return max(candidates, key=lambda a: _STRICTNESS[PaymentAccess(a.access)])

    # Defined last: a method named "property" shadows the builtin inside the class body.
    @property
    def property(self):
        return self.unit.building.property


class LeaseResident(models.Model):
    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="memberships")
    resident = models.ForeignKey(Resident, on_delete=models.CASCADE, related_name="memberships")
    responsible = models.BooleanField(
        default=True, help_text="Financially responsible occupants may pay online."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lease", "resident"], name="one_membership_per_lease")
        ]

    def __str__(self) -> str:
        return f"{self.resident} on {self.lease}"
