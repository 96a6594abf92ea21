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

from decimal import Decimal

import pytest

from integrations import outbox, reconciliation
from integrations.models import Posting, PostingKind, PostingState
from integrations.providers import registry
from integrations.providers.base import AccountingProvider, ConnectionCheck
from rentplatform import services


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
        for hook in ("test_connection", "post_payment", "post_reversal", "find_posting", "sync"):
            assert getattr(cls, hook) is not getattr(AccountingProvider, hook), hook

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
        if connection.get_provider().checks_unknown_outcomes():
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
