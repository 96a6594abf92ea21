"""What a fault run counts, and the checks behind the counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class Tally:
    scenario: str
    vendor: str
    payments: int = 0
    reversals: int = 0
    duplicates_variant: str = "refuse"
    automatic: bool = True
    posted: int = 0
    needs_attention: dict[str, str] = field(default_factory=dict)
    unfinished: int = 0
    still_unconfirmed: int = 0  # part of unfinished: waiting for a person at the end
    # One row per eSite batch (client_jnl_no): (jnl, kind, ours n, ours total, sb n, sb total)
    batches: list[tuple] = field(default_factory=list)
    sandbox_payments: int = 0
    sandbox_reversals: int = 0
    duplicates: int = 0
    lost: int = 0
    extra: int = 0
    mismatched_batches: int = 0
    unsettled: list[str] = field(default_factory=list)
    found_after_unknown: int = 0
    went_unconfirmed: int = 0
    found_by_person: int = 0
    posted_by_person: int = 0
    attempts: int = 0
    overlapping_attempts: int = 0
    faults_fired: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.lost == 0
            and self.extra == 0
            and self.mismatched_batches == 0
            and self.unfinished == 0
            and not self.unsettled
            and self.overlapping_attempts == 0
            and all(self.needs_attention.values())
        )

    @property
    def mode(self) -> str:
        return f"duplicates={self.duplicates_variant} {'automatic' if self.automatic else 'person'}"

    def line(self) -> str:
        fired = ",".join(f"{k}={v}" for k, v in sorted(self.faults_fired.items())) or "none"
        return (
            f"FAULTS {self.scenario} [{self.vendor} {self.mode}] payments={self.payments} "
            f"reversals={self.reversals} | sandbox: payments={self.sandbox_payments} "
            f"reversals={self.sandbox_reversals} | batches={len(self.batches)} "
            f"mismatched={self.mismatched_batches} unsettled={len(self.unsettled)} | "
            f"posted={self.posted} needs_attention={len(self.needs_attention)} "
            f"unfinished={self.unfinished} duplicates={self.duplicates} lost={self.lost} "
            f"extra={self.extra} overlapping={self.overlapping_attempts} | "
            f"attempts={self.attempts} found_after_unknown={self.found_after_unknown} "
            f"went_unconfirmed={self.went_unconfirmed} found_by_person={self.found_by_person} "
            f"posted_by_person={self.posted_by_person} "
            f"faults_fired={fired} | {'OK' if self.ok else 'DIFFERENCES'}"
        )

    def table(self) -> str:
        rows = [
            f"{'eSite batch (external no.)':<28} {'kind':<9} {'ours n':>7} {'ours total':>12} "
            f"{'AMSI n':>7} {'AMSI total':>12}"
        ]
        for jnl, kind, n, total, sn, stotal in self.batches:
            mark = "" if (n, total) == (sn, stotal) else "  <-- differs"
            rows.append(f"{jnl:<28} {kind:<9} {n:>7} {total!s:>12} {sn:>7} {stotal!s:>12}{mark}")
        for key, reason in sorted(self.needs_attention.items()):
            rows.append(f"needs attention {key[:12]}: {reason[:160] or '(NO REASON)'}")
        for jnl in self.unsettled:
            rows.append(f"not settled: {jnl}")
        if self.still_unconfirmed:
            rows.append(f"still unconfirmed (waiting for a person): {self.still_unconfirmed}")
        return "\n".join(rows)


def _same_amount(settled: Decimal, total: Decimal, is_return: bool) -> bool:
    return settled == total or (is_return and abs(settled) == abs(total))


def _could_land(link, waiting) -> bool:
    """Whether a posting that is not posted is in this eSite batch or could still land in it
    (then the batch is not expected to be settled): one recorded in it, or for a payments
    batch a payment of its host batch or a reversal of one not recorded anywhere yet."""
    from integrations_amsi.models import AmsiBatchKind  # here: the benches import this first

    for p in waiting:
        entry = getattr(p, "amsi_entry", None)  # RelatedObjectDoesNotExist is an AttributeError
        if entry is not None and entry.link_id == link.pk:
            return True
        if (
            link.kind == AmsiBatchKind.PAYMENTS
            and entry is None
            and p.payment.batch_id == link.batch_id
        ):
            return True
    return False


def _overlaps(attempts) -> int:
    """Attempts of one posting whose [started, finished] intervals overlap (two at once)."""
    by_posting: dict[int, list] = {}
    for a in attempts:
        by_posting.setdefault(a.posting_id, []).append(a)
    count = 0
    for items in by_posting.values():
        items.sort(key=lambda a: a.started_at)
        for prev, nxt in zip(items, items[1:], strict=False):
            if prev.finished_at and nxt.started_at < prev.finished_at:
                count += 1
    return count
