"""Payment access: blocks from the accounting system and from platform admins."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from rentplatform.models import Lease, PaymentAccess

from .errors import ServiceError


def apply_accounting_access(lease: Lease, access: str, reason: str, now: dt.datetime) -> bool:
    """The rule, on a lease in memory (locked by the caller, saved by the caller): the
    accounting system's view and since when; True when it changed. A lease allowed again
    keeps no reason. The one rule ``set_accounting_access`` and the bulk import apply."""
    if access not in PaymentAccess.values:
        raise ServiceError(f"unknown payment access {access!r}")
    if lease.accounting_access == access and lease.accounting_access_reason == reason:
        return False
    lease.accounting_access = access
    lease.accounting_access_reason = reason if access != PaymentAccess.ALLOWED else ""
    lease.accounting_access_since = now
    return True


@transaction.atomic
def set_accounting_access(
    lease: Lease, access: str, reason: str = "", *, now: dt.datetime | None = None
) -> bool:
    """Record the accounting system's view; returns True when it changed."""
    if access not in PaymentAccess.values:
        raise ServiceError(f"unknown payment access {access!r}")
    lease = Lease.objects.select_for_update().get(pk=lease.pk)
    if not apply_accounting_access(lease, access, reason, now or timezone.now()):
        return False
    lease.save(
        update_fields=[
            "accounting_access",
            "accounting_access_reason",
            "accounting_access_since",
            "updated_at",
        ]
    )
    return True


@transaction.atomic
def block_lease(lease: Lease, reason: str, *, now: dt.datetime | None = None) -> Lease:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("a platform block needs a reason the resident can be told")
    return _platform_block(lease, True, reason[:200], now or timezone.now())


@transaction.atomic
def unblock_lease(lease: Lease) -> Lease:
    return _platform_block(lease, False, "", None)


def _platform_block(lease: Lease, blocked: bool, reason: str, since) -> Lease:
    lease = Lease.objects.select_for_update().get(pk=lease.pk)
    lease.platform_blocked = blocked
    lease.platform_block_reason = reason
    lease.platform_blocked_since = since
    lease.save(
        update_fields=[
            "platform_blocked",
            "platform_block_reason",
            "platform_blocked_since",
            "updated_at",
        ]
    )
    return lease
