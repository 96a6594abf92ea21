"""Reconciliation differences in words a manager reads, and as a CSV.

Design note. ``integrations.reconciliation.compare`` names each difference with a code (``kind``)
and a terse message; a manager needs a sentence that says which batch, what we have, what the
remote shows and why ("batch 26112611101: our total 1,250.00, eSite 1,200.00: one payment of
50.00 missing in eSite"). A total that differs is explained by the item differences of the same
batch, so its sentence summarises them; each item difference still has its own sentence (with
its payment). The remote is named by the provider's ``system_name``. Amounts are shown with
thousands separators; the CSV keeps plain numbers (a spreadsheet sums them) and goes through
``rentplatform.csvsafe`` since remote transaction ids come from outside.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from integrations.reconciliation import BatchDifference, ReconciliationResult
from rentplatform import csvsafe

ITEM_KINDS = {"duplicate", "missing_item", "wrong_batch", "amount_differs", "unknown_item"}


def money(value: str | Decimal) -> str:
    """``1250.00`` -> ``1,250.00``; a value that is not an amount is shown as it is."""
    try:
        return f"{Decimal(value):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _cause(related: list[BatchDifference], system: str) -> str:
    """Why a batch's total differs, from the item differences of the same batch."""
    missing = [d for d in related if d.kind == "missing_item"]
    parts = []
    if missing:
        # The label's first word is what the item is ("payment", "refund", "return", ...).
        nouns = {d.item.split()[0] for d in missing if d.item}
        noun = nouns.pop() if len(nouns) == 1 else "item"
        total = money(sum((Decimal(d.local) for d in missing), Decimal("0.00")))
        if len(missing) == 1:
            parts.append(f"one {noun} of {total} missing in {system}")
        else:
            parts.append(f"{len(missing)} {noun}s of {total} in all missing in {system}")
    others = len(related) - len(missing)
    if others:
        parts.append(f"{others} other item difference{'s' if others > 1 else ''}, below")
    return "; ".join(parts)


def describe(diff: BatchDifference, system: str, related: Iterable[BatchDifference] = ()) -> str:
    """``diff`` as a sentence; ``related``: the item differences of its batch (for a total)."""
    b, s = diff.batch_id, system
    there = f" ({s} batch {diff.remote_batch})" if diff.remote_batch else ""
    if diff.kind == "missing_remote":
        return f"batch {b}: our total {money(diff.local)}, not in {s}{there}"
    if diff.kind == "missing_local":
        return f"{s} batch {b} (total {money(diff.remote)}): we have no batch of that number"
    if diff.kind == "total_differs":
        cause = _cause(list(related), s)
        sentence = f"batch {b}{there}: our total {money(diff.local)}, {s} {money(diff.remote)}"
        return f"{sentence}: {cause}" if cause else sentence
    if diff.kind == "duplicate":
        return f"batch {b}: {diff.item} is in {s} {diff.remote} times, expected once"
    if diff.kind == "missing_item":
        return f"batch {b}: {diff.item} of {money(diff.local)} missing in {s}{there}"
    if diff.kind == "wrong_batch":
        return f"batch {b}: {diff.item} is in {s} batch {diff.remote}, expected in {diff.local}"
    if diff.kind == "amount_differs":
        return f"batch {b}: {diff.item} is {money(diff.local)} here, {money(diff.remote)} in {s}"
    if diff.kind == "unknown_item":
        return f"batch {b}: {s} has {diff.item} of {money(diff.remote)}, not one of ours"
    return f"batch {b}: {diff.message}"


def sides(diff: BatchDifference) -> tuple[str, str]:
    """Ours and the remote's values to show: amounts formatted; batch numbers and counts
    (a wrong batch, a duplicate) as they are."""
    if diff.kind in {"wrong_batch", "duplicate"}:
        return diff.local, diff.remote
    return (money(diff.local) if diff.local else ""), (money(diff.remote) if diff.remote else "")


def sentences(result: ReconciliationResult) -> list[tuple[BatchDifference, str]]:
    """Each difference of ``result`` with its sentence, in the result's order."""
    items: dict[str, list[BatchDifference]] = {}
    for d in result.differences:
        if d.kind in ITEM_KINDS:
            items.setdefault(d.batch_id, []).append(d)
    system = result.system_name
    return [(d, describe(d, system, items.get(d.batch_id, ()))) for d in result.differences]


def as_csv(result: ReconciliationResult) -> str:
    """The differences as CSV: one row each, its sentence and both sides' values."""
    out = io.StringIO()
    writer = csvsafe.writer(out)
    system = result.system_name
    writer.writerow(
        ["Month", "Batch", "Difference", "Ours", system, "Our reference", f"{system} id"]
    )
    for d, sentence in sentences(result):
        ours = getattr(d.subject, "public_id", "")
        month = f"{result.month:%Y-%m}"
        writer.writerow([month, d.batch_id, sentence, d.local, d.remote, ours, d.reference])
    return out.getvalue()
