"""The client's whole day against every sandbox variant, one value at a time.

Where nothing public shows what a real eSite does, the sandbox offers each plausible behaviour
behind a switch (integrations_amsi/sandbox/variants.py, docs/amsi-evidence.md). Whatever the
switch, the client must import, post each payment and reversal exactly once, settle every
eSite batch at what eSite booked, and lose nothing. New variants are picked up from the table.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from integrations.models import Posting, PostingState
from integrations.services import run_sync
from integrations_amsi.models import AmsiBatchLink
from integrations_amsi.sandbox.variants import VARIANTS
from rentplatform import services

CASES = [(name, value) for name, v in VARIANTS.items() for value in v.allowed]
CARD = "001-01-101-1"
ACH = "001-01-102-2"


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v}" for n, v in CASES])
def test_a_whole_day_against_the_variant(world, deliver, name, value):
    world.control.set_variants(**{name: value})
    run = run_sync(world.connection, "full")
    assert run.status == "succeeded", run.message
    assert run.deactivated == 0

    with deliver():
        card = world.pay(CARD, "500.00", "card")
        ach = world.pay(ACH, "300.00", "ach")
        early = world.pay(CARD, "20.00", "card")
    with deliver():
        services.void_payment(early)  # same day, before the batch closes: original batch
    world.deliver_all()
    world.resolve_unconfirmed()
    # The day ends: batches close, the bank deposits, then an ACH return arrives.
    tomorrow = world.at(card.batch.business_day, 23, 59)
    world.close_batches(tomorrow)
    world.settle_and_deposit(ach)
    with deliver():
        services.return_payment(ach, "R01")
    world.deliver_all()
    world.resolve_unconfirmed()
    world.close_batches(tomorrow)

    assert Posting.objects.exclude(state=PostingState.POSTED).count() == 0, world.states()
    ledger = world.ledger()
    entries = [e for b in ledger.values() for e in b["entries"]]
    txns = [(e["client_transaction_id"], Decimal(e["amount"]) < 0) for e in entries]
    assert len(txns) == len(set(txns)) == 5, txns  # 3 payments, a void, a return: once each
    for link in AmsiBatchLink.objects.all():
        booked = ledger[link.client_jnl_no]
        assert booked["settled"], (link.client_jnl_no, booked)
    assert sum(Decimal(b["total"]) for b in ledger.values()) == Decimal("500.00")
