"""Where postings land in eSite, and closing the eSite batches: nobody closes batches by hand.

Landing. Every AddPayment / ReturnPayment that succeeded (or that eSite says is already there)
is recorded as an ``AmsiBatchEntry``: which eSite External batch took it and its signed
amount. By ``record_landing`` in the finish's transaction, or, for a payment whose batch link
exists and knows what the reply says, as ``known_landing``'s row, which the outbox writes with
the posted outcome in one statement (the link was read with the lease link before the call).
A payment lands in the batch its host batch id (ClientJnlNo) names: the first payment with a
new ClientJnlNo opens an External batch (AMSI_EDEX.md: inferred, strong).
A return names the original payment's ClientTransactionID and the original batch's ClientJnlNo,
as the production client sent it. Where eSite books it is not known. Production settled a
return under ExternalJnlNo = the original ClientTransactionID, which suggests a batch of its own
numbered so, at least once the original batch is settled; eSite may instead reopen the original
batch, and nothing shows what it does while that batch is open. The client follows the reply's
eSiteBatchNo; with no number to compare, it expects the original batch while that batch is open,
else a return batch numbered by the ClientTransactionID (``_reversal_link``).

Closing. Each eSite batch is settled with UpdateSettlementData at the sum of its entries whose
posting is posted, and settled again when that sum moved since. A payments batch is settled
from the connection's cutoff on its host batch's day (the property's time zone), once every
posting that could still land in it has finished; a return batch as soon as it exists, with a
positive SettlementAmount (its total is negative), ExternalJnlNo = the original
ClientTransactionID, as production did. SettlementDate is the bank deposit date: the host
batch's deposit day, or while it is not deposited its business day plus the connection's lag
in business days (weekends skipped; ``settlement_lag_days``, default 3). A settlement AMSI
refuses is "needs attention"; a transport failure is tried again on the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from decimal import Decimal

from django.db import connection as db_connection
from django.db import connections as db_connections
from django.db import transaction
from django.db.models import DecimalField, F, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from integrations.exceptions import IntegrationError, PermanentError
from integrations.logging import mask
from integrations.models import Posting, PostingKind, PostingState
from integrations.models.posting import FINAL_STATES
from rentplatform.models import DepositBatch
from rentplatform.prepared import Prepared, Upsert, upsert_row

from .conf import DEFAULT_SETTLEMENT_LAG_DAYS
from .errors import error_for
from .identifiers import client_transaction_id
from .models import AmsiBatchEntry, AmsiBatchKind, AmsiBatchLink
from .xmldocs import settlement_xml

log = logging.getLogger(__name__)

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
# Postings that wait for a person, not for the outbox.
WAITING_FOR_A_PERSON = (PostingState.NEEDS_ATTENTION, PostingState.UNCONFIRMED)


# -- settlement dates ---------------------------------------------------------------------------


def add_business_days(day: dt.date, days: int) -> dt.date:
    """``day`` plus ``days`` business days, skipping Saturdays and Sundays only (holidays count
    as business days, as in the production client: Friday + 3 = Wednesday)."""
    while days > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def deposit_date(batch: DepositBatch, lag_days: int = DEFAULT_SETTLEMENT_LAG_DAYS) -> dt.date:
    """The bank deposit date of a host batch: the property's day it was deposited, or while it
    is not deposited yet, its business day plus ``lag_days`` business days."""
    if batch.deposited_at is not None:
        return batch.deposited_at.astimezone(batch.property.tz).date()
    return add_business_days(batch.business_day, lag_days)


# -- where a posting landed ---------------------------------------------------------------------


def _remember_reply(link: AmsiBatchLink, reply) -> None:
    changed = []
    if reply.batch_no and link.esite_batch_no != reply.batch_no:
        link.esite_batch_no = reply.batch_no
        changed.append("esite_batch_no")
    if reply.bank_book and link.bank_book != reply.bank_book:
        link.bank_book = reply.bank_book
        changed.append("bank_book")
    if changed:
        link.save(update_fields=changed)


# Read for every payment posted: compiled once (rentplatform/prepared.py).
_LINK = Prepared(
    lambda connection_id, jnl_no: AmsiBatchLink.objects.filter(
        connection_id=connection_id, client_jnl_no=jnl_no
    ).order_by(),
    int,
    str,
)


def esite_batch_no(connection_id: int, jnl_no: str) -> str:
    """eSite's own number for the batch our ClientJnlNo names, where its link knows it."""
    link = _LINK.first(connection_id, jnl_no)
    return link.esite_batch_no if link else ""


