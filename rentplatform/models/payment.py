"""Payments, deposit batches and reversals.

Design notes:
- A payment's state only moves along ``ALLOWED_TRANSITIONS``; ``Payment.save()`` refuses any
  other move, and check constraints keep each state's facts consistent in the database
  (a returned payment has an R-code and was ACH, a charged-back one was a card, ...).
- Deposit batches mirror what reaches the property's bank account: one open batch per property,
  settlement stream (card / ACH), business day (the property's) and kind. Our batch id is a
  numeric string, because AMSI takes it as ClientJnlNo, which is digits only.
- A reversal reverses a whole payment, once.
- A payment is shown to people by its short reference, the first ``SHORT_REFERENCE_LENGTH`` hex
  digits of its UUID (the portal, the admin, the processor's text output, messages). Every door
  that takes a reference back (the processor command, the admin search, the portal and API
  lookups) reads it with ``reference_q``: the short form, any longer prefix, the 32 hex digits or
  the dashed UUID. 40 bits make a clash unlikely, and a lookup that matches two payments says so
  rather than picking one.
"""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from rentplatform.money import MoneyField

from .lease import Lease
from .property import Property, Resident

SHORT_REFERENCE_LENGTH = 10
_UUID_GROUPS = [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)]
_REFERENCE_TEXT = re.compile(rf"[0-9a-f]{{{SHORT_REFERENCE_LENGTH},32}}")


class ReferenceFormatError(ValueError):
    """Text that is not a payment reference; the message says what one looks like."""


def reference_q(text: str, field: str = "reference") -> Q:
    """A filter for the reference typed as the short form, a longer prefix or the whole UUID."""
    digits = str(text).strip().lower().replace("-", "")
    if not _REFERENCE_TEXT.fullmatch(digits):
        raise ReferenceFormatError(
            f"{str(text).strip()!r} is not a payment reference: the {SHORT_REFERENCE_LENGTH} "
            "hex digits shown (e.g. 3f2a9c01be) or all 32."
        )
    if len(digits) == 32:
        return Q(**{field: uuid.UUID(digits)})
    # Written with the UUID's dashes: PostgreSQL compares the dashed text of its native uuid,
    # and Django strips the dashes again where UUIDs are stored as 32 hex digits (SQLite).
    dashed = "-".join(digits[start:end] for start, end in _UUID_GROUPS if digits[start:end])
    return Q(**{f"{field}__startswith": dashed})


class PaymentMethod(models.TextChoices):
    CARD = "card", "Card"
    ACH = "ach", "ACH (bank)"


class PaymentState(models.TextChoices):
    PROCESSING = "processing", "Processing"
    SETTLED = "settled", "Settled"
    DEPOSITED = "deposited", "Deposited"
    VOIDED = "voided", "Voided"
    REFUNDED = "refunded", "Refunded"
    RETURNED = "returned", "Returned"
    CHARGED_BACK = "charged_back", "Charged back"


S = PaymentState
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.PROCESSING: {S.SETTLED, S.VOIDED, S.RETURNED},
    S.SETTLED: {S.DEPOSITED, S.REFUNDED, S.RETURNED, S.CHARGED_BACK},
    S.DEPOSITED: {S.REFUNDED, S.RETURNED, S.CHARGED_BACK},
    S.VOIDED: set(),
    S.REFUNDED: set(),
    S.RETURNED: set(),
    S.CHARGED_BACK: set(),
}
REVERSED_STATES = {S.VOIDED, S.REFUNDED, S.RETURNED, S.CHARGED_BACK}


class InvalidTransition(ValueError):
    pass


class BatchStream(models.TextChoices):
    CARD = "card", "Card"
    ACH = "ach", "ACH"


class BatchKind(models.TextChoices):
    PAYMENTS = "payments", "Payments"
    REVERSALS = "reversals", "Reversals"


class BatchStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    DEPOSITED = "deposited", "Deposited"


