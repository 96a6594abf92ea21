"""The provider contract suite: every provider's tests inherit it (allauth's pattern).

A subclass supplies three fixtures/hooks:

- ``connection``: an enabled Connection for a property whose leases can pay;
- ``lease``: a lease on that property the provider can post for;
- ``remote_entries(connection, posting) -> int``: how many entries the remote holds for a
  posting (payment or reversal);
- ``lose_next_reply(connection)``: make the next write land but its reply get lost;
- ``drop_remote_entry(connection, posting)`` (optional): remove a posting's entry from the
  remote, so reconciliation has a difference to find.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations import outbox, reconciliation
from integrations.linking import LinkRefused, link_lease
from integrations.models import (
    Posting,
    PostingKind,
    PostingState,
    RemoteLeaseLink,
    RemoteOccupantLink,
    SyncKind,
    SyncStatus,
)
from integrations.providers import registry
from integrations.providers.base import AccountingProvider, ConnectionCheck
from integrations.services import run_sync
from rentplatform import services
from rentplatform.models import Lease, LeaseStatus, PaymentAccess


@pytest.mark.django_db(transaction=True)
class ProviderContract:
    provider_id: str = ""

    def remote_entries(self, connection, posting) -> int:
        raise NotImplementedError

    def lose_next_reply(self, connection) -> None:
        raise NotImplementedError

    def drop_remote_entry(self, connection, posting) -> None:
        raise NotImplementedError

    def _pay(self, lease, amount="125.00", method="card"):
        payment = services.accept_payment(lease, amount, method)
        return Posting.objects.get(payment=payment, kind=PostingKind.PAYMENT)

    def test_registered_and_complete(self, connection):
        cls = registry.get(self.provider_id)
        assert issubclass(cls, AccountingProvider)
        assert (cls.id, cls.name) in registry.as_choices()
        for hook in ("test_connection", "post_payment", "post_reversal", "find_posting"):
            assert getattr(cls, hook) is not getattr(AccountingProvider, hook), hook
        if cls.link_model is not None:  # it imports: the read and mapping hooks are its own
            assert issubclass(cls.link_model, RemoteLeaseLink) and cls.link_model.key_fields
            assert issubclass(cls.occupant_model, RemoteOccupantLink)
            assert cls.occupant_model.key_field
            for hook in ("read_leases", "read_changed_leases", "read_lease", "lease_record"):
                assert getattr(cls, hook) is not getattr(AccountingProvider, hook), hook

    # -- closing the remote batches ------------------------------------------------------------
    def remote_batch_closed(self, connection, batch_id: str) -> bool:
        """Whether the remote holds the batch ``batch_id`` closed (settled)."""
        raise NotImplementedError

    def test_closing_closes_a_finished_day_once(self, connection, lease):
        posting = self._pay(lease)
        assert posting.state == PostingState.POSTED, posting.last_error
        batch = posting.payment.batch
        provider = connection.get_provider()
        assert not self.remote_batch_closed(connection, batch.batch_id)
        # Its day is not over: noon on its business day, in the property's time zone (not
        # the clock: after the close cutoff, 22:00 there, the day's batches are due).
        noon = dt.datetime.combine(batch.business_day, dt.time(12), tzinfo=batch.property.tz)
        during = provider.close_batches(now=noon)
        assert not self.remote_batch_closed(connection, batch.batch_id), during
        later = timezone.now() + dt.timedelta(days=2)
        lines = provider.close_batches(now=later)
        assert self.remote_batch_closed(connection, batch.batch_id), lines
        assert any(batch.batch_id in line for line in lines), lines
        again = connection.get_provider().close_batches(now=later)  # nothing moved since
        assert not any(batch.batch_id in line for line in again), again

    # -- import and resync (integrations.importing through the provider's read hooks) ---------
    def imported(self, connection) -> list:
        """The remote lists leases and they were imported: their active links."""
        raise NotImplementedError

    def set_remote_balance(self, connection, link, amount: Decimal) -> None:
        """Change the remote lease's balance, as a person would in the remote system."""
        raise NotImplementedError

    def end_remote_lease(self, connection, link) -> None:
        """Make the remote stop listing the lease as current (moved out, say)."""
        raise NotImplementedError

    def _links(self, connection):
        provider = connection.get_provider()
        if provider.link_model is None:
            pytest.skip(f"{provider.name} imports nothing")
        return self.imported(connection)

    def test_import_links_every_lease_and_a_resync_writes_nothing(self, connection):
        links = self._links(connection)
        assert links, "the remote lists leases"
        for link in links:
            assert link.lease.unit.building.property_id == connection.property_id
            assert link.content_hash and link.last_synced_at
        run = run_sync(connection, SyncKind.FULL)
        assert run.status == SyncStatus.SUCCEEDED, run.message
        assert (run.created, run.updated, run.deactivated, run.errors) == (0, 0, 0, 0)
        assert run.unchanged >= len(links)

    def test_a_remote_change_arrives_by_lease_sync_and_a_dry_run_writes_nothing(self, connection):
        link = self._links(connection)[0]
        self.set_remote_balance(connection, link, Decimal("123.45"))
        dry = run_sync(connection, SyncKind.FULL, dry_run=True)
        assert dry.updated == 1, dry.message
        link.lease.refresh_from_db()
        assert link.lease.balance != Decimal("123.45")  # a dry run describes, writes nothing
        run = run_sync(connection, SyncKind.LEASE, lease_id=link.lease_id)
        assert (run.status, run.updated) == (SyncStatus.SUCCEEDED, 1), run.message
        link.lease.refresh_from_db()
        assert link.lease.balance == Decimal("123.45")

    def block_remote_lease(self, connection, link) -> None:
        """Block payments on the remote lease, as a person would in the remote system."""
        raise NotImplementedError

    def test_a_block_set_remotely_arrives_by_the_delta_resync(self, connection):
        link = self._links(connection)[0]
        self.block_remote_lease(connection, link)
        run = run_sync(connection, SyncKind.DELTA)
        assert run.status == SyncStatus.SUCCEEDED and run.updated >= 1, run.message
        link.lease.refresh_from_db()
        assert link.lease.accounting_access == PaymentAccess.BLOCKED
        assert link.lease.accounting_access_reason

    def test_a_lease_no_longer_listed_is_marked_inactive_never_deleted(self, connection):
        link = self._links(connection)[0]
        self.end_remote_lease(connection, link)
        run = run_sync(connection, SyncKind.FULL)
        assert run.deactivated == 1, run.message
        link.refresh_from_db()
        link.lease.refresh_from_db()
        assert not link.active and link.lease.status == LeaseStatus.INACTIVE

    def test_a_lease_linked_by_hand_is_verified_saved_and_synced(self, connection):
        """The admin's and the API's "link to the accounting system's lease"
        (integrations.linking), for a provider that links by hand."""
        provider = connection.get_provider()
        if not provider.links_leases:
            pytest.skip(f"{provider.name} does not link leases by hand")
        link = self._links(connection)[0]
        lease, typed = link.lease, link.composite
        link.delete()  # as if the tenant had been added on the platform by hand
        with pytest.raises(LinkRefused):
            link_lease(lease, "not a lease id!", sync=False)
        assert not provider.link_model.objects.filter(lease=lease).exists()
        result = link_lease(lease, typed, triggered_by="contract")
        relinked = provider.link_model.objects.get(lease=lease)
        assert relinked.linked_by_hand and result.remote_id == relinked.composite == typed
        assert result.run.status == SyncStatus.SUCCEEDED, result.run.message
        twin = Lease.objects.create(unit=lease.unit, status=LeaseStatus.PENDING)
        with pytest.raises(LinkRefused, match="already linked"):
            link_lease(twin, typed, sync=False)

    def test_connection_check(self, connection):
        check = connection.get_provider().test_connection()
        assert isinstance(check, ConnectionCheck)
        assert check.ok, check.message

    def test_payment_posts_once(self, connection, lease):
        posting = self._pay(lease)
        posting.refresh_from_db()
        assert posting.state == PostingState.POSTED, posting.last_error
        assert posting.remote_reference
        assert self.remote_entries(connection, posting) == 1
        # A second delivery of the same posting is a no-op.
        assert outbox.deliver(posting.pk) is None
        assert self.remote_entries(connection, posting) == 1

    def test_lost_reply_is_never_posted_twice(self, connection, lease):
        self.lose_next_reply(connection)
        posting = self._pay(lease, amount=Decimal("80.00"))
        posting.refresh_from_db()
        if connection.get_provider().checks_unknown_outcomes(posting):
            # The provider can check unattended: the next attempt checks before writing.
            if posting.state != PostingState.POSTED:
                outbox.deliver(posting.pk, force=True)
                posting.refresh_from_db()
            assert posting.attempt_log.filter(checked_first=True).exists()
        else:
            # It cannot: nothing is sent again until a person has looked.
            assert posting.state == PostingState.UNCONFIRMED, posting.last_error
            assert outbox.deliver(posting.pk, force=True) is None  # not even when forced
            assert self.remote_entries(connection, posting) == 1
            outbox.mark_found(posting, receipt="seen-by-person", who="contract")
            posting.refresh_from_db()
        assert posting.state == PostingState.POSTED, posting.last_error
        assert self.remote_entries(connection, posting) == 1

    def test_reversal_posts_once(self, connection, lease):
        posting = self._pay(lease, method="card")
        payment = posting.payment
        services.settle_payment(payment)
        reversal = services.charge_back_payment(payment)
        rp = Posting.objects.get(reversal=reversal)
        assert rp.state == PostingState.POSTED, rp.last_error
        assert rp.key != posting.key
        assert self.remote_entries(connection, rp) == 1

    def test_reconciliation_of_posted_payment_and_reversal(self, connection, lease):
        posting = self._pay(lease, method="card")
        payment = posting.payment
        services.settle_payment(payment)
        reversal = services.charge_back_payment(payment)
        rp = Posting.objects.get(reversal=reversal)
        assert rp.state == PostingState.POSTED, rp.last_error
        month = payment.batch.business_day.replace(day=1)
        result = reconciliation.reconcile(connection, month)
        assert result.error == ""
        assert result.differences == [], result.differences
        assert result.summary().endswith(
            f"0 differences - our batches match {connection.get_provider().system_name}"
        )
        try:
            self.drop_remote_entry(connection, rp)
        except NotImplementedError:
            pytest.skip("this provider's tests cannot remove a remote entry")
        result = reconciliation.reconcile(connection, month)
        missing = [d for d in result.differences if d.kind == "missing_item"]
        assert [d.batch_id for d in missing] == [reversal.batch.batch_id], result.differences
        assert reversal.public_id[:10] in missing[0].message