def landing_columns(connection_id, jnl_no) -> dict:
    """Annotations for a read made before a payment is sent (the provider's lease link): the
    eSite batch link its ClientJnlNo names on the connection, if one exists, and what that
    link knows of the eSite batch. ``known_landing`` reads them."""
    link = AmsiBatchLink.objects.filter(connection_id=connection_id, client_jnl_no=jnl_no)
    return {
        f"landing_{name}": Subquery(link.values(name)[:1])
        for name in ("id", "esite_batch_no", "bank_book")
    }


def known_landing(posting, read, data: dict) -> Upsert | None:
    """The entry ``record_landing`` would write for a payment posting, when ``read`` (a row
    annotated with ``landing_columns``) found its batch's link and the reply (``data``: its
    eSiteBatchNo and eSiteBankBookID) tells that link nothing new. Else None: the link is to
    be created, or to learn the eSite batch, and ``record_landing`` does it in the finish."""
    link_id = getattr(read, "landing_id", None)
    if link_id is None or posting.kind != PostingKind.PAYMENT:
        return None
    batch_no = data.get("eSiteBatchNo", "")
    bank_book = data.get("eSiteBankBookID", "")
    if (batch_no and batch_no != read.landing_esite_batch_no) or (
        bank_book and bank_book != read.landing_bank_book
    ):
        return None
    # Said now, as record_landing says it: the reply says where it landed, whether or not this
    # attempt's finish is the one that records it (a late attempt's is not).
    _log_landing(posting, read.landing_esite_batch_no, posting.payment.batch.batch_id)
    return _entry(AmsiBatchEntry(posting=posting, link_id=link_id, amount=posting.payment.amount))


def _entry(entry: AmsiBatchEntry) -> Upsert:
    """A posting's one entry, written or rewritten by one statement."""
    return Upsert(entry, unique=["posting"], update=["link", "amount", "recorded_at"])


def _payments_link(connection, batch: DepositBatch) -> AmsiBatchLink:
    link = _LINK.first(connection.pk, batch.batch_id)
    if link is not None:
        return link
    link, _ = AmsiBatchLink.objects.get_or_create(
        connection=connection,
        client_jnl_no=batch.batch_id,
        defaults={"batch": batch, "kind": AmsiBatchKind.PAYMENTS},
    )
    return link


def _is_open(link: AmsiBatchLink) -> bool:
    """Whether we take the eSite batch for open: never settled, or its total moved since its
    last settlement (something landed in it after; whether that reopens an eSite batch is
    not known)."""
    if link.settled_amount is None:
        return True
    landed = link.entries.aggregate(total=Sum("amount"))["total"] or ZERO
    return landed.quantize(CENT) != link.settled_amount


def _reversal_link(connection, posting, reply) -> AmsiBatchLink:
    payment = posting.payment
    original = AmsiBatchLink.objects.filter(
        connection=connection, client_jnl_no=payment.batch.batch_id
    ).first()
    if original is not None and original.esite_batch_no and reply.batch_no:
        in_original = reply.batch_no == original.esite_batch_no
    else:
        # No batch number to compare: our expectation, not a known eSite rule. The original
        # batch (where the return was sent) while we take it for open; once it is settled, a
        # return batch, as production's settlement of returns suggests. A landing recorded
        # before (the same posting recorded again) stays where it was.
        known = AmsiBatchEntry.objects.filter(posting=posting).select_related("link").first()
        if known is not None and not reply.batch_no:
            return known.link
        in_original = original is None or _is_open(original)
    if in_original:
        return original or _payments_link(connection, payment.batch)
    payment_posting = Posting.objects.get(payment=payment, kind=PostingKind.PAYMENT)
    link, _ = AmsiBatchLink.objects.get_or_create(
        connection=connection,
        client_jnl_no=client_transaction_id(payment_posting),
        defaults={"batch": posting.reversal.batch, "kind": AmsiBatchKind.RETURN},
    )
    return link


