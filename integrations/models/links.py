"""Abstract mirror models: the link between a host lease (and its people) and the remote's.

A provider subclasses both (dj-stripe's mirror models: the remote identity apart from our
primary key, the raw remote record as JSON, when it was last synced). The lease link's remote
identity is the provider's own fields, named in ``key_fields`` in the order of
``LeaseRecord.key``; the last of them is the most selective and should be indexed together
with ``connection`` (the importer looks links up by it, a chunk at a time). ``content_hash`` is
``LeaseRecord.digest()`` at the last write, so an unchanged resync writes nothing.

The occupant link's subclass declares ``lease_link`` (a ForeignKey to its lease link model,
``related_name="occupants"``) and names its remote key field in ``key_field``.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class RemoteLeaseLink(models.Model):
    key_fields: ClassVar[tuple[str, ...]] = ()

    connection = models.ForeignKey(
        "integrations.Connection",
        on_delete=models.CASCADE,
        related_name="%(app_label)s_lease_links",
    )
    lease = models.OneToOneField(
        "rentplatform.Lease", on_delete=models.CASCADE, related_name="%(app_label)s_link"
    )
    active = models.BooleanField(default=True, help_text="False once the remote stops listing it.")
    raw = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=40, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    linked_by_hand = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.composite

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in self.key_fields)

    @property
    def composite(self) -> str:
        """The remote identity as a person reads it: its parts, dash-joined."""
        return "-".join(self.key)


class RemoteOccupantLink(models.Model):
    key_field: ClassVar[str] = ""

    resident = models.ForeignKey(
        "rentplatform.Resident",
        on_delete=models.CASCADE,
        related_name="%(app_label)s_occupancies",
    )

    class Meta:
        abstract = True

    @property
    def remote_key(self) -> str:
        return getattr(self, self.key_field)
