"""Closing AMSI cash batches: nobody closes batches by hand.

Each eSite External batch opened by a ClientJnlNo is settled (UpdateSettlementData with its
total) on the day its transactions posted, from the connection's cutoff in the property's time
zone on, and settled again whenever its total moved since (a reversal or a late payment reopens
a settled batch in eSite). A batch is only settled once every posting in it has landed: a
settlement total that AMSI refuses is "needs attention", never retried blindly.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from integrations.exceptions import IntegrationError, PermanentError
from integrations.logging import mask
from integrations.models import Posting, PostingState
from rentplatform.models import DepositBatch
from rentplatform.services.batches import batch_totals

from .models import AmsiBatchLink
from .xmldocs import settlement_xml

log = logging.getLogger(__name__)


def batch_postings(batch: DepositBatch):
    return Posting.objects.filter(
        Q(kind="payment", payment__batch=batch) | Q(kind="reversal", reversal__batch=batch)
    )


def is_due(batch: DepositBatch, cutoff: dt.time, now: dt.datetime) -> bool:
    local_now = now.astimezone(batch.property.tz)
    return batch.business_day < local_now.date() or (
        batch.business_day == local_now.date() and local_now.time() >= cutoff
    )


def settle_batch(provider, link: AmsiBatchLink, *, now: dt.datetime) -> str:
    """Settle one batch if it is ready; returns a line saying what happened."""
    batch = link.batch
    postings = batch_postings(batch)
    unfinished = postings.exclude(state=PostingState.POSTED)
    if unfinished.exists():
        attention = unfinished.filter(state=PostingState.NEEDS_ATTENTION).count()
        if attention:
            link.needs_attention = True
            link.settle_error = (
                f"{attention} posting(s) in this batch need attention; the batch is settled "
                "once they are posted"
            )
            link.save(update_fields=["needs_attention", "settle_error"])
            return f"{batch.batch_id}: waiting, {attention} posting(s) need attention"
        return f"{batch.batch_id}: waiting for {unfinished.count()} posting(s)"
    total = batch_totals(batch)["net"]
    if link.settled_amount == total:
        return ""
    settings = provider.settings
    xml = settlement_xml(
        batch.batch_id,
        settings.merchant_id,
        total,
        batch.business_day,
        approval=f"AUTO{now:%Y%m%d%H%M}",
    )
    try:
        reply, text = provider.client.ledger("UpdateSettlementData", xml, record=batch.batch_id)
    except IntegrationError as err:
        link.settle_error = mask(str(err))
        link.save(update_fields=["settle_error"])
        return f"{batch.batch_id}: will retry settling: {err.message}"
    if not reply.ok:
        from .errors import error_for

        err = error_for(
            reply.error_code,
            reply.error_description,
            operation="UpdateSettlementData",
            record=batch.batch_id,
            response=text,
        )
        link.settle_error = mask(str(err))
        link.needs_attention = isinstance(err, PermanentError)
        link.save(update_fields=["settle_error", "needs_attention"])
        log.warning("settling batch %s refused: %s", batch.batch_id, err)
        return (
            f"{batch.batch_id}: AMSI refused the settlement of {total}: {reply.error_description}"
        )
    link.settled_amount = total
    link.settled_at = now
    link.settle_error = ""
    link.needs_attention = False
    if reply.batch_no:
        link.esite_batch_no = reply.batch_no
    link.save()
    log.info(
        "settled AMSI batch %s (ClientJnlNo %s) at %s", link.esite_batch_no, batch.batch_id, total
    )
    return f"{batch.batch_id}: settled at {total} (eSite batch {link.esite_batch_no})"


def close_due_batches(provider, *, now: dt.datetime | None = None) -> list[str]:
    now = now or timezone.now()
    cutoff = provider.settings.close_cutoff
    lines = []
    links = AmsiBatchLink.objects.filter(connection=provider.connection).select_related(
        "batch__property"
    )
    for link in links.order_by("batch__business_day", "client_jnl_no"):
        if not is_due(link.batch, cutoff, now):
            continue
        if (
            link.settled_amount is not None
            and link.settled_amount == batch_totals(link.batch)["net"]
        ):
            continue
        line = settle_batch(provider, link, now=now)
        if line:
            lines.append(line)
    return lines
