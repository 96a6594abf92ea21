"""A fake accounting provider: records what it was asked, and fails when told to.

Its "remote ledger" is the FakeRemoteEntry table, so it works across processes (the demo's
django-q2 worker) and refuses a second entry for the same key, like a careful remote would.
Failures are set in the connection's settings::

    {"fail": {"mode": "retryable" | "permanent" | "ambiguous" | "lost_reply", "count": 2}}

``lost_reply`` writes the entry and then reports an unknown outcome, the hardest case.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from integrations.exceptions import (
    AmbiguousOutcome,
    LinkRefused,
    PermanentError,
    RetryableError,
)
from integrations.models import Connection, FakeRemoteEntry, Posting
from integrations.reconciliation import ZERO, RemoteItem, RemoteSide, month_batches

from .base import AccountingProvider, ConnectionCheck, Delivered


class FakeProvider(AccountingProvider):
    id = "fake"
    name = "Fake (records postings; for demos and tests)"
    system_name = "the fake remote"

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

    def sync(self, run, *, lease_id=None, since=None, progress=None) -> None:
        run.message = "the fake provider has nothing to import"

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
        return []

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
