"""Reconciliation: the eSite batches we know of against eSite's External Deposits report.

The report is keyed by external batch number: our batch id (sent as ClientJnlNo) for a
payments batch, the original ClientTransactionID for a return eSite booked in a batch of its
own (production settled such a return under that number). Our side is kept per eSite batch
too (AmsiBatchLink, with what landed in each), so a return batch is matched like any other;
each difference names the host batch it reports under where there is one. The "By Payment"
level lists every entry with its ClientTransactionID, so differences are named item by item:
a batch missing on either side, a total that differs, an item posted twice, an item missing,
an item in another batch than ours. The report comes from the sandbox's CSV (or any URL set as
``external_deposits_url``) or from an export a manager uploads from eSite.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx
from django.db.models import Q
from django.db.models.functions import Coalesce

from integrations.exceptions import PermanentError, RetryableError
from integrations.models import Posting
from integrations.providers.base import BatchDifference
from rentplatform.models import DepositBatch

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class RemoteItem:
    batch_id: str
    txn_id: str
    amount: Decimal
    kind: str  # Payment / Return
    reason: str


def parse_external_deposits(text: str) -> tuple[dict[str, Decimal], list[RemoteItem]]:
    """(total per external batch, items) from an External Deposits CSV ("By Payment")."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    needed = {"External Batch", "Totals"}
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise PermanentError(
            "this is not an External Deposits export: expected the columns "
            f"{', '.join(sorted(needed))}, found {', '.join(reader.fieldnames or ['none'])}",
            provider="amsi",
            operation="reconcile",
        )
    totals: dict[str, Decimal] = {}
    items: list[RemoteItem] = []
    for n, row in enumerate(reader, start=2):
        batch = (row.get("External Batch") or "").strip()
        try:
            amount = Decimal((row.get("Totals") or "0").replace(",", "").replace("$", "") or "0")
        except InvalidOperation:
            raise PermanentError(
                f"line {n}: Totals {row.get('Totals')!r} is not an amount",
                provider="amsi",
                operation="reconcile",
            ) from None
        if not batch or batch == "Grand Total":
            continue
        if batch.startswith("Total "):
            totals[batch[len("Total ") :].strip()] = amount
            continue
        txn = (row.get("ClientTransactionID") or "").strip()
        if txn:
            items.append(RemoteItem(batch, txn, amount, row.get("Type", ""), row.get("Reason", "")))
        elif "ClientTransactionID" not in (reader.fieldnames or []):
            totals[batch] = amount  # a Summary-level export: one row per batch
    return totals, items


def fetch_external_deposits(provider, month: dt.date) -> str:
    settings = provider.settings
    url = (
        provider.connection.setting("external_deposits_url")
        or f"{settings.base_url}/externaldeposits"
    )
    params = {
        "month": f"{month:%Y-%m}",
        "level": "payment",
        "format": "csv",
        "property": settings.property_id,
    }
    try:
        response = httpx.get(url, params=params, timeout=settings.timeout)
    except httpx.HTTPError as err:
        raise RetryableError(
            f"could not fetch the External Deposits report from {url}: {type(err).__name__}; "
            "upload the eSite export instead",
            provider="amsi",
            operation="reconcile",
        ) from err
    if response.status_code != 200 or "csv" not in response.headers.get("content-type", ""):
        raise PermanentError(
            f"{url} did not return an External Deposits CSV (HTTP {response.status_code}); "
            "upload the eSite export (Reports > Accounting Reports > External Deposits, "
            "By Payment, CSV) instead",
            provider="amsi",
            operation="reconcile",
        )
    return response.text


# (external number, ClientTransactionID, amount, label, the host batch id it reports under)
LocalItem = tuple[str, str, Decimal, str, str]


def _month_range(month: dt.date) -> tuple[dt.date, dt.date]:
    start = month.replace(day=1)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def _label(posting_kind: str, payment, reversal) -> str:
    if posting_kind == "reversal" and reversal is not None:
        return f"{reversal.kind} {reversal.public_id[:10]}"
    return f"payment {payment.public_id[:10]}"