class DepositBatch(models.Model):
    batch_id = models.CharField(
        "our batch id", max_length=20, unique=True, help_text="Digits; AMSI's ClientJnlNo."
    )
    property = models.ForeignKey(Property, on_delete=models.PROTECT, related_name="batches")
    stream = models.CharField(max_length=8, choices=BatchStream.choices)
    business_day = models.DateField(help_text="The property's local day.")
    kind = models.CharField(max_length=10, choices=BatchKind.choices, default=BatchKind.PAYMENTS)
    status = models.CharField(max_length=10, choices=BatchStatus.choices, default=BatchStatus.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    deposited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deposit batches"
        permissions = [("deposit_batch", "Can mark a batch deposited")]
        ordering = ["-business_day", "batch_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["property", "stream", "business_day", "kind"],
                condition=Q(status=BatchStatus.OPEN),
                name="one_open_batch_per_property_stream_day_kind",
            ),
            models.CheckConstraint(
                condition=Q(batch_id__regex=r"^[0-9]+$"), name="batch_id_is_digits"
            ),
            models.CheckConstraint(
                condition=~Q(status=BatchStatus.DEPOSITED) | Q(deposited_at__isnull=False),
                name="deposited_batch_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.batch_id} ({self.property.code} {self.stream} {self.business_day})"


class Payment(models.Model):
    reference = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="payments")
    resident = models.ForeignKey(
        Resident, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    amount = MoneyField()
    method = models.CharField(max_length=8, choices=PaymentMethod.choices)
    state = models.CharField(
        max_length=16, choices=PaymentState.choices, default=PaymentState.PROCESSING
    )
    return_code = models.CharField(max_length=3, blank=True, help_text="NACHA R-code")
    batch = models.ForeignKey(DepositBatch, on_delete=models.PROTECT, related_name="payments")
    business_day = models.DateField(help_text="The property's local day it was made.")
    accepted_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    idempotency_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        help_text="The client's key for this payment; unique per resident (a retry with the same "
        "key returns this payment).",
    )

    # Set by the service on the instance it returns when the request was a retry (the same
    # idempotency key): this payment was made by the first request. Not a column.
    replayed = False

    class Meta:
        ordering = ["-accepted_at"]
        permissions = [("void_payment", "Can void a processing payment")]
        constraints = [
            # A key belongs to the resident who sent it; keys sent without a resident (the
            # processor command) share one scope of their own.
            models.UniqueConstraint(
                fields=["resident", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, resident__isnull=False),
                name="payment_idempotency_key_per_resident",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False, resident__isnull=True),
                name="payment_idempotency_key_without_resident",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=~Q(state=PaymentState.RETURNED)
                | (Q(method=PaymentMethod.ACH) & Q(return_code__regex=r"^R[0-9]{2}$")),
                name="returned_payment_is_ach_with_code",
            ),
            models.CheckConstraint(
                condition=Q(state=PaymentState.RETURNED) | Q(return_code=""),
                name="return_code_only_when_returned",
            ),
            models.CheckConstraint(
                condition=~Q(state=PaymentState.CHARGED_BACK) | Q(method=PaymentMethod.CARD),
                name="charged_back_payment_is_card",
            ),
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded_state = self.state if self.pk else None

    def __str__(self) -> str:
        return f"Payment {self.short_id} {self.amount} {self.method} ({self.state})"

    def save(self, *args, **kwargs):
        previous = self._loaded_state
        if previous is not None and previous != self.state:
            if self.state not in ALLOWED_TRANSITIONS[previous]:
                raise InvalidTransition(
                    f"payment {self.public_id}: {previous} -> {self.state} is not allowed"
                )
        super().save(*args, **kwargs)
        self._loaded_state = self.state

    @property
    def public_id(self) -> str:
        return self.reference.hex

    @property
    def short_id(self) -> str:
        """The reference as people see it; ``reference_q`` reads it back."""
        return self.reference.hex[:SHORT_REFERENCE_LENGTH]


class ReversalKind(models.TextChoices):
    VOID = "void", "Void"
    REFUND = "refund", "Refund"
    RETURN = "return", "ACH return"
    CHARGEBACK = "chargeback", "Card chargeback"


class Reversal(models.Model):
    reference = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="reversal")
    kind = models.CharField(max_length=12, choices=ReversalKind.choices)
    return_code = models.CharField(max_length=3, blank=True)
    amount = MoneyField(help_text="The reversed amount (positive); it counts negative in batches.")
    batch = models.ForeignKey(DepositBatch, on_delete=models.PROTECT, related_name="reversals")
    business_day = models.DateField()
    created_at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who asked for it in the portal or the API (empty for the processor).",
    )
    idempotency_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        help_text="The client's key for this request; unique per user (kept, not unique, "
        "if the user is deleted).",
    )

    replayed = False  # as Payment.replayed

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, requested_by__isnull=False),
                name="reversal_idempotency_key_per_user",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="reversal_amount_positive"),
            models.CheckConstraint(
                condition=~Q(kind=ReversalKind.RETURN) | Q(return_code__regex=r"^R[0-9]{2}$"),
                name="return_reversal_has_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.payment}"

    @property
    def public_id(self) -> str:
        return self.reference.hex

    @property
    def short_id(self) -> str:
        """The reference as people see it (the payment's format)."""
        return self.reference.hex[:SHORT_REFERENCE_LENGTH]


class NachaReturnCode(models.Model):
    """NACHA ACH return reason codes; "counts as NSF" follows eSite's Setup > Return Codes."""

    code = models.CharField(max_length=3, primary_key=True)
    description = models.CharField(max_length=200)
    counts_as_nsf = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "NACHA return code"

    def __str__(self) -> str:
        return f"{self.code} {self.description}"
