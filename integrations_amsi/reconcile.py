"""Reconciliation: our deposit batches against eSite's External Deposits report.

The report is keyed by external batch id (our batch id, sent as ClientJnlNo). Its "By Payment"
level lists every entry with the ClientTransactionID we sent, so differences can be named item
by item: a batch missing on either side, a total that differs, an item posted twice, an item
missing, an item in another batch than ours. The report comes from the sandbox's CSV (or any
URL set as ``external_deposits_url``) or from an export a manager uploads from eSite.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx

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


def _local_items(connection, month: dt.date):
    """Our expected entries per batch: (batch_id, txn_id, amount) and batch nets."""
    start = month.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    batches = DepositBatch.objects.filter(
        property=connection.property, business_day__gte=start, business_day__lt=end
    )
    nets: dict[str, Decimal] = {}
    items: list[tuple[str, str, Decimal, str]] = []
    keys = {
        p.payment_id: p.key
        for p in Posting.objects.filter(connection=connection, kind="payment").only(
            "payment_id", "key"
        )
    }
    for batch in batches.prefetch_related("payments", "reversals__payment"):
        net = ZERO
        for payment in batch.payments.all():
            key = keys.get(payment.pk, payment.reference.hex)
            items.append((batch.batch_id, key, payment.amount, f"payment {payment.public_id[:10]}"))
            net += payment.amount
        for reversal in batch.reversals.all():
            key = keys.get(reversal.payment_id, reversal.payment.reference.hex)
            items.append(
                (
                    batch.batch_id,
                    key,
                    -reversal.amount,
                    f"{reversal.kind} {reversal.public_id[:10]}",
                )
            )
            net -= reversal.amount
        nets[batch.batch_id] = net
    return nets, items


def compare(
    local_nets: dict[str, Decimal],
    local_items: list[tuple[str, str, Decimal, str]],
    remote_totals: dict[str, Decimal],
    remote_items: list[RemoteItem],
) -> list[BatchDifference]:
    diffs: list[BatchDifference] = []
    for batch_id, net in sorted(local_nets.items()):
        if batch_id not in remote_totals:
            if net != ZERO or any(i[0] == batch_id for i in local_items):
                diffs.append(
                    BatchDifference(batch_id, "missing_remote", "batch not in AMSI", str(net), "")
                )
            continue
        if remote_totals[batch_id] != net:
            diffs.append(
                BatchDifference(
                    batch_id,
                    "total_differs",
                    f"total differs by {remote_totals[batch_id] - net}",
                    str(net),
                    str(remote_totals[batch_id]),
                )
            )
    for batch_id in sorted(set(remote_totals) - set(local_nets)):
        diffs.append(
            BatchDifference(
                batch_id,
                "missing_local",
                "AMSI batch we have no record of",
                "",
                str(remote_totals[batch_id]),
            )
        )
    # Items: matched on (ClientTransactionID, sign), the identity of a payment or its reversal.
    remote_by_key: dict[tuple[str, bool], list[RemoteItem]] = defaultdict(list)
    for item in remote_items:
        remote_by_key[(item.txn_id, item.amount < 0)].append(item)
    local_keys = Counter((txn, amount < 0) for _b, txn, amount, _d in local_items)
    for (txn, negative), found in sorted(remote_by_key.items()):
        if len(found) > 1:
            diffs.append(
                BatchDifference(
                    found[0].batch_id,
                    "duplicate",
                    f"{'reversal of ' if negative else ''}{txn} is in AMSI {len(found)} times",
                    "1",
                    str(len(found)),
                )
            )
    for batch_id, txn, amount, label in local_items:
        found = remote_by_key.get((txn, amount < 0), [])
        if not found:
            diffs.append(
                BatchDifference(
                    batch_id, "missing_item", f"{label} ({amount}) not in AMSI", str(amount), ""
                )
            )
            continue
        item = found[0]
        if item.batch_id != batch_id:
            diffs.append(
                BatchDifference(
                    batch_id,
                    "wrong_batch",
                    f"{label} is in AMSI batch {item.batch_id}",
                    batch_id,
                    item.batch_id,
                )
            )
        elif item.amount != amount:
            diffs.append(
                BatchDifference(
                    batch_id,
                    "amount_differs",
                    f"{label} amount differs",
                    str(amount),
                    str(item.amount),
                )
            )
    for (txn, negative), found in sorted(remote_by_key.items()):
        if (txn, negative) not in local_keys:
            diffs.append(
                BatchDifference(
                    found[0].batch_id,
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
    nets, items = _local_items(provider.connection, month)
    return compare(nets, items, remote_totals, remote_items)
