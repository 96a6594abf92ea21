"""The provider contract: template methods the outbox and the admin call.

The framework drives a fixed sequence (``deliver``: check first when the last outcome was
unknown, then post; ``close_batches``; ``sync``); a provider fills the named hooks. A hook left
unimplemented raises NotImplementedError naming ``module.Class`` (anymail's base backend does
the same), so a half-written provider fails loudly in its contract tests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from integrations.reconciliation import KnownBatches

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from integrations.models import Connection, Posting, SyncRun
    from integrations.reconciliation import RemoteSide


@dataclass
class Delivered:
    """A posting the remote has: just written, or found there by a check."""

    remote_reference: str
    request_document: str = ""
    response_document: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    already_there: bool = False


@dataclass
class ConnectionCheck:
    ok: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class AccountingProvider:
    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    # How messages name the remote system ("eSite"); the display name when left empty.
    system_name: ClassVar[str] = ""
    # A provider with its own admin (typed fields instead of the settings JSON) is left out of
    # the generic connection admin, so nobody edits its settings as raw JSON.
    has_own_admin: ClassVar[bool] = False

    def __init__(self, connection: Connection):
        self.connection = connection

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.system_name:
            cls.system_name = cls.name

    def _not_implemented(self, hook: str):
        cls = type(self)
        return NotImplementedError(f"{cls.__module__}.{cls.__name__} must implement {hook}()")

    # -- template methods -------------------------------------------------------------------
    def deliver(self, posting: Posting) -> Delivered:
        """Post a payment or reversal exactly once.

        When the previous attempt's outcome is unknown, ask the remote first and never send a
        second write for something it already has.
        """
        if posting.outcome_unknown:
            found = self.find_posting(posting)
            if found is not None:
                found.already_there = True
                return found
        if posting.kind == "reversal":
            return self.post_reversal(posting)
        return self.post_payment(posting)

    # -- hooks ---------------------------------------------------------------------------------
    def test_connection(self) -> ConnectionCheck:
        raise self._not_implemented("test_connection")

    def post_payment(self, posting: Posting) -> Delivered:
        raise self._not_implemented("post_payment")

    def post_reversal(self, posting: Posting) -> Delivered:
        raise self._not_implemented("post_reversal")

    def find_posting(self, posting: Posting) -> Delivered | None:
        raise self._not_implemented("find_posting")

    def checks_unknown_outcomes(self) -> bool:
        """Whether ``find_posting`` can tell, unattended, if an earlier write landed.

        When it cannot, a posting whose outcome is unknown becomes "unconfirmed" and waits for
        a person instead of being written again.
        """
        return True

    def confirmed_by_person(self, posting: Posting, receipt: str) -> None:
        """A person found the posting in the remote system (optional bookkeeping)."""

    def where_to_look(self, posting: Posting) -> str:
        """For an unconfirmed posting: where a person finds it in the remote system."""
        subject = posting.subject
        return (
            f"Look in {self.name} for {posting.get_kind_display().lower()} {subject.public_id} "
            f"of {getattr(subject, 'amount', '')}."
        )

    def sync(
        self,
        run: SyncRun,
        *,
        lease_id: int | None = None,
        since: dt.datetime | None = None,
        progress=None,
    ) -> None:
        """Import or resync into the host's models, counting on ``run``.

        ``run.kind`` says which (import, full, delta, lease); ``run.dry_run`` means count and
        describe, write nothing.
        """
        raise self._not_implemented("sync")

    def close_batches(self, *, now: dt.datetime | None = None) -> list[str]:
        """Close (settle) remote batches that are due; returns a line per batch acted on."""
        raise self._not_implemented("close_batches")

    # -- reconciliation hooks (integrations.reconciliation compares; these answer) ------------
    def remote_month(self, month: dt.date, report_text: str | None = None) -> RemoteSide:
        """The remote's side of ``month``: its total per remote batch and its items.
        ``report_text`` is an export a person uploaded; without it the provider fetches what
        it can. Raise an IntegrationError saying what to do when it cannot be read."""
        raise self._not_implemented("remote_month")

    def transaction_id(self, posting: Posting) -> str:
        """The id the remote knows a posting by (items are matched on it and the amount's
        sign). Default: the posting's key. ``posting`` may be an unsaved stand-in for one the
        outbox never wrote; raise PermanentError when the remote cannot know it."""
        return posting.key

    def known_batches(self, month: dt.date, postings: QuerySet[Posting]) -> KnownBatches:
        """The remote batches we recorded for ``month`` (remote number -> our batch id it
        reports under) and the postings recorded as landed: each posting in those batches, and
        each of ``postings`` (the month's) landed elsewhere, so it is not expected again.
        Default: nothing recorded; every posting is expected where ``expected_batch`` says."""
        return KnownBatches()

    def expected_batch(self, posting: Posting, transaction_id: str, remote: RemoteSide) -> str:
        """The remote batch a posting nobody recorded as landed should be in. Default: the
        batch id of the deposit batch its payment or reversal joined."""
        return posting.subject.batch.batch_id

    def lease_reference(self, lease) -> str:
        """How the remote names a lease (shown on reports); optional."""
        return ""
