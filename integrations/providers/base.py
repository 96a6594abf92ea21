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

if TYPE_CHECKING:
    from integrations.models import Connection, Posting, SyncRun


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


@dataclass
class BatchDifference:
    batch_id: str
    kind: (
        str  # missing_remote, missing_local, total_differs, count_differs, duplicate, missing_item
    )
    message: str
    local: str = ""
    remote: str = ""


class AccountingProvider:
    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    # A provider with its own admin (typed fields instead of the settings JSON) is left out of
    # the generic connection admin, so nobody edits its settings as raw JSON.
    has_own_admin: ClassVar[bool] = False

    def __init__(self, connection: Connection):
        self.connection = connection

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

    def reconcile(self, month: dt.date, report_text: str | None = None) -> list[BatchDifference]:
        """Compare our batches of ``month`` with the remote's; ``report_text`` is an export a
        person uploaded (else the provider fetches what it can)."""
        raise self._not_implemented("reconcile")

    def lease_reference(self, lease) -> str:
        """How the remote names a lease (shown on reports); optional."""
        return ""
