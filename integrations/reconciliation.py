"""Reconciliation: our deposit batches of a month against the remote's, every difference named.

Design note. The framework owns the comparison, the command, the admin page and the wording; a
provider answers four questions (hooks on ``integrations.providers.base.AccountingProvider``):

- ``remote_month(month, report_text)``: the remote side (``RemoteSide``): a total per remote
  batch number and the items (batch, transaction id, signed amount, kind, reason), fetched by
  the provider or parsed from an export a person uploaded;
- ``transaction_id(posting)``: the id the remote knows a posting by. Items are matched on that
  id and the amount's sign, the identity of a payment or of its reversal;
- ``known_batches(month, postings)``: the remote batches we recorded for the month (remote
  number -> the batch id of ours it reports under) and where postings were recorded landing;
- ``expected_batch(posting, transaction_id, remote)``: where a posting nobody recorded as
  landed is expected.

Our side is kept per remote batch: what landed in each known batch, plus every payment and
reversal of the month's deposit batches that has not landed anywhere, where it is expected (a
payment or reversal the outbox never wrote is expected too, and so reported missing). A remote
batch number need not be our batch id (AMSI books a late return in a batch numbered by the
original ClientTransactionID), so each difference names the batch of ours it reports under,
and the remote number where that differs. Differences: a batch missing on either side, a total
that differs, an item there twice, missing, in another batch, of another amount, or not ours.
Messages name the remote by the provider's ``system_name`` ("not in eSite"); the sentences a
manager reads (the admin page, its CSV) are ``integrations.reconciliation_words``'s, from the
item, remote id, payment or reversal and remote batch number each difference carries.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.exceptions import IntegrationError, PermanentError
from integrations.models import Connection, Posting, PostingKind, ReconciliationRun
from rentplatform.models import DepositBatch

if TYPE_CHECKING:
    from integrations.providers.base import AccountingProvider

ZERO = Decimal("0.00")


@dataclass
class BatchDifference:
    """One difference, named by the batch id of ours it reports under."""

    batch_id: str
    # missing_remote, missing_local, total_differs, duplicate, missing_item, wrong_batch,
    # amount_differs, unknown_item
    kind: str
    message: str
    local: str = ""
    remote: str = ""
    # Which item (for the item kinds): how a person finds it ("payment 0f37602d0f"), the id
    # the remote knows it by, and our Payment or Reversal (None: not one of ours).
    item: str = ""
    reference: str = ""
    subject: Any = field(default=None, repr=False, compare=False)
    remote_batch: str = ""  # the remote's batch number where it is not our batch id


# -- the two sides ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteItem:
    """One entry the remote shows: in which remote batch, under which id, signed."""

    batch: str
    transaction_id: str
    amount: Decimal
    kind: str = ""  # the remote's own wording (AMSI: Payment / Return)
    reason: str = ""


@dataclass
class RemoteSide:
    """The remote's month: its total per remote batch number, and its items where it lists
    them (an export with totals only leaves ``items`` empty)."""

    totals: dict[str, Decimal] = field(default_factory=dict)
    items: list[RemoteItem] = field(default_factory=list)

    @cached_property
    def _first_batch(self) -> dict[tuple[str, bool], str]:
        first: dict[tuple[str, bool], str] = {}
        for item in self.items:
            first.setdefault((item.transaction_id, item.amount < 0), item.batch)
        return first

    def batch_holding(self, transaction_id: str, *, negative: bool) -> str | None:
        """The remote batch of the first item with this id and sign (None: not there)."""
        return self._first_batch.get((transaction_id, negative))


@dataclass(frozen=True)
class Landing:
    """A posting recorded as landed in a remote batch, with the amount it added there."""

    posting: Posting
    batch: str
    amount: Decimal


@dataclass
class KnownBatches:
    """What we recorded of the remote's batches (``known_batches`` hook)."""

    # Remote batch number -> the batch id of ours it reports under.
    batches: dict[str, str] = field(default_factory=dict)
    landed: list[Landing] = field(default_factory=list)