def record_landing(provider, posting, reply) -> AmsiBatchEntry:
    """Record which eSite batch took ``posting`` (after a successful or already-there
    AddPayment / ReturnPayment). Idempotent: recording again updates the posting's entry."""
    connection = provider.connection
    # No savepoint inside the caller's transaction (the outbox's finish, a person's "found"):
    # this is part of it.
    with transaction.atomic(savepoint=False):
        if posting.kind == PostingKind.PAYMENT:
            link = _payments_link(connection, posting.payment.batch)
            amount = posting.payment.amount
        else:
            link = _reversal_link(connection, posting, reply)
            amount = -posting.reversal.amount
        _remember_reply(link, reply)
        # One row per posting, written or rewritten by one statement. No save()
        # (rentplatform/prepared.py): the model has no override nor receivers.
        landing = _entry(AmsiBatchEntry(posting=posting, link=link, amount=amount))
        entry = upsert_row(landing.instance, unique=landing.unique, update=landing.update)
    _log_landing(posting, link.esite_batch_no, link.client_jnl_no)
    return entry


def _log_landing(posting, esite_batch_no: str, client_jnl_no: str) -> None:
    log.info(
        "%s %s landed in eSite batch %s (external %s)",
        posting.kind,
        posting.key,
        esite_batch_no or "?",
        client_jnl_no,
    )


# -- closing ------------------------------------------------------------------------------------


def _posted_total():
    return Coalesce(
        Sum("entries__amount", filter=Q(entries__posting__state=PostingState.POSTED)),
        Value(ZERO),
        output_field=DecimalField(max_digits=12, decimal_places=2),
    )


def expected_total(link: AmsiBatchLink) -> Decimal:
    """What the eSite batch should total: its entries whose posting is posted."""
    total = link.entries.filter(posting__state=PostingState.POSTED).aggregate(t=Sum("amount"))["t"]
    return (total or ZERO).quantize(CENT)


def unfinished_postings(link: AmsiBatchLink) -> QuerySet[Posting]:
    """Postings that are in this eSite batch, or could still land in it, and are not final
    (posted, or abandoned by a person)."""
    could_land = Q(amsi_entry__link=link)
    if link.kind == AmsiBatchKind.PAYMENTS:
        could_land |= Q(kind=PostingKind.PAYMENT, payment__batch_id=link.batch_id)
        could_land |= Q(
            kind=PostingKind.REVERSAL, payment__batch_id=link.batch_id, amsi_entry__isnull=True
        )
    # Abandoned by a person: never posted, never waited for.
    return (
        Posting.objects.filter(connection_id=link.connection_id)
        .filter(could_land)
        .exclude(state__in=FINAL_STATES)
        .distinct()
    )


def links_to_settle(connection) -> QuerySet[AmsiBatchLink]:
    """eSite batches never settled or whose total moved since: one aggregate query (a settled
    batch that did not move is not looked at again)."""
    return (
        AmsiBatchLink.objects.filter(connection=connection)
        .annotate(expected=_posted_total())
        .annotate(gap=Abs(F("expected") - F("settled_amount")))
        # Half a cent, not zero: SQLite sums decimals as floats.
        .filter(Q(settled_amount__isnull=True) | Q(gap__gte=Decimal("0.005")))
        .select_related("batch__property")
    )


def is_due(batch: DepositBatch, cutoff: dt.time, now: dt.datetime) -> bool:
    local_now = now.astimezone(batch.property.tz)
    return batch.business_day < local_now.date() or (
        batch.business_day == local_now.date() and local_now.time() >= cutoff
    )


def _label(link: AmsiBatchLink) -> str:
    if link.kind == AmsiBatchKind.RETURN:
        return f"{link.client_jnl_no} (return batch, under our batch {link.batch.batch_id})"
    return link.client_jnl_no


def _postings(n: int) -> str:
    return "1 posting" if n == 1 else f"{n} postings"


def _need(n: int) -> str:
    return "needs" if n == 1 else "need"


