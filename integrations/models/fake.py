"""The fake provider's stand-ins: a remote ledger (what it was asked), and its lease links."""

from __future__ import annotations

from django.db import models

from .links import RemoteLeaseLink, RemoteOccupantLink


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


class FakeLeaseLink(RemoteLeaseLink):
    """The fake provider's lease link: a remote lease is known by one id."""

    key_fields = ("remote_id",)

    remote_id = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "remote_id"], name="fake_lease_identity")
        ]
        indexes = [models.Index(fields=["connection", "remote_id"], name="fake_lease_remote_id")]


class FakeOccupantLink(RemoteOccupantLink):
    key_field = "remote_id"

    lease_link = models.ForeignKey(
        FakeLeaseLink, on_delete=models.CASCADE, related_name="occupants"
    )
    remote_id = models.CharField(max_length=40)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["lease_link", "remote_id"], name="fake_occupant_identity"
            )
        ]