@dataclass(frozen=True)
class LocalItem:
    """One entry we expect the remote to show."""

    batch: str  # the remote batch number we expect it in
    transaction_id: str
    amount: Decimal  # signed: a reversal is negative
    label: str  # how a person finds it on our side ("payment 0f37602d0f")
    host_batch: str = ""  # our batch id it reports under; "": the remote batch's
    subject: Any = field(default=None, compare=False)  # our Payment or Reversal


@dataclass
class LocalSide:
    """Our month per remote batch number."""

    # Remote batch number -> the batch id of ours it reports under.
    hosts: dict[str, str] = field(default_factory=dict)
    items: list[LocalItem] = field(default_factory=list)

    def add(self, item: LocalItem) -> None:
        self.items.append(item)
        self.hosts.setdefault(item.batch, item.host_batch or item.batch)

    def nets(self) -> dict[str, Decimal]:
        """What each remote batch should total (a known batch with no items: zero)."""
        nets = dict.fromkeys(self.hosts, ZERO)
        for item in self.items:
            nets[item.batch] = nets.get(item.batch, ZERO) + item.amount
        return nets


# -- our side ---------------------------------------------------------------------------------


def month_range(month: dt.date) -> tuple[dt.date, dt.date]:
    """[first day of ``month``, first day of the next month)."""
    start = month.replace(day=1)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def month_batches(connection: Connection, month: dt.date) -> QuerySet[DepositBatch]:
    """The connection's property's deposit batches whose business day is in ``month``."""
    start, end = month_range(month)
    return DepositBatch.objects.filter(
        property=connection.property_id, business_day__gte=start, business_day__lt=end
    )


def month_postings(connection: Connection, month: dt.date) -> QuerySet[Posting]:
    """The postings of the month's payments and reversals (each in the batch it joined)."""
    batches = month_batches(connection, month)
    return Posting.objects.filter(connection=connection).filter(
        Q(kind=PostingKind.PAYMENT, payment__batch__in=batches)
        | Q(kind=PostingKind.REVERSAL, reversal__batch__in=batches)
    )


def _label(posting: Posting) -> str:
    if posting.kind == PostingKind.REVERSAL:
        return f"{posting.reversal.kind} {posting.reversal.short_id}"
    return f"payment {posting.payment.short_id}"


def _signed(posting: Posting) -> Decimal:
    if posting.kind == PostingKind.REVERSAL:
        return -posting.reversal.amount
    return posting.payment.amount


def _transaction_id(provider: AccountingProvider, posting: Posting) -> str:
    if posting.pk is None and posting.kind == PostingKind.PAYMENT:
        # The outbox never wrote it, so it was never sent: nothing but our key names it.
        return posting.key
    try:
        return provider.transaction_id(posting)
    except PermanentError:
        # The remote cannot know it (AMSI: a reversal of a payment never posted): named by
        # our key, it is reported missing.
        return posting.key


def local_side(provider: AccountingProvider, month: dt.date, remote: RemoteSide) -> LocalSide:
    """Our side of ``month`` per remote batch (see the module's design note)."""
    connection = provider.connection
    postings = month_postings(connection, month)
    written = {
        (p.kind, p.reversal_id or p.payment_id): p
        for p in postings.select_related("payment__batch", "reversal__batch")
    }
    known = provider.known_batches(month, postings)
    side = LocalSide(hosts=dict(known.batches))
    landed = set()
    for landing in known.landed:
        landed.add(landing.posting.pk)
        if landing.batch in known.batches:
            posting = landing.posting
            side.add(
                LocalItem(
                    landing.batch,
                    _transaction_id(provider, posting),
                    landing.amount,
                    _label(posting),
                    posting.subject.batch.batch_id,
                    posting.subject,
                )
            )

    batches = month_batches(connection, month).prefetch_related(
        "payments", "reversals__payment__batch"
    )
    expected: list[Posting] = []
    reversals = []
    for batch in batches:
        for payment in batch.payments.all():
            key = (PostingKind.PAYMENT, payment.pk)
            # A stand-in for a posting the outbox never wrote, keyed as the outbox would.
            expected.append(
                written.get(key)
                or Posting(
                    connection=connection, kind=key[0], payment=payment, key=payment.public_id
                )
            )
        reversals += batch.reversals.all()
    for reversal in reversals:
        key = (PostingKind.REVERSAL, reversal.pk)
        expected.append(
            written.get(key)
            or Posting(
                connection=connection,
                kind=key[0],
                payment=reversal.payment,
                reversal=reversal,
                key=reversal.public_id,
            )
        )
    for posting in expected:
        if posting.pk is not None and posting.pk in landed:
            continue
        txn = _transaction_id(provider, posting)
        side.add(
            LocalItem(
                provider.expected_batch(posting, txn, remote),
                txn,
                _signed(posting),
                _label(posting),
                posting.subject.batch.batch_id,
                posting.subject,
            )
        )
    return side