def settle_batch(provider, link: AmsiBatchLink, *, now: dt.datetime) -> str:
    """Settle one eSite batch if it is ready; returns a line saying what happened."""
    label = _label(link)
    unfinished = unfinished_postings(link)
    if unfinished.exists():
        attention = unfinished.filter(state__in=WAITING_FOR_A_PERSON).count()
        if attention:
            link.needs_attention = True
            link.settle_error = (
                f"{_postings(attention)} in this batch {_need(attention)} attention; the batch "
                "is settled once they are posted"
            )
            link.save(update_fields=["needs_attention", "settle_error"])
            return f"{label}: waiting, {_postings(attention)} {_need(attention)} attention"
        return f"{label}: waiting for {_postings(unfinished.count())}"
    total = expected_total(link)
    if link.settled_amount == total:
        return ""
    if not link.entries.exists():
        return ""  # nothing of ours landed in it: nothing to settle
    # A return batch totals negative; production settled it with a positive amount.
    amount = abs(total) if link.kind == AmsiBatchKind.RETURN else total
    day = deposit_date(link.batch, provider.settings.settlement_lag_days)
    xml = settlement_xml(
        link.client_jnl_no,
        provider.settings.merchant_id,
        amount,
        day,
        provider.settings.approval_code,
    )
    try:
        reply, text = provider.client.ledger("UpdateSettlementData", xml, record=link.client_jnl_no)
    except IntegrationError as err:
        link.settle_error = mask(str(err))
        link.save(update_fields=["settle_error"])
        return f"{label}: will retry settling: {err.message}"
    if not reply.ok:
        err = error_for(
            reply.error_code,
            reply.error_description,
            operation="UpdateSettlementData",
            record=link.client_jnl_no,
            response=text,
        )
        link.settle_error = mask(str(err))
        link.needs_attention = isinstance(err, PermanentError)
        link.save(update_fields=["settle_error", "needs_attention"])
        log.warning("settling batch %s refused: %s", link.client_jnl_no, err)
        return f"{label}: AMSI refused the settlement of {amount}: {reply.error_description}"
    link.settled_amount = total
    link.settled_at = now
    link.settlement_date = day
    link.settle_error = ""
    link.needs_attention = False
    if reply.batch_no:
        link.esite_batch_no = reply.batch_no
    link.save()
    log.info(
        "settled AMSI batch %s (external %s) at %s, SettlementDate %s",
        link.esite_batch_no,
        link.client_jnl_no,
        amount,
        day,
    )
    return f"{label}: settled at {amount} for {day:%m/%d/%Y} (eSite batch {link.esite_batch_no})"


def close_due_batches(provider, *, now: dt.datetime | None = None) -> list[str]:
    now = now or timezone.now()
    cutoff = provider.settings.close_cutoff
    links = [
        link
        for link in links_to_settle(provider.connection).order_by(
            "batch__business_day", "kind", "client_jnl_no"
        )
        if link.kind != AmsiBatchKind.PAYMENTS or is_due(link.batch, cutoff, now)
    ]
    return [line for line in _settle_each(provider, links, now) if line]


def _settle_each(provider, links: list[AmsiBatchLink], now: dt.datetime) -> list[str]:
    """``settle_batch`` for each link, up to ``settle_concurrency`` at once, in order.

    Each eSite batch is settled by one call of its own and its own rows only, so batches do
    not wait for each other; a distant eSite (100-200 ms a call: assumed, not measured on a
    real eSite) then settles a rent day's batches in seconds, not minutes. Inside a caller's
    transaction (which other threads could not see) they run one by one.
    """
    limit = min(provider.settings.settle_concurrency, len(links))
    if limit <= 1 or db_connection.in_atomic_block:
        return [settle_batch(provider, link, now=now) for link in links]
    lines = [""] * len(links)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(links)):
        todo.put(index)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            while not failures:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                lines[index] = settle_batch(provider, links[index], now=now)
        except BaseException as err:  # noqa: BLE001  (re-raised in the caller's thread below)
            failures.append(err)
        finally:
            db_connections.close_all()  # this thread's own database connection

    threads = [threading.Thread(target=work, name=f"settle-{n}") for n in range(limit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return lines