def _local_side(
    connection, month: dt.date, remote_items: list[RemoteItem]
) -> tuple[dict[str, Decimal], list[LocalItem], dict[str, str]]:
    """Our side, per eSite batch: (net per external number, items, external number -> the host
    batch id it reports under).

    An eSite batch is one we know of (an AmsiBatchLink: a payments batch keyed by our batch
    id, or a return batch keyed by the original ClientTransactionID) whose host batch is in the
    month; its items are the postings recorded as landed in it. Payments and reversals of the
    month's host batches that have not landed anywhere are expected too: a payment in the batch
    its ClientJnlNo names; a reversal wherever eSite shows it (where a return lands is eSite's
    choice), else in the original payment's batch, which its ReturnPayment names.
    """
    from .identifiers import client_transaction_id
    from .models import AmsiBatchEntry, AmsiBatchLink

    start, end = _month_range(month)
    links = list(
        AmsiBatchLink.objects.filter(
            connection=connection, batch__business_day__gte=start, batch__business_day__lt=end
        ).select_related("batch")
    )
    entries = list(
        AmsiBatchEntry.objects.filter(link__in=[link.pk for link in links])
        .select_related("link", "posting__payment__batch", "posting__reversal__batch")
        .order_by("pk")
    )
    batches = list(
        DepositBatch.objects.filter(
            property=connection.property, business_day__gte=start, business_day__lt=end
        ).prefetch_related("payments", "reversals__payment__batch")
    )
    payments = [p for b in batches for p in b.payments.all()]
    reversals = [(b, r) for b in batches for r in b.reversals.all()]
    postings = Posting.objects.filter(connection=connection).filter(
        Q(kind="payment", payment__in=[p.pk for p in payments])
        | Q(kind="reversal", reversal__in=[r.pk for _b, r in reversals])
    )
    landed = {
        (kind, subject)
        for kind, subject, entry in postings.values_list(
            "kind", Coalesce("reversal_id", "payment_id"), "amsi_entry"
        )
        if entry is not None
    }
    payment_ids = {e.posting.payment_id for e in entries} | {r.payment_id for _b, r in reversals}
    payment_ids |= {p.pk for p in payments}
    txn_of = {
        p.payment_id: client_transaction_id(p)
        for p in Posting.objects.filter(
            connection=connection, kind="payment", payment__in=payment_ids
        ).only("pk", "payment_id", "key")
    }

    nets: dict[str, Decimal] = defaultdict(lambda: ZERO)
    items: list[LocalItem] = []
    hosts: dict[str, str] = {}

    def add(ext: str, txn: str, amount: Decimal, label: str, host: str) -> None:
        items.append((ext, txn, amount, label, host))
        nets[ext] += amount

    for link in links:
        hosts[link.client_jnl_no] = link.batch.batch_id
        nets[link.client_jnl_no] += ZERO
    for entry in entries:
        posting = entry.posting
        txn = txn_of.get(posting.payment_id, posting.payment.reference.hex)
        label = _label(posting.kind, posting.payment, posting.reversal)
        subject = posting.reversal if posting.kind == "reversal" else posting.payment
        add(entry.link.client_jnl_no, txn, entry.amount, label, subject.batch.batch_id)

    remote_negative: dict[str, str] = {}
    for item in remote_items:
        if item.amount < 0:
            remote_negative.setdefault(item.txn_id, item.batch_id)
    for payment in payments:
        if ("payment", payment.pk) in landed:
            continue
        ext = payment.batch.batch_id
        hosts.setdefault(ext, ext)
        txn = txn_of.get(payment.pk, payment.reference.hex)
        add(ext, txn, payment.amount, _label("payment", payment, None), ext)
    for batch, reversal in reversals:
        if ("reversal", reversal.pk) in landed:
            continue
        txn = txn_of.get(reversal.payment_id, reversal.payment.reference.hex)
        ext = remote_negative.get(txn, reversal.payment.batch.batch_id)
        hosts.setdefault(ext, batch.batch_id)
        label = _label("reversal", reversal.payment, reversal)
        add(ext, txn, -reversal.amount, label, batch.batch_id)
    return dict(nets), items, hosts