# -- the comparison ---------------------------------------------------------------------------


def compare(
    local: LocalSide, remote: RemoteSide, system: str = "the remote"
) -> list[BatchDifference]:
    """Every difference between the two sides, per remote batch, each named by the batch of
    ours it reports under (an item by its own ``host_batch`` where it has one). ``system``
    names the remote in the messages ("eSite")."""
    hosts = local.hosts
    nets = local.nets()

    def host(batch: str) -> str:
        return hosts.get(batch, batch)

    def where(batch: str) -> str:
        # Names the remote batch when its number is not our batch id (e.g. a return batch).
        return "" if host(batch) == batch else f" ({system} batch {batch})"

    def other(batch: str) -> str:
        return "" if host(batch) == batch else batch

    def of(item: LocalItem) -> dict[str, Any]:
        return {"item": item.label, "reference": item.transaction_id, "subject": item.subject}

    diffs: list[BatchDifference] = []
    in_items = {item.batch for item in local.items}
    for batch, net in sorted(nets.items()):
        if batch not in remote.totals:
            if net != ZERO or batch in in_items:
                diffs.append(
                    BatchDifference(
                        host(batch),
                        "missing_remote",
                        f"batch not in {system}{where(batch)}",
                        str(net),
                        "",
                        remote_batch=other(batch),
                    )
                )
            continue
        if remote.totals[batch] != net:
            diffs.append(
                BatchDifference(
                    host(batch),
                    "total_differs",
                    f"total differs by {remote.totals[batch] - net}{where(batch)}",
                    str(net),
                    str(remote.totals[batch]),
                    remote_batch=other(batch),
                )
            )
    for batch in sorted(set(remote.totals) - set(nets)):
        diffs.append(
            BatchDifference(
                batch,
                "missing_local",
                f"{system} batch we have no record of",
                "",
                str(remote.totals[batch]),
            )
        )
    # Items: matched on (transaction id, sign), the identity of a payment or its reversal.
    remote_by_key: dict[tuple[str, bool], list[RemoteItem]] = defaultdict(list)
    for item in remote.items:
        remote_by_key[(item.transaction_id, item.amount < 0)].append(item)
    local_keys = Counter((item.transaction_id, item.amount < 0) for item in local.items)
    by_key = {(item.transaction_id, item.amount < 0): item for item in local.items}
    for (txn, negative), found in sorted(remote_by_key.items()):
        if len(found) > 1:
            ours = by_key.get((txn, negative))
            diffs.append(
                BatchDifference(
                    host(found[0].batch),
                    "duplicate",
                    f"{'reversal of ' if negative else ''}{txn} is in {system} {len(found)} times",
                    "1",
                    str(len(found)),
                    **(of(ours) if ours else {"item": f"entry {txn}", "reference": txn}),
                )
            )
    for ours in local.items:
        item_host = ours.host_batch or host(ours.batch)
        found = remote_by_key.get((ours.transaction_id, ours.amount < 0), [])
        if not found:
            diffs.append(
                BatchDifference(
                    item_host,
                    "missing_item",
                    f"{ours.label} ({ours.amount}) not in {system}{where(ours.batch)}",
                    str(ours.amount),
                    "",
                    **of(ours),
                    remote_batch=other(ours.batch),
                )
            )
            continue
        theirs = found[0]
        if theirs.batch != ours.batch:
            diffs.append(
                BatchDifference(
                    item_host,
                    "wrong_batch",
                    f"{ours.label} is in {system} batch {theirs.batch}, not {ours.batch}",
                    ours.batch,
                    theirs.batch,
                    **of(ours),
                )
            )
        elif theirs.amount != ours.amount:
            diffs.append(
                BatchDifference(
                    item_host,
                    "amount_differs",
                    f"{ours.label} amount differs{where(ours.batch)}",
                    str(ours.amount),
                    str(theirs.amount),
                    **of(ours),
                )
            )
    for (txn, negative), found in sorted(remote_by_key.items()):
        if (txn, negative) not in local_keys:
            diffs.append(
                BatchDifference(
                    host(found[0].batch),
                    "unknown_item",
                    f"{system} entry {txn} ({found[0].amount}) is not one of ours",
                    "",
                    str(found[0].amount),
                    item=f"entry {txn}",
                    reference=txn,
                )
            )
    return diffs


