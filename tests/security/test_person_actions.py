"""A person's actions on a posting whose last write may have landed, through the admin, against
the sandbox eSite: "Retry now" never writes before it is known whether the earlier write
landed, and never before the unknown-outcome wait; "not there, post it" too early is refused
with a message, not an error page.

The sandbox's ``duplicates=accept`` variant books a repeated ClientTransactionID, so a blind
second write would show as a second entry in its ledger.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations import outbox
from integrations.models import Posting, PostingState
from tests.factories import staff_user

ALLOWED = "001-01-101-1"
CHANGELIST = "admin:integrations_posting_changelist"


@pytest.fixture
def person(db):
    user = staff_user(
        "integrations.view_posting",
        "integrations.retry_posting",
        "integrations.resolve_unconfirmed",
    )
    client = Client()
    client.force_login(user)
    return client


def _act(client, action: str, posting: Posting, **extra) -> list[str]:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [posting.pk], "index": "0", **extra},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def _wait(settings, seconds: float) -> None:
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "UNKNOWN_OUTCOME_DELAY_SECONDS": seconds}


def _worker_dies_after_writing(world):
    """A payment is taken; a worker claims its posting, AddPayment lands in eSite, and the
    worker is killed before it records anything. Its claim has just expired."""
    payment = world.pay(ALLOWED, "123.00", "card")  # its task is not run: on_commit not run
    posting = world.posting(payment)
    claimed, _attempt = outbox.claim(posting.pk)
    world.connection.get_provider().deliver(claimed)  # the write lands in the sandbox
    Posting.objects.filter(pk=posting.pk).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert len(world.entries(payment.batch.batch_id)) == 1
    return payment, Posting.objects.get(pk=posting.pk)


def test_retry_now_after_a_worker_died_mid_write_asks_a_person_and_never_writes_again(
    world, deliver, person, settings
):
    world.control.set_variants(duplicates="accept")  # eSite would book a repeat
    _wait(settings, 45)
    payment, posting = _worker_dies_after_writing(world)

    with deliver():
        said = _act(person, "retry_postings", posting)
    world.deliver_all(max_wait=0)
    assert len(world.entries(payment.batch.batch_id)) == 1  # not written a second time
    assert any("may already be in the accounting system" in m for m in said), said
    posting.refresh_from_db()
    assert posting.state == PostingState.UNCONFIRMED and posting.outcome_unknown

    # "Not there, post it" before the dead attempt's claim deadline + the wait: refused, said.
    with deliver():
        said = _act(person, "post_unconfirmed", posting)
    assert any("may still land" in m for m in said), said
    posting.refresh_from_db()
    assert posting.state == PostingState.UNCONFIRMED
    assert len(world.entries(payment.batch.batch_id)) == 1

    # The person finds it in eSite: posted, with eSite's receipt, never written twice.
    receipt = world.entries(payment.batch.batch_id)[0]["evolution_reference"]
    _act(person, "mark_found", posting, apply="1", receipt=receipt)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED and posting.remote_reference == receipt
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_retry_now_on_a_connection_that_checks_waits_then_lets_esite_refuse_the_repeat(
    world, deliver, person, settings
):
    world.confirm_duplicates_refused()  # the sandbox refuses a repeat (206), as confirmed
    _wait(settings, 45)
    payment, posting = _worker_dies_after_writing(world)
    deadline = posting.claimed_until

    with deliver():
        said = _act(person, "retry_postings", posting)
    assert any("may still land" in m for m in said), said
    posting.refresh_from_db()
    assert posting.state == PostingState.RETRYING and posting.outcome_unknown
    assert posting.next_attempt_at == deadline + dt.timedelta(seconds=45)
    world.deliver_all(max_wait=0)
    assert outbox.deliver(posting.pk, force=True) is None
    assert posting.attempt_log.count() == 1  # nothing sent during the wait

    # The wait is over: the write is sent again and eSite's refusal of the repeat proves it.
    Posting.objects.filter(pk=posting.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )
    _wait(settings, 0)
    world.deliver_all(max_wait=0)
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED, posting.last_error
    last = posting.attempt_log.last()
    assert last.checked_first and last.outcome == "found_posted"
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_retry_now_of_a_lost_reply_keeps_its_wait(world, deliver, person, settings):
    world.confirm_duplicates_refused()
    _wait(settings, 45)
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "64.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.RETRYING and posting.outcome_unknown
    due = posting.next_attempt_at
    with deliver():
        _act(person, "retry_postings", posting)
    posting.refresh_from_db()
    assert posting.next_attempt_at == due  # not "now"
    assert posting.attempt_log.count() == 1
    assert len(world.entries(payment.batch.batch_id)) == 1


def test_not_there_post_it_too_early_is_a_message_not_an_error_page(
    world, deliver, person, settings
):
    _wait(settings, 45)
    world.control.add_fault("lost_reply", "AddPayment", count=1)
    with deliver():
        payment = world.pay(ALLOWED, "51.00", "card")
    posting = world.posting(payment)
    assert posting.state == PostingState.UNCONFIRMED
    with deliver():
        said = _act(person, "post_unconfirmed", posting)
    assert any("may still land" in m for m in said), said
    assert Posting.objects.get(pk=posting.pk).state == PostingState.UNCONFIRMED
    assert len(world.entries(payment.batch.batch_id)) == 1
