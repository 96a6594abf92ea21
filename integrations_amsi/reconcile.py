"""Reconciliation, AMSI's answers: eSite's External Deposits report and our eSite batches.

The framework (``integrations.reconciliation``) compares; this module reads the remote side
and says where our postings are in eSite.

- The remote side is eSite's External Deposits report, "By Payment": fetched from the sandbox's
  CSV (or any URL set as ``external_deposits_url``), or the report a manager uploads as CSV
  (whether eSite exports it as CSV is not known: a file with the columns below is read).
  It is keyed by external batch number: our batch id (sent as ClientJnlNo) for a payments
  batch, the original ClientTransactionID for a return eSite booked in a batch of its own
  (production settled such a return under that number). eSite's export columns are not
  published. When the export has a ClientTransactionID column (the sandbox's does), items are
  matched on it, reversals as (ClientTransactionID, negative). Without that column, each row is
  read as its batch's total, and batches are compared by total only.
- Our eSite batches are the AmsiBatchLinks of the month (a payments batch keyed by our batch
  id, or a return batch keyed by the original ClientTransactionID), each with the postings
  recorded as landed in it (AmsiBatchEntry), so a return batch is matched like any other.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal, InvalidOperation

import httpx
from django.db.models import Q, QuerySet

from integrations.exceptions import PermanentError, RetryableError
from integrations.models import Posting
from integrations.reconciliation import (
    KnownBatches,
    Landing,
    RemoteItem,
    RemoteSide,
    month_range,
)

from . import PROVIDER_ID
from .models import AmsiBatchEntry, AmsiBatchLink
from .transport import network_reason


def parse_external_deposits(text: str) -> RemoteSide:
    """The totals per external batch and the items of an External Deposits CSV ("By
    Payment"; a "Summary" export gives totals only)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    needed = {"External Batch", "Totals"}
    if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise PermanentError(
            "this is not an External Deposits export: expected the columns "
            f"{', '.join(sorted(needed))}, found {', '.join(reader.fieldnames or ['none'])}",
            provider=PROVIDER_ID,
            operation="reconcile",
        )
    side = RemoteSide()
    for n, row in enumerate(reader, start=2):
        batch = (row.get("External Batch") or "").strip()
        try:
            amount = Decimal((row.get("Totals") or "0").replace(",", "").replace("$", "") or "0")
        except InvalidOperation:
            raise PermanentError(
                f"line {n}: Totals {row.get('Totals')!r} is not an amount",
                provider=PROVIDER_ID,
                operation="reconcile",
            ) from None
        if not batch or batch == "Grand Total":
            continue
        if batch.startswith("Total "):
            side.totals[batch[len("Total ") :].strip()] = amount
            continue
        txn = (row.get("ClientTransactionID") or "").strip()
        if txn:
            side.items.append(
                RemoteItem(batch, txn, amount, row.get("Type", ""), row.get("Reason", ""))
            )
        elif "ClientTransactionID" not in (reader.fieldnames or []):
            side.totals[batch] = amount  # a Summary-level export: one row per batch
    return side


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
            f"could not fetch the External Deposits report from {url}: "
            f"{network_reason(err, settings.timeout)}; upload the External Deposits report as "
            "a CSV file instead",
            provider=PROVIDER_ID,
            operation="reconcile",
        ) from err
    if response.status_code != 200 or "csv" not in response.headers.get("content-type", ""):
        raise PermanentError(
            f"{url} did not return an External Deposits CSV (HTTP {response.status_code}); "
            "upload eSite's External Deposits report (Reports > Accounting Reports > "
            "External Deposits, By Payment) as a CSV file with the columns External Batch and "
            "Totals instead",
            provider=PROVIDER_ID,
            operation="reconcile",
        )
    return response.text


def remote_month(provider, month: dt.date, report_text: str | None = None) -> RemoteSide:
    text = report_text if report_text is not None else fetch_external_deposits(provider, month)
    return parse_external_deposits(text)


def known_batches(connection, month: dt.date, postings: QuerySet[Posting]) -> KnownBatches:
    """The month's eSite batches we know of (an AmsiBatchLink whose host batch is in the
    month), and every posting recorded in one of them or, for the month's postings, anywhere."""
    start, end = month_range(month)
    links = list(
        AmsiBatchLink.objects.filter(
            connection=connection, batch__business_day__gte=start, batch__business_day__lt=end
        ).select_related("batch")
    )
    entries = (
        AmsiBatchEntry.objects.filter(
            Q(link__in=[link.pk for link in links]) | Q(posting__in=postings.values("pk"))
        )
        .select_related("link", "posting__payment__batch", "posting__reversal__batch")
        .order_by("pk")
    )
    return KnownBatches(
        batches={link.client_jnl_no: link.batch.batch_id for link in links},
        landed=[Landing(e.posting, e.link.client_jnl_no, e.amount) for e in entries],
    )
