"""Sync runs: imports and resyncs, with counts and per-record errors."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SyncKind(models.TextChoices):
    IMPORT = "import", "Initial import"
    FULL = "full", "Full resync"
    DELTA = "delta", "Delta resync"
    LEASE = "lease", "One lease"
    TEST = "test", "Connection test"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with errors"
    FAILED = "failed", "Failed"


class SyncRun(models.Model):
    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="sync_runs"
    )
    kind = models.CharField(max_length=10, choices=SyncKind.choices)
    status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Window a delta sync covered; the next one starts where this one ended.
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_list = models.JSONField(default=list, blank=True)
    changes = models.JSONField(default=list, blank=True, help_text="What changed (first 500).")
    message = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # A connection's latest runs (the dashboard's last run; the attention mail's streak
            # of failing resyncs), however many runs the years of 5-minute deltas left.
            models.Index(fields=["connection", "-started_at"], name="syncrun_connection_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.connection} at {self.started_at:%Y-%m-%d %H:%M}"

    def record_error(self, record: str, message: str) -> None:
        self.errors += 1
        if len(self.error_list) < 1000:
            self.error_list.append({"record": record, "message": message})

    def record_change(self, record: str, what: str) -> None:
        if len(self.changes) < 500:
            self.changes.append({"record": record, "change": what})

    @property
    def total_changes(self) -> int:
        return self.created + self.updated + self.deactivated

    def summary(self) -> str:
        text = (
            f"{self.get_kind_display()}{' (dry run)' if self.dry_run else ''}: "
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.deactivated} deactivated, {self.errors} errors"
        )
        if self.total_changes == 0 and self.errors == 0 and self.status != SyncStatus.FAILED:
            text += " - nothing changed"
        if self.message:
            text += f". {self.message}"
        return text
