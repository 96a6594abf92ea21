"""The AMSI provider runs the provider contract suite (tests/integrations/contract.py) against
the sandbox over loopback HTTP: once as a connection starts (a person confirms unknown
outcomes) and once after an operator confirmed that this eSite refuses a repeated
ClientTransactionID (unknown outcomes are then checked unattended)."""

from __future__ import annotations

import pytest

from integrations.models import Posting, PostingKind
from integrations_amsi.identifiers import client_transaction_id
from integrations_amsi.models import AmsiBatchLink, AmsiLeaseLink
from tests.integrations.contract import ProviderContract
from tests.integrations_amsi.world import AmsiWorld

ALLOWED = "001-01-101-1"


class TestAmsiProviderContract(ProviderContract):
    provider_id = "amsi"

    @pytest.fixture
    def world(self, tmp_path):
        w = AmsiWorld(tmp_path)
        w.import_property()
        yield w
        w.close()

    @pytest.fixture
    def connection(self, world):
        self.control = world.control
        return world.connection

    @pytest.fixture
    def lease(self, world):
        return world.lease(ALLOWED)

    # -- postings --------------------------------------------------------------------------------
    def remote_entries(self, connection, posting):
        original = Posting.objects.get(payment=posting.payment, kind=PostingKind.PAYMENT)
        txn = client_transaction_id(original)
        reversal = posting.kind == PostingKind.REVERSAL
        return sum(
            1
            for batch in self.control.ledger()
            for e in batch["entries"]
            if e["client_transaction_id"] == txn
            and bool(e.get("original_transaction_id")) == reversal
        )

    def lose_next_reply(self, connection):
        self.control.add_fault("lost_reply", "AddPayment", count=1)

    def remote_batch_closed(self, connection, batch_id):
        link = AmsiBatchLink.objects.filter(connection=connection, client_jnl_no=batch_id).first()
        in_esite = [b for b in self.control.ledger() if b.get("client_jnl_no") == batch_id]
        return bool(link and link.settled_at and in_esite and in_esite[0].get("settled"))

    # -- import: the demo property, changed through the sandbox's control API --------------------
    def imported(self, connection):
        return list(
            AmsiLeaseLink.objects.filter(connection=connection, active=True)
            .select_related("lease")
            .order_by("pk")
        )

    def _patch(self, link, **attrs):
        self.control.patch_lease(*link.key, **attrs)

    def set_remote_balance(self, connection, link, amount):
        self._patch(link, EndBalance=str(amount))

    def block_remote_lease(self, connection, link):
        self._patch(link, BlockPaymentAccess="Y")

    def end_remote_lease(self, connection, link):
        self._patch(link, occustatuscode="P")  # a past resident: on neither list


class TestAmsiProviderContractAutomatic(TestAmsiProviderContract):
    """The same contract on a connection whose operator confirmed that this eSite refuses a
    repeated ClientTransactionID: unknown outcomes are then checked unattended."""

    @pytest.fixture
    def connection(self, world):
        self.control = world.control
        world.confirm_duplicates_refused()
        return world.connection
