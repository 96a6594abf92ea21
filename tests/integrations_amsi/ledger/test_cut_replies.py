"""A reply cut off mid-body after the write landed (the sandbox's ``cut_body`` fault: headers
and half the body, then the connection closes): the posting is an unknown outcome, never a
crash, and it is never posted twice."""

from __future__ import annotations

import pytest

from integrations.models import PostingState
from integrations_amsi.identifiers import client_transaction_id

ALLOWED = "001-01-101-1"
CUTS = pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])


@CUTS
def test_cut_reply_leaves_the_posting_unconfirmed_with_one_ledger_entry(world, deliver, chunked):
    world.control.add_fault("cut_body", "AddPayment", count=1, chunked=chunked)
    with deliver():
        payment = world.pay(ALLOWED, "640.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED, posting.last_error
    assert "cut off" in posting.last_error
    entries = world.entries(payment.batch.batch_id)
    assert [e["client_transaction_id"] for e in entries] == [client_transaction_id(posting)]
    with deliver():
        world.resolve_unconfirmed()  # the person finds it in eSite
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert posting.remote_reference == entries[0]["evolution_reference"]
    assert len(world.entries(payment.batch.batch_id)) == 1
    outcomes = list(posting.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["unconfirmed", "found_by_person"]


@CUTS
def test_cut_reply_with_duplicates_refused_is_resent_and_posted_once(world, deliver, chunked):
    world.confirm_duplicates_refused()
    world.control.add_fault("cut_body", "AddPayment", count=1, chunked=chunked)
    with deliver():
        payment = world.pay(ALLOWED, "640.00", "card")
    world.deliver_all()
    posting = world.posting(payment)
    assert posting.state == PostingState.POSTED, posting.last_error
    entries = world.entries(payment.batch.batch_id)
    assert [e["client_transaction_id"] for e in entries] == [client_transaction_id(posting)]
    outcomes = list(posting.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["unknown", "found_posted"]
    assert posting.remote_reference == entries[0]["evolution_reference"]


def test_cut_reply_to_a_reversal_waits_for_a_person_even_with_duplicates_refused(world, deliver):
    """The duplicates-refused confirmation is about a repeated AddPayment: nothing shows what
    eSite does with a repeated ReturnPayment (it might book a second return), so a reversal
    whose reply was cut off is never sent again unattended: unconfirmed, then the person."""
    from rentplatform import services

    with deliver():
        payment = world.pay(ALLOWED, "210.00", "card")
    assert world.posting(payment).state == PostingState.POSTED
    world.confirm_duplicates_refused()
    world.control.add_fault("cut_body", "ReturnPayment", count=1)
    with deliver():
        services.void_payment(payment)
    world.deliver_all()
    reversal = world.posting(payment, "reversal")
    assert reversal.state == PostingState.UNCONFIRMED, reversal.last_error
    assert list(reversal.attempt_log.values_list("outcome", flat=True)) == ["unconfirmed"]
    with deliver():
        world.resolve_unconfirmed()  # the person finds the return in eSite
    reversal.refresh_from_db()
    assert reversal.state == PostingState.POSTED
    returns = [e for e in world.entries(payment.batch.batch_id) if e["amount"].startswith("-")]
    assert len(returns) == 1
