"""Settling many eSite batches at once (issue 12 item 4): up to ``settle_concurrency`` calls in
flight per connection, each batch settled exactly once at its total, a failed call retried on
the next run without touching the others. Against the sandbox over loopback HTTP, with a
committed database (the settling threads read what the test wrote)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from integrations_amsi.batches import close_due_batches
from integrations_amsi.models import AmsiBatchLink
from tests.integrations_amsi.world import AmsiWorld

LEASES = ["001-01-101-1", "001-01-102-2", "001-01-103-3"]
FIRST_DAY = dt.date(2026, 11, 2)  # a Monday


@pytest.fixture
def busy_world(tmp_path, transactional_db):
    """Nine days of payments (nine payments batches), posted, with settling allowed 4 at once."""
    world = AmsiWorld(tmp_path)
    world.import_property()
    world.connection.settings["settle_concurrency"] = 4
    world.connection.save(update_fields=["settings"])
    for n in range(9):
        day = FIRST_DAY + dt.timedelta(days=n)
        world.pay(LEASES[n % 3], f"{100 + n}.00", when=world.at(day))
    world.deliver_all()
    assert world.all_posted()
    yield world
    world.close()


def _settled(world) -> dict[str, Decimal]:
    return {
        jnl: Decimal(batch["settled_amount"])
        for jnl, batch in world.ledger().items()
        if batch["settled"]
    }


def test_many_batches_settle_concurrently_each_once(busy_world):
    world = busy_world
    # Every call waits 0.2 s, as a distant eSite would: four are in flight at a time.
    world.control.add_fault("latency", "UpdateSettlementData", seconds=0.2, ratio=1.0)
    later = world.at(FIRST_DAY + dt.timedelta(days=20))
    lines = close_due_batches(world.connection.get_provider(), now=later)
    assert len([line for line in lines if "settled at" in line]) == 9, lines
    settled = _settled(world)
    assert len(settled) == 9
    for link in AmsiBatchLink.objects.filter(connection=world.connection):
        assert link.settled_amount == settled[link.client_jnl_no], link
    calls = sum(f["fired"] for f in world.control.faults())
    assert calls == 9  # one UpdateSettlementData per batch, none repeated
    assert close_due_batches(world.connection.get_provider(), now=later) == []  # nothing moved


def test_a_failed_settlement_is_retried_alone(busy_world):
    world = busy_world
    world.control.add_fault("http500", "UpdateSettlementData", count=1)
    later = world.at(FIRST_DAY + dt.timedelta(days=20))
    lines = close_due_batches(world.connection.get_provider(), now=later)
    assert len([line for line in lines if "will retry settling" in line]) == 1, lines
    assert len(_settled(world)) == 8
    retried = close_due_batches(world.connection.get_provider(), now=later)
    assert len(retried) == 1 and "settled at" in retried[0], retried
    assert len(_settled(world)) == 9
