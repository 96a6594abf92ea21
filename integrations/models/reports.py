"""Batch Deposit Reports in the admin: a proxy of the host's deposit batch."""

from __future__ import annotations

from rentplatform.models import DepositBatch


class DepositReport(DepositBatch):
    """Admin entry point for Batch Deposit Reports (a proxy of the host's deposit batch)."""

    class Meta:
        proxy = True
        verbose_name = "batch deposit report"
        permissions = [("reconcile", "Can run a reconciliation")]
