"""What the fake provider was asked: its stand-in for a remote ledger."""

from __future__ import annotations

from django.db import models


class FakeRemoteEntry(models.Model):
    connection = models.ForeignKey("integrations.Connection", on_delete=models.CASCADE)
    key = models.CharField(max_length=64)
    kind = models.CharField(max_length=20)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    batch_id = models.CharField(max_length=20, blank=True)
    reference = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "key"], name="fake_entry_once")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} {self.amount}"
