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

from integrations import advice
from integrations.advice import Advice
from integrations.importing import run_import
from integrations.reconciliation import KnownBatches
from rentplatform.prepared import Upsert

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.db.models import QuerySet
    from django.forms import ModelForm

    from integrations.importing import Feed
    from integrations.models import Connection, Posting, SyncRun
    from integrations.reconciliation import RemoteSide
    from integrations.records import LeaseRecord, UnitRecord


@dataclass
class Delivered:
    """A posting the remote has: just written, or found there by a check."""

    remote_reference: str
    request_document: str = ""
    response_document: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    already_there: bool = False
    # Optional: the one row ``record_delivery`` would write for it, when the provider knows it
    # without writing anything else (where it landed, say). The outbox then writes that row
    # with the posted outcome, in the same statement on PostgreSQL (``Upsert``: inserted, or
    # the row with the same unique fields updated), and does not call ``record_delivery``.
    # Left None, ``record_delivery`` is called in the transaction that marks it posted.
    landing: Upsert | None = None


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
    # Import (integrations.importing): the provider's subclasses of the framework's abstract
    # link models (integrations.models.links); None for a provider that imports nothing.
    link_model: ClassVar[type | None] = None
    occupant_model: ClassVar[type | None] = None
    # Reconciliation: where a person gets the remote's deposits export to upload (the admin's
    # reconcile form shows it); "" when the provider always fetches it.
    report_help: ClassVar[str] = ""
    # The admin (integrations.admin.connections): one connection admin for every provider.
    # ``admin_form``: a ModelForm over Connection with typed fields for the settings and
    # credentials (the admin sets its class attribute ``changed_by`` to the signed-in user's
    # name before it saves); None: the generic form (settings as JSON, a write-only password).
    # ``admin_fieldsets``: the change page's layout (Django admin fieldsets) naming the form's
    # fields and the admin's read-only ones (``credentials_set``, ``backfill_link``,
    # ``last_tested_at``, ``last_test_ok``, ``last_test_message``); None: the generic layout.
    admin_form: ClassVar[type[ModelForm] | None] = None
    admin_fieldsets: ClassVar[list[tuple[str | None, dict[str, Any]]] | None] = None
    # Linking a lease by hand (integrations.linking: the lease admin's action and the API):
    # whether this provider can (then it fills ``lease_key`` and ``verify_lease_key``), and
    # the label and help text that ask a person for the remote lease id.
    links_leases: ClassVar[bool] = False
    link_label: ClassVar[str] = "Lease id in the accounting system"
    link_help: ClassVar[str] = ""

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

    def checks_unknown_outcomes(self, posting: Posting | None = None) -> bool:
        """Whether ``find_posting`` can tell, unattended, if an earlier write of ``posting``
        landed (the outbox always passes the posting; None: the connection's payments, as a
        page shows it).

        When it cannot, a posting whose outcome is unknown becomes "unconfirmed" and waits for
        a person instead of being written again.
        """
        return True

    def record_delivery(self, posting: Posting, delivered: Delivered) -> None:
        """Bookkeeping for a write that landed (where it landed, say), run in the transaction
        that marks the posting posted, so both are kept or neither; optional. Not called for
        a write whose ``Delivered.landing`` is given: that row is its bookkeeping."""

    def confirmed_by_person(self, posting: Posting, receipt: str) -> None:
        """A person found the posting in the remote system (optional bookkeeping)."""

    def where_to_look(self, posting: Posting) -> str:
        """For an unconfirmed posting: where a person finds it in the remote system."""
        subject = posting.subject
        return (
            f"Look in {self.name} for {posting.get_kind_display().lower()} {subject.public_id} "
            f"of {getattr(subject, 'amount', '')}."
        )

    def explain(self, posting: Posting) -> Advice:
        """The posting console's sentences: what happened to ``posting`` and what a person does
        next. The default covers every reason the framework gives (integrations.advice); a
        provider overrides it for its own error codes and falls back to ``super()``."""
        return advice.explain(self, posting)

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
        describe, write nothing. The framework does the work (integrations.importing) through
        the read and mapping hooks below; a provider overrides ``sync`` only to import
        something other than units, leases and residents.
        """
        if self.link_model is None:
            run.message = f"{self.system_name} has nothing to import"
            return
        run_import(self, run, lease_id=lease_id, since=since, progress=progress)

    # -- import hooks: read the remote, map each record (integrations.records) -----------------
    def read_units(self, feed: Feed) -> Iterable[Any]:
        """Every unit of the property (full import and resync); each item goes through
        ``unit_record``. Optional: units also come from the leases."""
        return ()

    def read_leases(self, feed: Feed) -> Iterable[Any]:
        """Every lease the remote lists as current or on notice (full import and resync); each
        item goes through ``lease_record`` (or is a LeaseRecord already). A list that was not
        read completely must be reported with ``feed.incomplete(reason)``, or leases missing
        from it would be marked inactive."""
        raise self._not_implemented("read_leases")

    def read_changed_leases(self, feed: Feed, since: dt.datetime | None) -> Iterable[Any]:
        """The leases changed since ``since`` (None: since a day ago), any status."""
        raise self._not_implemented("read_changed_leases")

    def read_lease(self, feed: Feed, link) -> Any | None:
        """One linked lease, read again ("sync now"); None when the remote no longer lists it
        (it is then marked inactive, unless ``feed.incomplete`` was called)."""
        raise self._not_implemented("read_lease")

    def unit_record(self, item: Any) -> UnitRecord:
        """Map one item of ``read_units``; raise BadRecord naming it when it cannot be."""
        raise self._not_implemented("unit_record")

    def lease_record(self, item: Any) -> LeaseRecord:
        """Map one item of the lease reads; raise BadRecord naming it when it cannot be."""
        raise self._not_implemented("lease_record")

    def property_label(self) -> str:
        """How errors about the whole property name it (the remote's property id, say)."""
        return f"property {self.connection.property.code}"

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

    def describe(self) -> str:
        """How the remote names this connection's property (the connection list); optional."""
        return ""

    # -- linking a lease by hand (when ``links_leases``) ---------------------------------------
    def lease_key(self, lease, text: str) -> tuple[tuple[str, ...], str]:
        """(key, note): the remote key (``link_model.key_fields`` order) that ``text``, typed by
        a person, names for ``lease``, and what was taken from ``text`` when it was not the
        bare id. Raise integrations.linking.LinkRefused, in words a manager reads, when it
        cannot be this lease's."""
        raise self._not_implemented("lease_key")

    def verify_lease_key(self, lease, key: tuple[str, ...]) -> None:
        """Ask the remote whether it lists the lease ``key``: LinkRefused when it does not, an
        IntegrationError when it could not be asked. Nothing is saved before this passes."""
        raise self._not_implemented("verify_lease_key")
