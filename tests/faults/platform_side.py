"""The platform side of a fault run: payments, reversals, the sweep driver, the person who
settles unconfirmed postings, batch closing, and the comparison with the sandbox's ledger.

Its Django imports are inside the methods, not a cycle: the benches import ``tests.faults.harness``
(and so this module) before they set Django up."""

from __future__ import annotations

import datetime as dt
import random
import time
from decimal import Decimal

from tests.faults.processes import SandboxProcess
from tests.faults.tally import Tally, _could_land, _overlaps, _same_amount
from tests.faults.timings import CHICAGO, CLIENT_TIMEOUT, SLOW_WRITE_SECONDS, TIMINGS


class Platform:
    """The platform side of a run, in this process (the workers are other processes).

    ``automatic``: whether the connection checks unknown outcomes unattended (the operator's
    "duplicates refused" confirmation). By default it follows the sandbox: on when it refuses
    duplicates, off when it accepts them (no operator would confirm that; the harness then
    plays the person in ``wait_until_done``). ``max_write_delay``: the longest a write may take
    to land after it was sent in this run (the slowest latency fault in play); the person looks
    at an unconfirmed posting only once it has been unconfirmed for longer than that.
    """

    def __init__(
        self,
        sandbox: SandboxProcess,
        *,
        timeout: float = CLIENT_TIMEOUT,
        automatic: bool | None = None,
        max_write_delay: float = SLOW_WRITE_SECONDS,
    ) -> None:
        from tests.integrations_amsi.world import connect_to_sandbox

        if automatic is None:
            automatic = sandbox.duplicates == "refuse"
        if automatic and sandbox.duplicates != "refuse":
            raise ValueError(
                "automatic checking re-sends after an unknown outcome and relies on eSite "
                f"refusing the repeat; this sandbox runs duplicates={sandbox.duplicates}"
            )
        self.sandbox = sandbox
        self.automatic = automatic
        self.max_write_delay = max_write_delay
        self.property, self.connection = connect_to_sandbox(sandbox.base_url, timeout=timeout)
        if automatic:
            self.confirm_duplicates_refused()
        self.payments: list = []
        self.reversals: list = []
        self.person_log: list[tuple[str, str]] = []  # (posting key, "found" / "not found")

    def confirm_duplicates_refused(self, who: str = "ops@example.test") -> None:
        """What an operator records after seeing this eSite refuse a repeated
        ClientTransactionID, with the ErrorCode it answered (the workers read the connection
        from the database)."""
        from integrations_amsi.conf import record_duplicates_refused
        from integrations_amsi.errors import DUPLICATE_TRANSACTION

        record_duplicates_refused(self.connection, who=who, code=DUPLICATE_TRANSACTION)

    def import_property(self) -> None:
        from integrations.models import SyncKind, SyncStatus
        from integrations.services import run_sync

        run = run_sync(self.connection, SyncKind.IMPORT)
        assert run.status == SyncStatus.SUCCEEDED, run.message

    def payable(self, method: str) -> list:
        from rentplatform.models import Lease, LeaseStatus

        leases = Lease.objects.filter(unit__building__property=self.property).order_by("pk")
        paying = (LeaseStatus.ACTIVE, LeaseStatus.NOTICE)
        return [
            lease
            for lease in leases
            if lease.status in paying and lease.effective_access.allows(method)
        ]

    # -- money -----------------------------------------------------------------------------------
    def pay(self, n: int, *, rng: random.Random, card_share: float = 0.6) -> list:
        from rentplatform import services
        from rentplatform.models import PaymentMethod

        cards, banks = self.payable(PaymentMethod.CARD), self.payable(PaymentMethod.ACH)
        made = []
        for _ in range(n):
            method = PaymentMethod.CARD if rng.random() < card_share else PaymentMethod.ACH
            lease = rng.choice(cards if method == PaymentMethod.CARD else banks)
            amount = Decimal(rng.randint(5000, 250000)) / 100
            made.append(services.accept_payment(lease, amount, method))
        self.payments += made
        return made

    def reverse(self, n: int, *, rng: random.Random) -> list:
        """n reversals of every kind: void, chargeback and ACH return before the deposit, then
        card refund and ACH return after it (rule 5: those go to a separate reversals batch)."""
        from rentplatform import services
        from rentplatform.models import (
            BatchStatus,
            Payment,
            PaymentMethod,
            PaymentState,
            ReversalKind,
        )

        before = [ReversalKind.VOID, ReversalKind.CHARGEBACK, ReversalKind.RETURN]
        after = [ReversalKind.REFUND, ReversalKind.RETURN]
        n_after = n * 2 // 5
        plan = [before[i % 3] for i in range(n - n_after)] + [after[i % 2] for i in range(n_after)]
        pool = list(self.payments)
        rng.shuffle(pool)
        made = []

        def take(method: str | None, deposited: bool):
            for p in pool:
                p.refresh_from_db()
                if method and p.method != method:
                    continue
                if deposited and p.state == PaymentState.DEPOSITED:
                    pool.remove(p)
                    return p
                if not deposited and p.state == PaymentState.PROCESSING:
                    pool.remove(p)
                    return p
            return None

        for i, kind in enumerate(plan):
            deposited = i >= n - n_after
            if deposited and not any(
                p.batch.status == BatchStatus.DEPOSITED for p in self.payments
            ):
                for batch in {p.batch for p in self.payments}:
                    for p in batch.payments.filter(state=PaymentState.PROCESSING):
                        services.settle_payment(p)
                    services.deposit_batch(batch)
            method = {
                ReversalKind.CHARGEBACK: PaymentMethod.CARD,
                ReversalKind.RETURN: PaymentMethod.ACH,
                ReversalKind.REFUND: PaymentMethod.CARD,
            }.get(kind)
            payment = take(method, deposited) or take(None, deposited)
            if payment is None:
                break
            payment = Payment.objects.get(pk=payment.pk)
            if kind == ReversalKind.VOID:
                made.append(services.void_payment(payment))
            elif kind == ReversalKind.RETURN and payment.method == PaymentMethod.ACH:
                made.append(services.return_payment(payment, "R01" if not deposited else "R02"))
            elif payment.method == PaymentMethod.CARD and not deposited:
                payment = services.settle_payment(payment)  # a card is charged back once settled
                made.append(services.charge_back_payment(payment))
            else:
                made.append(services.refund_payment(payment))
        self.reversals += made
        return made

    # -- driving ---------------------------------------------------------------------------------
    def sweep(self) -> int:
        """The every-minute retry-sweep schedule (``tasks.retry_sweep``), run from here every
        few seconds; it leaves alone postings whose task is still waiting in the queue
        (QUEUE_GRACE_SECONDS, 10 s here)."""
        from integrations import outbox

        return outbox.sweep(grace=float(TIMINGS["INTEGRATIONS_QUEUE_GRACE_SECONDS"]))

    def open_count(self) -> int:
        """Postings not finished: waiting for the outbox, or unconfirmed (waiting for a
        person)."""
        from integrations.models import Posting, PostingState

        return Posting.objects.filter(
            connection=self.connection,
            state__in=[
                PostingState.PENDING,
                PostingState.RETRYING,
                PostingState.IN_FLIGHT,
                PostingState.UNCONFIRMED,
            ],
        ).count()

    def state_counts(self) -> dict[str, int]:
        from django.db.models import Count

        from integrations.models import Posting

        rows = (
            Posting.objects.filter(connection=self.connection)
            .values("state")
            .annotate(n=Count("pk"))
            .order_by("state")
        )
        return {r["state"]: r["n"] for r in rows}

    def wait_until_done(
        self, timeout: float = 90, sweep_every: float = 2.0, look_every: float = 1.0
    ) -> None:
        """Sweep until no posting is open, playing the person meanwhile: every unknown outcome
        waits for one when not automatic, and a reversal's does even when automatic (the
        duplicates-refused confirmation is about AddPayment only)."""
        deadline = time.monotonic() + timeout
        next_sweep = time.monotonic() + sweep_every
        next_look = time.monotonic() + look_every
        while time.monotonic() < deadline:
            if self.open_count() == 0:
                return
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + sweep_every
            if time.monotonic() >= next_look:
                self.resolve_unconfirmed()
                next_look = time.monotonic() + look_every
            time.sleep(0.2)
        states = self.state_counts()
        raise TimeoutError(
            f"{self.open_count()} posting(s) still open after {timeout:.0f} s: {states}"
        )

    # -- the person ------------------------------------------------------------------------------
    def person_wait(self) -> dt.timedelta:
        """How long a posting must have been unconfirmed before the person looks: longer than
        any write still on its way could take to land (plus a margin for a loaded machine)."""
        return dt.timedelta(seconds=self.max_write_delay + 1.0)

    def resolve_unconfirmed(self) -> int:
        """Play the person: for each posting unconfirmed long enough, look it up in the
        sandbox's ledger and say "found" (with the entry's receipt) or "not there, post it".

        "Long enough" counts from the end of the posting's last attempt: a slow write sent by
        that attempt (or one before it) may land after the posting became unconfirmed, and a
        person who looked too early would post it twice. The ledger is read after the postings
        were picked, so whatever it shows is all that will ever land for them. The outbox may
        still refuse (``NotAllowed``: a stray queued task holds the posting for a moment, or
        its own unknown-outcome delay has not passed): such a posting is looked at again on
        the next round. Returns how many were resolved.
        """
        from django.db.models import Max
        from django.utils import timezone

        from integrations.models import Posting, PostingState
        from integrations_amsi.demo import look_in_sandbox

        cutoff = timezone.now() - self.person_wait()
        ready = (
            Posting.objects.filter(connection=self.connection, state=PostingState.UNCONFIRMED)
            .annotate(last_finished=Max("attempt_log__finished_at"))
            .filter(last_finished__lt=cutoff)
        )
        done = look_in_sandbox(self.sandbox, ready, who="harness")
        for key, what in done:
            self.person_log.append((key, "not found" if what.endswith("posted") else "found"))
        return len(done)

    def transaction_id(self, posting) -> str:
        """The ClientTransactionID AMSI knows a posting by: a payment's own, a reversal's
        original payment's (ReturnPayment names it)."""
        from integrations.models import Posting, PostingKind
        from integrations_amsi.identifiers import client_transaction_id

        if posting.kind == PostingKind.PAYMENT:
            return client_transaction_id(posting)
        payment_posting = Posting.objects.get(payment=posting.payment, kind=PostingKind.PAYMENT)
        return client_transaction_id(payment_posting)

    def close_batches(self, rounds: int = 5) -> list[str]:
        """The close-batches job, run as of tomorrow noon (after every cutoff of today)."""
        tomorrow = dt.datetime.now(CHICAGO).date() + dt.timedelta(days=1)
        now = dt.datetime.combine(tomorrow, dt.time(12), tzinfo=CHICAGO)
        provider = self.connection.get_provider()
        lines: list[str] = []
        for _ in range(rounds):
            lines = provider.close_batches(now=now)
            if not any("will retry" in line for line in lines):
                break
            time.sleep(0.5)
        return lines

    # -- the comparison --------------------------------------------------------------------------
    def tally(self, scenario: str) -> Tally:
        """Our books against the sandbox's ledger.

        - Entries are matched to postings by ClientTransactionID: a payment's own, a reversal's
          original payment's (the sandbox books a return or negative payment with
          client_transaction_id = original_transaction_id = the original's id). A
          (transaction id, negative) pair seen more than once is a duplicate.
        - Lost: a posting we think posted that the sandbox lacks, or a payment or reversal we
          made that has no posting. Extra: in the sandbox but not posted on our side.
        - Per eSite batch (its external number, client_jnl_no): entry count and total equal
          what our AmsiBatchEntry rows say landed in the AmsiBatchLink with that number
          (posted postings only); every batch whose postings are all posted is settled in the
          sandbox and in our link, at its total (a return batch's settlement may be stored as
          its absolute value).
        """
        from django.db import connection

        from integrations.models import Posting, PostingAttempt, PostingKind, PostingState
        from integrations.models.posting import AttemptOutcome
        from integrations_amsi.models import AmsiBatchEntry, AmsiBatchKind, AmsiBatchLink

        POSTED = PostingState.POSTED
        t = Tally(
            scenario,
            connection.vendor,
            len(self.payments),
            len(self.reversals),
            duplicates_variant=self.sandbox.duplicates,
            automatic=self.automatic,
        )
        postings = list(
            Posting.objects.select_related("payment", "reversal").filter(connection=self.connection)
        )
        t.posted = sum(p.state == POSTED for p in postings)
        t.unfinished = sum(p.state not in (POSTED, PostingState.NEEDS_ATTENTION) for p in postings)
        t.still_unconfirmed = sum(p.state == PostingState.UNCONFIRMED for p in postings)
        t.needs_attention = {
            p.key: p.last_error for p in postings if p.state == PostingState.NEEDS_ATTENTION
        }
        attempts = list(PostingAttempt.objects.filter(posting__connection=self.connection))
        t.attempts = sum(not a.worker.startswith("person:") for a in attempts)
        t.found_after_unknown = sum(a.outcome == AttemptOutcome.FOUND_POSTED for a in attempts)
        t.went_unconfirmed = sum(a.outcome == AttemptOutcome.UNCONFIRMED for a in attempts)
        t.found_by_person = sum(a.outcome == AttemptOutcome.FOUND_BY_PERSON for a in attempts)
        t.posted_by_person = sum(a.outcome == AttemptOutcome.NOT_FOUND_BY_PERSON for a in attempts)
        t.overlapping_attempts = _overlaps(attempts)

        # Every payment and reversal we made has its posting.
        payment_postings = {p.payment_id: p for p in postings if p.kind == PostingKind.PAYMENT}
        reversal_postings = {p.reversal_id for p in postings if p.kind == PostingKind.REVERSAL}
        t.lost += sum(p.pk not in payment_postings for p in self.payments)
        t.lost += sum(r.pk not in reversal_postings for r in self.reversals)

        # The sandbox's entries by (ClientTransactionID, negative).
        ledger = self.sandbox.ledger()
        seen: dict[tuple[str, bool], int] = {}
        for b in ledger:
            for e in b["entries"]:
                negative = (
                    Decimal(e["amount"]) < 0
                    or e.get("entry_type") == "Return"
                    or bool(e.get("original_transaction_id"))
                )
                key = (e["client_transaction_id"], negative)
                seen[key] = seen.get(key, 0) + 1
                if negative:
                    t.sandbox_reversals += 1
                else:
                    t.sandbox_payments += 1
        t.duplicates = sum(n - 1 for n in seen.values() if n > 1)

        posted_keys: set[tuple[str, bool]] = set()
        for p in postings:
            original = payment_postings.get(p.payment_id)
            if original is None:  # a reversal whose payment has no posting: counted above
                continue
            key = (self.transaction_id(original), p.kind == PostingKind.REVERSAL)
            if p.state == POSTED:
                posted_keys.add(key)
                if key not in seen:
                    t.lost += 1
        t.extra += sum(1 for key in seen if key not in posted_keys)

        # Per eSite batch.
        by_jnl: dict[str, list[dict]] = {}
        for b in ledger:
            by_jnl.setdefault(str(b["client_jnl_no"]), []).append(b)
        links = {
            link.client_jnl_no: link
            for link in AmsiBatchLink.objects.filter(connection=self.connection).select_related(
                "batch"
            )
        }
        ours: dict[str, tuple[int, Decimal]] = {jnl: (0, Decimal("0.00")) for jnl in links}
        for entry in AmsiBatchEntry.objects.filter(
            link__connection=self.connection, posting__state=POSTED
        ).select_related("link"):
            n, total = ours[entry.link.client_jnl_no]
            ours[entry.link.client_jnl_no] = (n + 1, total + entry.amount)
        waiting = [p for p in postings if p.state != POSTED]
        for jnl in sorted(set(ours) | set(by_jnl)):
            link = links.get(jnl)
            n, total = ours.get(jnl, (0, Decimal("0.00")))
            total = total.quantize(Decimal("0.01"))
            batches = by_jnl.get(jnl, [])
            sn = sum(len(b["entries"]) for b in batches)
            stotal = sum((Decimal(b["total"]) for b in batches), Decimal("0.00"))
            kind = link.kind if link else "(none)"
            t.batches.append((jnl, kind, n, total, sn, stotal))
            if (n, total) != (sn, stotal) or len(batches) > 1 or link is None:
                t.mismatched_batches += 1
            if link is None or n == 0 or _could_land(link, waiting):
                continue
            is_return = link.kind == AmsiBatchKind.RETURN
            sb = batches[0] if batches else None
            if not (
                sb
                and sb.get("settled")
                and _same_amount(Decimal(sb.get("settled_amount") or "0"), stotal, is_return)
                and link.settled_amount is not None
                and _same_amount(link.settled_amount, total, is_return)
            ):
                t.unsettled.append(jnl)
        # A posting posted on our side but recorded in no eSite batch cannot be settled.
        landed = set(
            AmsiBatchEntry.objects.filter(link__connection=self.connection).values_list(
                "posting_id", flat=True
            )
        )
        t.mismatched_batches += sum(p.state == POSTED and p.pk not in landed for p in postings)
        t.faults_fired = self.sandbox.note_fired()
        return t
