"""A fake accounting provider: records what it was asked, and fails when told to.

Its "remote ledger" is the FakeRemoteEntry table, so it works across processes (the demo's
django-q2 worker) and refuses a second entry for the same key, like a careful remote would.
Failures are set in the connection's settings::

    {"fail": {"mode": "retryable" | "permanent" | "ambiguous" | "lost_reply", "count": 2}}

``lost_reply`` writes the entry and then reports an unknown outcome, the hardest case.

Its remote leases are the connection's ``leases`` setting, a list of dicts::

    {"id": "L1", "unit": "A-101", "balance": "0.00", "blocked": false,
     "people": [["Ada", "Lovelace"]]}
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from integrations.exceptions import (
    AmbiguousOutcome,
    LinkRefused,
    PermanentError,
    RetryableError,
)
from integrations.models import (
    Connection,
    FakeLeaseLink,
    FakeOccupantLink,
    FakeRemoteEntry,
    Posting,
    PostingState,
)
from integrations.reconciliation import ZERO, RemoteItem, RemoteSide, month_batches
from integrations.records import BadRecord, LeaseRecord, OccupantRecord
from rentplatform.models import DepositBatch, LeaseStatus, PaymentAccess

from .base import AccountingProvider, ConnectionCheck, Delivered


class FakeProvider(AccountingProvider):
    id = "fake"
    name = "Fake (records postings; for demos and tests)"
    system_name = "the fake remote"
    link_model = FakeLeaseLink
    occupant_model = FakeOccupantLink

    def test_connection(self) -> ConnectionCheck:
        if self.connection.setting("unreachable"):
            return ConnectionCheck(False, "fake remote is set to be unreachable")
        return ConnectionCheck(True, "fake remote answers")

    def _take_failure(self) -> str:
        with transaction.atomic():
            conn = Connection.objects.select_for_update().get(pk=self.connection.pk)
            fail = dict(conn.settings.get("fail") or {})
            if not fail or int(fail.get("count", 0)) <= 0:
                return ""
            fail["count"] = int(fail["count"]) - 1
            conn.settings["fail"] = fail
            conn.save(update_fields=["settings"])
            return str(fail.get("mode", "retryable"))

    def _error(self, mode: str, posting: Posting):
        context = {"provider": self.id, "operation": posting.kind, "record": posting.key}
        if mode == "permanent":
            return PermanentError("fake remote refused the posting", code="REFUSED", **context)
        if mode in ("ambiguous", "lost_reply"):
            return AmbiguousOutcome("fake remote did not answer", **context)
        return RetryableError("fake remote is unavailable", code="BUSY", **context)

    def _write(self, posting: Posting) -> Delivered:
        mode = self._take_failure()
        if mode and mode != "lost_reply":
            raise self._error(mode, posting)
        subject = posting.subject
        amount = subject.amount if posting.kind == "payment" else -subject.amount
        try:
            with transaction.atomic():
                entry = FakeRemoteEntry.objects.create(
                    connection=self.connection,
                    key=posting.key,
                    kind=posting.kind,
                    amount=amount,
                    batch_id=subject.batch.batch_id,
                    reference=f"FAKE-{posting.key[:12]}",
                )
        except IntegrityError:
            raise PermanentError(
                "fake remote already has this key: a second write was attempted",
                code="DUPLICATE",
                provider=self.id,
                record=posting.key,
            ) from None
        if mode == "lost_reply":
            raise self._error(mode, posting)
        return Delivered(entry.reference, request_document=f"post {posting.key} {amount}")

    def post_payment(self, posting: Posting) -> Delivered:
        return self._write(posting)

    def post_reversal(self, posting: Posting) -> Delivered:
        return self._write(posting)

    def find_posting(self, posting: Posting) -> Delivered | None:
        entry = FakeRemoteEntry.objects.filter(connection=self.connection, key=posting.key).first()
        return Delivered(entry.reference) if entry else None

    # -- import: the remote's leases are the connection's "leases" setting ---------------------
    def read_leases(self, feed):
        return list(self.connection.setting("leases") or [])

    def read_changed_leases(self, feed, since):
        return self.read_leases(feed)

    def read_lease(self, feed, link):
        return next((r for r in self.read_leases(feed) if r.get("id") == link.remote_id), None)

    def lease_record(self, item) -> LeaseRecord:
        name = str(item.get("id") or "?")
        if not item.get("id") or not item.get("unit"):
            raise BadRecord(name, "lease without id or unit")
        building, _, unit = str(item["unit"]).rpartition("-")
        try:
            balance = Decimal(str(item.get("balance", "0")))
        except InvalidOperation:
            raise BadRecord(name, f"balance {item.get('balance')!r} is not an amount") from None
        blocked = bool(item.get("blocked"))
        return LeaseRecord(
            key=(name,),
            building=building or "1",
            unit=unit,
            status=item.get("status", LeaseStatus.ACTIVE),
            balance=balance,
            access=PaymentAccess.BLOCKED if blocked else PaymentAccess.ALLOWED,
            access_reason="blocked in the fake remote" if blocked else "",
            occupants=[
                OccupantRecord(key=str(n), first_name=first, last_name=last)
                for n, (first, last) in enumerate(item.get("people", []), start=1)
            ],
            raw={k: str(v) for k, v in item.items()},
        )

    # -- linking by hand: a remote lease is known by its "id" -----------------------------------
    links_leases = True
    link_label = "Fake remote lease id"
    link_help = 'The "id" of one of the connection\'s "leases" (e.g. L1), on this lease\'s unit.'

    def lease_key(self, lease, text: str) -> tuple[tuple[str], str]:
        value = (text or "").strip()
        if not value.isalnum() or len(value) > 40:
            raise LinkRefused(f"{value!r} is not a {self.system_name} lease id (letters, digits)")
        return (value,), ""

    def verify_lease_key(self, lease, key: tuple[str]) -> None:
        leases = self.connection.setting("leases") or []
        item = next((r for r in leases if r.get("id") == key[0]), None)
        if item is None:
            raise LinkRefused(f"{self.system_name} has no lease {key[0]}")
        building, _, unit = str(item.get("unit", "")).rpartition("-")
        if ((building or "1"), unit) != (lease.unit.building.code, lease.unit.code):
            raise LinkRefused(
                f"{self.system_name} lease {key[0]} is on unit {item.get('unit')}, not on "
                f"lease #{lease.pk}'s unit"
            )

    def close_batches(self, *, now=None) -> list[str]:
        """Close each batch of an earlier day (property time) once every posting of it is
        posted, at the total of its remote entries; again when that total moved. What was
        closed, at which total, is kept in the connection's ``closed_batches`` setting."""
        now = now or timezone.now()
        today = now.astimezone(self.connection.property.tz).date()
        fresh = Connection.objects.get(pk=self.connection.pk)
        closed = dict(fresh.setting("closed_batches") or {})
        totals = (
            FakeRemoteEntry.objects.filter(connection=self.connection)
            .values_list("batch_id")
            .annotate(total=Sum("amount"))
            .order_by("batch_id")
        )
        lines = []
        for batch_id, total in totals:
            batch = DepositBatch.objects.get(batch_id=batch_id)
            unfinished = Posting.objects.filter(connection=self.connection).filter(
                Q(payment__batch=batch) | Q(reversal__batch=batch)
            )
            if batch.business_day >= today or (
                unfinished.exclude(state=PostingState.POSTED).exists()
            ):
                continue
            if closed.get(batch_id) != str(total):
                closed[batch_id] = str(total)
                lines.append(f"batch {batch_id}: settled at {total}")
        if lines:
            with transaction.atomic():
                conn = Connection.objects.select_for_update().get(pk=self.connection.pk)
                conn.settings["closed_batches"] = closed
                conn.save(update_fields=["settings"])
        return lines

    def remote_month(self, month, report_text=None) -> RemoteSide:
        """The FakeRemoteEntry rows of the month's batches: items keyed by posting key."""
        if report_text is not None:
            raise PermanentError(
                "the fake remote has no export to upload; reconcile without one",
                provider=self.id,
                operation="reconcile",
            )
        batch_ids = month_batches(self.connection, month).values("batch_id")
        side = RemoteSide()
        for entry in FakeRemoteEntry.objects.filter(
            connection=self.connection, batch_id__in=batch_ids
        ).order_by("pk"):
            side.totals[entry.batch_id] = side.totals.get(entry.batch_id, ZERO) + entry.amount
            side.items.append(RemoteItem(entry.batch_id, entry.key, entry.amount, entry.kind))
        return side
