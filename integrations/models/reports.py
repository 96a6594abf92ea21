"""Batch Deposit Reports in the admin: a proxy of the host's deposit batch."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from rentplatform.models import DepositBatch


class DepositReport(DepositBatch):
    """Admin entry point for Batch Deposit Reports (a proxy of the host's deposit batch)."""

    class Meta:
        proxy = True
        verbose_name = "batch deposit report"
        permissions = [("reconcile", "Can run a reconciliation")]


class ReconciliationRun(models.Model):
    """One reconciliation of a connection's month, as it was run (the admin page, the command,
    the demo): what it compared with and the differences it found, in words. The dashboard
    shows each connection's last one; a person reads an earlier one here without running it
    again (the remote side may have changed since)."""

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="reconciliations"
    )
    month = models.DateField(help_text="The first day of the month reconciled.")
    ran_at = models.DateTimeField(default=timezone.now, db_index=True)
    ran_by = models.CharField(max_length=150, blank=True, help_text="Who, or which command.")
    source = models.CharField(
        max_length=255, blank=True, help_text="The uploaded export's file name, or how it was read."
    )
    differences_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why it could not compare (then no count).")
    # Each difference as shown: {"batch", "kind", "sentence", "ours", "theirs", "item"};
    # the first MAX_KEPT of them (the count is the whole number).
    differences = models.JSONField(default=list, blank=True)

    MAX_KEPT = 1000

    class Meta:
        ordering = ["-ran_at"]
        indexes = [models.Index(fields=["connection", "-ran_at"])]

    def __str__(self) -> str:
        return f"{self.connection.property.code} {self.month:%Y-%m} at {self.ran_at:%Y-%m-%d %H:%M}"

    def outcome(self) -> str:
        if self.error:
            return f"could not reconcile: {self.error}"
        n = self.differences_count
        return "no differences" if n == 0 else f"{n} difference{'' if n == 1 else 's'}"