# -- runs (the command and the admin page) ----------------------------------------------------


@dataclass
class ReconciliationResult:
    connection: Connection
    month: dt.date
    differences: list[BatchDifference] = field(default_factory=list)
    error: str = ""
    system_name: str = "the accounting system"  # the provider's, once it is known

    @property
    def ok(self) -> bool:
        return not self.error and not self.differences

    def summary(self) -> str:
        code = self.connection.property.code
        if self.error:
            return f"{code} {self.month:%Y-%m}: could not reconcile: {self.error}"
        if not self.differences:
            return (
                f"{code} {self.month:%Y-%m}: 0 differences - our batches match {self.system_name}"
            )
        n = len(self.differences)
        return f"{code} {self.month:%Y-%m}: {n} difference{'' if n == 1 else 's'}"


def parse_month(value: str | None, today: dt.date | None = None) -> dt.date:
    """YYYY-MM as the month's first day; no value: the month of ``today`` (a property's own
    day: ``Property.local_day()``), else of the server's local date."""
    if not value:
        return (today or timezone.localdate()).replace(day=1)
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month {value!r} is not YYYY-MM") from None


def reconcile(
    connection: Connection,
    month: dt.date,
    report_text: str | None = None,
    *,
    ran_by: str = "",
    source: str = "",
) -> ReconciliationResult:
    """Reconcile ``connection``'s ``month``; ``report_text`` is an export a person uploaded
    (else the provider fetches the remote side itself). A remote that cannot be read is the
    result's ``error``, not an exception. Every run is recorded (a ReconciliationRun: who ran
    it, ``ran_by``; what it compared with, ``source``; the differences in words)."""
    result = ReconciliationResult(connection, month)
    try:
        provider = connection.get_provider()
        result.system_name = provider.system_name
        remote = provider.remote_month(month, report_text)
        result.differences = compare(
            local_side(provider, month, remote), remote, provider.system_name
        )
    except IntegrationError as err:
        result.error = err.message
    if not source:
        source = "an uploaded export" if report_text is not None else "read from the remote"
    record_run(result, ran_by=ran_by, source=source)
    return result


def record_run(result: ReconciliationResult, *, ran_by: str, source: str) -> ReconciliationRun:
    from integrations.reconciliation_words import sentences, sides  # (it imports this module)

    kept = []
    for diff, sentence in sentences(result)[: ReconciliationRun.MAX_KEPT]:
        ours, theirs = sides(diff)
        kept.append(
            {
                "batch": diff.batch_id,
                "kind": diff.kind,
                "sentence": sentence,
                "ours": ours,
                "theirs": theirs,
                "item": diff.item,
            }
        )
    return ReconciliationRun.objects.create(
        connection=result.connection,
        month=result.month,
        ran_by=ran_by[:150],
        source=source[:255],
        differences_count=len(result.differences),
        error=result.error,
        differences=kept,
    )
