"""AMSI mirror models: the links between the platform's rows and eSite's records.

Like dj-stripe's mirror models, each keeps the remote identity apart from our primary key, the
raw remote attributes as JSON, and when it was last synced. ``content_hash`` is a digest of the
remote record as we map it, so an unchanged re-import compares hashes and writes nothing.
"""

from __future__ import annotations

from django.db import models


class AmsiLeaseLink(models.Model):
    """Platform lease <-> AMSI lease (PropertyId, BldgID, UnitID, ResiID).

    A ResiID is unique only within a unit: the identity is all four parts.
    """

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="amsi_leases"
    )
    lease = models.OneToOneField(
        "rentplatform.Lease", on_delete=models.CASCADE, related_name="amsi_link"
    )
    property_id = models.CharField("PropertyId", max_length=20)
    bldg_id = models.CharField("BldgID", max_length=20)
    unit_id = models.CharField("UnitID", max_length=20)
    resi_id = models.CharField("ResiID", max_length=20)
    credit_status = models.CharField(max_length=4, blank=True)
    block_payment_access = models.BooleanField(default=False)
    block_all_access = models.BooleanField(default=False)
    external_reference = models.CharField(max_length=40, blank=True)
    active = models.BooleanField(default=True, help_text="False once AMSI stops listing it.")
    raw = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=40, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    linked_by_hand = models.BooleanField(default=False)

    class Meta:
        verbose_name = "AMSI lease link"
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "property_id", "bldg_id", "unit_id", "resi_id"],
                name="amsi_lease_identity",
            )
        ]
        indexes = [models.Index(fields=["connection", "resi_id"])]

    def __str__(self) -> str:
        return self.composite

    @property
    def composite(self) -> str:
        """eSite's Rent Roll "ID" column: Property-Building-Unit-ResiID."""
        return f"{self.property_id}-{self.bldg_id}-{self.unit_id}-{self.resi_id}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.property_id, self.bldg_id, self.unit_id, self.resi_id)


class AmsiOccupantLink(models.Model):
    lease_link = models.ForeignKey(
        AmsiLeaseLink, on_delete=models.CASCADE, related_name="occupants"
    )
    resident = models.ForeignKey(
        "rentplatform.Resident", on_delete=models.CASCADE, related_name="amsi_occupancies"
    )
    occu_seq_no = models.CharField("OccuSeqNo", max_length=20)
    responsible_flag = models.CharField(max_length=20, blank=True)

    class Meta:
        verbose_name = "AMSI occupant link"
        constraints = [
            models.UniqueConstraint(
                fields=["lease_link", "occu_seq_no"], name="amsi_occupant_identity"
            )
        ]

    def __str__(self) -> str:
        return f"{self.lease_link} occupant {self.occu_seq_no}"


class AmsiBatchLink(models.Model):
    """Our deposit batch <-> the eSite cash batch it opened (ClientJnlNo = our batch id)."""

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="amsi_batches"
    )
    batch = models.OneToOneField(
        "rentplatform.DepositBatch", on_delete=models.PROTECT, related_name="amsi_link"
    )
    client_jnl_no = models.CharField("ClientJnlNo", max_length=20, unique=True)
    esite_batch_no = models.CharField("eSite batch", max_length=20, blank=True)
    bank_book = models.CharField(max_length=20, blank=True)
    settled_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settle_error = models.TextField(blank=True)
    needs_attention = models.BooleanField(default=False)

    class Meta:
        verbose_name = "AMSI batch link"

    def __str__(self) -> str:
        return f"{self.client_jnl_no} -> eSite batch {self.esite_batch_no or '?'}"


from .proxy_models import AmsiConnection  # noqa: E402,F401  (proxy; admin in admin.py)
