"""The outbox: what must reach the accounting system, and how far it got.

A Posting row is written by a signal receiver in the same transaction as the payment event, so
an event that rolls back leaves no posting, and the unique constraints mean a repeated signal
cannot create a second one. Its ``key`` is stable across retries and is what the provider sends
as the remote idempotency key (AMSI's ClientTransactionID).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class PostingKind(models.TextChoices):
    PAYMENT = "payment", "Payment"
    REVERSAL = "reversal", "Reversal"


class PostingState(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    POSTED = "posted", "Posted"
    RETRYING = "retrying", "Failed, will retry"
    # The last write may or may not have reached the remote, and this connection cannot check
    # unattended: a person looks in the accounting system and says which (never re-sent blindly).
    UNCONFIRMED = "unconfirmed", "Unconfirmed: check the accounting system"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    # A person decided it will never be posted (its payment was voided before it reached the
    # ledger, say): final, nothing sends it again (``Posting.save`` refuses to move it on).
    ABANDONED = "abandoned", "Abandoned by a person"


# Nothing more happens to a posting in these states (a "resolved" one is posted: a person
# entered it in the accounting system).
FINAL_STATES = (PostingState.POSTED, PostingState.ABANDONED)


class Posting(models.Model):
    connection = models.ForeignKey(
        "integrations.Connection", on_delete=models.PROTECT, related_name="postings"
    )
    kind = models.CharField(max_length=10, choices=PostingKind.choices)
    payment = models.ForeignKey(
        "rentplatform.Payment", on_delete=models.PROTECT, related_name="postings"
    )
    reversal = models.ForeignKey(
        "rentplatform.Reversal",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="postings",
    )
    key = models.CharField(max_length=64, unique=True, help_text="Stable remote idempotency key.")
    state = models.CharField(
        max_length=16, choices=PostingState.choices, default=PostingState.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    # When a delivery task was last queued (or the posting left to its connection's drain) and
    # not yet taken by a worker: the retry sweep skips postings whose task is still waiting in
    # the queue (no flood of duplicates in a backlog).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Set when an attempt ended without knowing whether the remote wrote the record; the next
    # attempt must find out before it sends anything.
    outcome_unknown = models.BooleanField(default=False)
    # A reversal whose payment is not posted yet waits (no attempt spent) from this time, at most
    # INTEGRATIONS["PAYMENT_WAIT_SECONDS"]; cleared once it goes on, or by a person's retry.
    waiting_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    remote_reference = models.CharField(max_length=100, blank=True)
    remote_data = models.JSONField(default=dict, blank=True)
    request_document = models.TextField(blank=True, help_text="Last request, secrets masked.")
    response_document = models.TextField(blank=True, help_text="Last response, secrets masked.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    # When the property's managers were last mailed about this posting waiting for a person
    # (integrations/attention.py): it is mailed again only once it has changed since.
    attention_mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("retry_posting", "Can retry a posting"),
            ("resolve_unconfirmed", "Can resolve an unconfirmed posting (found / not found)"),
            ("resolve_posting", "Can mark a posting resolved (entered in the accounting system)"),
            ("abandon_posting", "Can abandon a posting (it will never be posted)"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "kind"],
                condition=Q(kind=PostingKind.PAYMENT),
                name="one_payment_posting_per_payment",
            ),
            models.UniqueConstraint(
                fields=["reversal", "kind"],
                condition=Q(kind=PostingKind.REVERSAL),
                name="one_reversal_posting_per_reversal",
            ),
            models.CheckConstraint(
                condition=Q(kind=PostingKind.PAYMENT, reversal__isnull=True)
                | Q(kind=PostingKind.REVERSAL, reversal__isnull=False),
                name="reversal_posting_has_reversal",
            ),
            models.CheckConstraint(
                condition=~Q(state=PostingState.POSTED) | Q(posted_at__isnull=False),
                name="posted_posting_has_time",
            ),
        ]
        indexes = [
            # A drain's next posting (integrations/outbox/_drain.py): the connection's pending
            # postings in id order, a small index whatever the table's size.
            models.Index(
                fields=["connection", "id"],
                condition=Q(state=PostingState.PENDING),
                name="pending_postings_by_connection",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} posting {self.key} ({self.get_state_display()})"

    def save(self, *args, **kwargs):
        # An abandoned posting is final: whatever loaded it (a task django-q2 delivered again,
        # a forced delivery) may not move it on, so it is never sent.
        if getattr(self, "_loaded_state", None) == PostingState.ABANDONED and (
            self.state != PostingState.ABANDONED
        ):
            raise ValueError(f"posting {self.key} was abandoned by a person: it is never sent")
        super().save(*args, **kwargs)
        self._loaded_state = self.state

    @classmethod
    def from_db(cls, db, field_names, values, *args, **kwargs):
        # (Django 6.1 passes fetch_mode; 5.2 does not: whatever comes is passed on.)
        instance = super().from_db(db, field_names, values, *args, **kwargs)
        instance._loaded_state = instance.__dict__.get("state")
        return instance

    @property
    def subject(self):
        return self.reversal if self.kind == PostingKind.REVERSAL else self.payment


class AttemptOutcome(models.TextChoices):
    """How one attempt ended (``PostingAttempt.outcome``; empty while it runs). The field has
    no ``choices``, so adding an outcome needs no migration."""

    POSTED = "posted", "Posted"
    # The write was already there: eSite refused the repeat (checked unattended), or a
    # provider's reply said so.
    FOUND_POSTED = "found_posted", "Found already posted"
    ALREADY_DONE = "already_done", "Already done"
    PAUSED = "paused", "Login refused: connection paused"
    UNCONFIRMED = "unconfirmed", "Unconfirmed: waits for a person"
    UNKNOWN = "unknown", "Unknown outcome: checked before another write"
    RETRY = "retry", "Failed, will retry"
    REFUSED = "refused", "Refused"
    CRASHED = "crashed", "Crashed (a bug: see the traceback)"
    FOUND_BY_PERSON = "found_by_person", "Found by a person"
    NOT_FOUND_BY_PERSON = "not_found_by_person", "Not found by a person: post it"
    RESOLVED_BY_PERSON = "resolved_by_person", "Resolved by a person (in the accounting system)"
    ABANDONED_BY_PERSON = "abandoned_by_person", "Abandoned by a person (never posted)"


class PostingAttempt(models.Model):
    """One delivery attempt: written first, completed after (a log row a person can read)."""

    posting = models.ForeignKey(Posting, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, blank=True)
    checked_first = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["posting", "number"]
        constraints = [
            models.UniqueConstraint(fields=["posting", "number"], name="one_attempt_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.posting.key}: {self.outcome or 'running'}"


class ReportDeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    RETRYING = "retrying", "Failing, will retry"
    FAILED = "failed", "Failed: send it again by hand"


class ReportDelivery(models.Model):
    """A Batch Deposit Report's email: at least once per batch, retried until sent.

    A sender claims the row first (a conditional UPDATE to "sending" with ``claimed_until``,
    ``integrations.reports.deliver``), so two workers never send one report at once; ``sent_at``
    is written after the mail server accepted the message. A worker that dies between the two
    leaves an expired claim, and the report is sent again: at least once, not exactly once.
    """

    batch = models.OneToOneField(
        "rentplatform.DepositBatch", on_delete=models.CASCADE, related_name="report_delivery"
    )
    recipients = models.TextField(blank=True)
    state = models.CharField(
        max_length=10,
        choices=ReportDeliveryState.choices,
        default=ReportDeliveryState.PENDING,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "report deliveries"
        permissions = [("resend_report", "Can send a Batch Deposit Report again")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state=ReportDeliveryState.SENT) | Q(sent_at__isnull=False),
                name="sent_report_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"report {self.batch.batch_id} to {self.recipients}"

    @property
    def status_text(self) -> str:
        """What the admin list shows: sent / pending / failing: last error / failed."""
        state = ReportDeliveryState
        if self.state == state.SENT:
            return f"sent {self.sent_at:%Y-%m-%d %H:%M} UTC"
        if self.state == state.RETRYING:
            return f"failing (attempt {self.attempts}, retried by schedule): {self.last_error}"
        if self.state == state.FAILED:
            return f"FAILED: {self.last_error}"
        if self.state == state.SENDING:
            return f"sending (attempt {self.attempts})"
        return "pending"


class ConnectionDrain(models.Model):
    """Whether a drain task is queued for a connection and has not started yet.

    A new posting is delivered by a per-connection drain (``integrations.outbox``, "Drains"):
    once the posting is committed, its taker looks here and queues a drain only when none is
    waiting to start, so a burst of payments becomes a few django-q2 tasks, not one a payment.
    A drain clears ``queued_at`` as it starts, before it reads any posting."""

    connection = models.OneToOneField(
        "integrations.Connection",
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="drain",
    )
    # When the waiting drain was queued; empty: none waits (one may be running).
    queued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"drain of connection {self.connection_id} (queued {self.queued_at or 'no'})"