def _where(ext: str, hosts: dict[str, str]) -> str:
    """Names the eSite batch when its external number is not our batch id (a return batch)."""
    host = hosts.get(ext, ext)
    return "" if host == ext else f" (eSite batch {ext})"


def compare(
    local_nets: dict[str, Decimal],
    local_items: list[LocalItem] | list[tuple[str, str, Decimal, str]],
    remote_totals: dict[str, Decimal],
    remote_items: list[RemoteItem],
    hosts: dict[str, str] | None = None,
) -> list[BatchDifference]:
    """Differences per eSite batch (keyed by external number), each named by the host batch id
    it reports under where there is one (``hosts``: external number -> our batch id; an item
    may carry its own host batch as a fifth element, e.g. a reversal reported under a
    reversals batch)."""
    hosts = hosts or {}

    def host(ext: str) -> str:
        return hosts.get(ext, ext)

    diffs: list[BatchDifference] = []
    for ext, net in sorted(local_nets.items()):
        if ext not in remote_totals:
            if net != ZERO or any(i[0] == ext for i in local_items):
                diffs.append(
                    BatchDifference(
                        host(ext),
                        "missing_remote",
                        f"batch not in AMSI{_where(ext, hosts)}",
                        str(net),
                        "",
                    )
                )
            continue
        if remote_totals[ext] != net:
            diffs.append(
                BatchDifference(
                    host(ext),
                    "total_differs",
                    f"total differs by {remote_totals[ext] - net}{_where(ext, hosts)}",
                    str(net),
                    str(remote_totals[ext]),
                )
            )
    for ext in sorted(set(remote_totals) - set(local_nets)):
        diffs.append(
            BatchDifference(
                ext,
                "missing_local",
                "AMSI batch we have no record of",
                "",
                str(remote_totals[ext]),
            )
        )
    # Items: matched on (ClientTransactionID, sign), the identity of a payment or its reversal.
    remote_by_key: dict[tuple[str, bool], list[RemoteItem]] = defaultdict(list)
    for item in remote_items:
        remote_by_key[(item.txn_id, item.amount < 0)].append(item)
    local_keys = Counter((item[1], item[2] < 0) for item in local_items)
    for (txn, negative), found in sorted(remote_by_key.items()):
        if len(found) > 1:
            diffs.append(
                BatchDifference(
                    host(found[0].batch_id),
                    "duplicate",
                    f"{'reversal of ' if negative else ''}{txn} is in AMSI {len(found)} times",
                    "1",
                    str(len(found)),
                )
            )
    for ext, txn, amount, label, *rest in local_items:
        item_host = rest[0] if rest else host(ext)
        found = remote_by_key.get((txn, amount < 0), [])
        if not found:
            diffs.append(
                BatchDifference(
                    item_host,
                    "missing_item",
                    f"{label} ({amount}) not in AMSI{_where(ext, hosts)}",
                    str(amount),
                    "",
                )
            )
            continue
        item = found[0]
        if item.batch_id != ext:
            diffs.append(
                BatchDifference(
                    item_host,
                    "wrong_batch",
                    f"{label} is in AMSI batch {item.batch_id}, not {ext}",
                    ext,
                    item.batch_id,
                )
            )
        elif item.amount != amount:
            diffs.append(
                BatchDifference(
                    item_host,
                    "amount_differs",
                    f"{label} amount differs{_where(ext, hosts)}",
                    str(amount),
                    str(item.amount),
                )
            )
    for (txn, negative), found in sorted(remote_by_key.items()):
        if (txn, negative) not in local_keys:
            diffs.append(
                BatchDifference(
                    host(found[0].batch_id),
                    "unknown_item",
                    f"AMSI entry {txn} ({found[0].amount}) is not one of ours",
                    "",
                    str(found[0].amount),
                )
            )
    return diffs


def reconcile_month(provider, month: dt.date, csv_text: str | None = None) -> list[BatchDifference]:
    text = csv_text if csv_text is not None else fetch_external_deposits(provider, month)
    remote_totals, remote_items = parse_external_deposits(text)
    nets, items, hosts = _local_side(provider.connection, month, remote_items)
    return compare(nets, items, remote_totals, remote_items, hosts)
