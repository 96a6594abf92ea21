"""AMSI mirror models: the links between the platform's rows and eSite's records.

Like dj-stripe's mirror models, each keeps the remote identity apart from our primary key, the
raw remote attributes as JSON, and when it was last synced. ``content_hash`` is a digest of the
remote record as we map it, so an unchanged re-import compares hashes and writes nothing.
"""

from __future__ import annotations

from django.db import models

from integrations.models import RemoteLeaseLink, RemoteOccupantLink


class AmsiLeaseLink(RemoteLeaseLink):
    """Platform lease <-> AMSI lease (PropertyId, BldgID, UnitID, ResiID).

    A ResiID is unique only within a unit: the identity is all four parts. Its composite is
    eSite's Rent Roll "ID" column, Property-Building-Unit-ResiID.
    """

    key_fields = ("property_id", "bldg_id", "unit_id", "resi_id")

    property_id = models.CharField("PropertyId", max_length=20)
    bldg_id = models.CharField("BldgID", max_length=20)
    unit_id = models.CharField("UnitID", max_length=20)
    resi_id = models.CharField("ResiID", max_length=20)
    credit_status = models.CharField(max_length=4, blank=True)
    block_payment_access = models.BooleanField(default=False)
    block_all_access = models.BooleanField(default=False)
    external_reference = models.CharField(max_length=40, blank=True)

    class Meta:
        verbose_name = "AMSI lease link"
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "property_id", "bldg_id", "unit_id", "resi_id"],
                name="amsi_lease_identity",
            )
        ]
        indexes = [models.Index(fields=["connection", "resi_id"])]


class AmsiOccupantLink(RemoteOccupantLink):
    key_field = "occu_seq_no"

    lease_link = models.ForeignKey(
        AmsiLeaseLink, on_delete=models.CASCADE, related_name="occupants"
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


class AmsiBatchKind(models.TextChoices):
    PAYMENTS = "payments", "Payments (ClientJnlNo = our batch id)"
    RETURN = "return", "Return (ExternalJnlNo = the original ClientTransactionID)"


class AmsiBatchLink(models.Model):
    """An eSite External cash batch we know of, and how far we settled it.

    Its external number is our deposit batch id (the ClientJnlNo of AddPayment and
    ReturnPayment): the first payment with a new ClientJnlNo opens an External batch
    (AMSI_EDEX.md: inferred, strong). Or, for a return we take eSite to have booked apart (see
    ``batches``), the original payment's ClientTransactionID: production settled a return
    under that number; where eSite books a return is not known. ``batch`` is the host deposit
    batch the eSite batch reports under: for a payments batch the batch whose id it carries,
    for a return batch the host batch of the reversal; a host reversals batch can hold several
    return batches.

    ``settled_amount`` is the batch's signed total at its last accepted settlement (a return
    batch totals negative; UpdateSettlementData was sent its absolute value, as production
    did). What landed where is in ``AmsiBatchEntry``.
    """

    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.CASCADE, related_name="amsi_batches"
    )
    batch = models.ForeignKey(
        "rentplatform.DepositBatch",
        on_delete=models.PROTECT,
        related_name="amsi_links",
        verbose_name="reports under (our batch)",
    )
    kind = models.CharField(
        max_length=10, choices=AmsiBatchKind.choices, default=AmsiBatchKind.PAYMENTS
    )
    client_jnl_no = models.CharField(
        "external number",
        max_length=20,
        help_text="ClientJnlNo / ExternalJnlNo: our batch id, or for a return batch the "
        "original ClientTransactionID.",
    )
    esite_batch_no = models.CharField("eSite batch", max_length=20, blank=True)
    bank_book = models.CharField(max_length=20, blank=True)
    settled_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    settlement_date = models.DateField(
        "SettlementDate", null=True, blank=True, help_text="The bank deposit date last sent."
    )
    settle_error = models.TextField(blank=True)
    needs_attention = models.BooleanField(default=False)

    class Meta:
        verbose_name = "AMSI batch link"
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "client_jnl_no"], name="amsi_batch_external_number"
            )
        ]
        indexes = [
            models.Index(fields=["connection", "esite_batch_no"], name="amsi_batch_esite_no")
        ]

    def __str__(self) -> str:
        return f"{self.client_jnl_no} -> eSite batch {self.esite_batch_no or '?'}"


class AmsiBatchEntry(models.Model):
    """Which eSite batch one posting landed in, with its signed amount (payments +,
    reversals -). One row per posting: recording a landing again updates it."""

    posting = models.OneToOneField(
        "integrations.Posting", on_delete=models.CASCADE, related_name="amsi_entry"
    )
    link = models.ForeignKey(AmsiBatchLink, on_delete=models.PROTECT, related_name="entries")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AMSI batch entry"
        verbose_name_plural = "AMSI batch entries"

    def __str__(self) -> str:
        return f"posting #{self.posting_id} {self.amount} in {self.link}"
