"""The outbox's edges: a person's retry after an unknown outcome, held connections, reversals
whose payment is never posted, attempts that never finish, the timing chain, a broker that is
down when a payment is taken.

Every test here failed before its fix (docs/reliability.md, "How"). The fake provider's remote
refuses a second entry for a key (``DUPLICATE``), so a blind second write shows up as that.
"""

from __future__ import annotations

import datetime as dt
import logging
from unittest import mock

import pytest
from django.core.checks import Error, Warning
from django.utils import timezone

from integrations import outbox, tasks
from integrations.checks import check_timeouts
from integrations.models import (
    Connection,
    FakeRemoteEntry,
    Posting,
    PostingAttempt,
    PostingState,
)
from integrations.providers.fake import FakeProvider
from rentplatform import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def manual(settings):
    """Postings are delivered by the test itself (what the worker and the sweep do)."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    return settings


@pytest.fixture
def no_check(monkeypatch):
    """The connection cannot check unattended (AMSI without the "duplicates refused"
    confirmation): an unknown outcome waits for a person."""
    monkeypatch.setattr(FakeProvider, "checks_unknown_outcomes", lambda self, posting=None: False)


def _wait(settings, seconds):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "UNKNOWN_OUTCOME_DELAY_SECONDS": seconds}


def _pay(lease, amount="100.00", **kwargs):
    payment = services.accept_payment(lease, amount, "card", **kwargs)
    return Posting.objects.filter(payment=payment, kind="payment").first()


def _die_mid_call(posting, *, expired_for=1.0):
    """A worker claims the posting, its write lands, and it dies before recording anything;
    its claim expired ``expired_for`` seconds ago."""
    posting, _attempt = outbox.claim(posting.pk)
    posting.connection.get_provider().post_payment(posting)
    Posting.objects.filter(pk=posting.pk).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=expired_for)
    )
    posting.refresh_from_db()
    return posting


# -- 1. a person's retry after an unknown outcome --


def test_retry_of_an_expired_claim_checks_before_writing(connection, lease, manual):
    posting = _die_mid_call(_pay(lease))
    outbox.retry(posting)
    assert outbox.deliver(posting.pk) == PostingState.POSTED
    posting.refresh_from_db()
    last = posting.attempt_log.last()
    assert last.checked_first and last.outcome == "found_posted", posting.last_error
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_retry_of_an_expired_claim_waits_the_unknown_outcome_delay(
    connection, lease, manual, settings
):
    _wait(settings, 45)
    posting = _die_mid_call(_pay(lease))
    deadline = posting.claimed_until
    when = outbox.retry(posting)
    posting.refresh_from_db()
    assert posting.state == PostingState.RETRYING and posting.outcome_unknown
    assert when == posting.next_attempt_at == deadline + dt.timedelta(seconds=45)
    assert not outbox.due_postings().filter(pk=posting.pk).exists()
    assert outbox.deliver(posting.pk) is None
    assert outbox.deliver(posting.pk, force=True) is None  # not even forced
    assert posting.attempt_log.count() == 1
    # Once the wait is over the sweep sends it: checked first, found.
    Posting.objects.filter(pk=posting.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )
    _wait(settings, 0)
    assert outbox.deliver(posting.pk) == PostingState.POSTED
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_retry_of_an_expired_claim_without_a_check_asks_a_person(
    connection, lease, manual, settings, no_check
):
    _wait(settings, 45)
    posting = _die_mid_call(_pay(lease))
    with pytest.raises(outbox.NotAllowed, match="may already be in the accounting system"):
        outbox.retry(posting)
    posting.refresh_from_db()
    assert posting.state == PostingState.UNCONFIRMED and posting.outcome_unknown
    assert outbox.deliver(posting.pk, force=True) is None
    # "Not there, post it" is refused until the dead attempt's claim deadline + the wait.
    with pytest.raises(outbox.NotAllowed, match="may still land"):
        outbox.post_unconfirmed(posting, who="manager")
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_retry_of_an_unknown_outcome_respects_the_wait(connection, lease, manual, settings):
    _wait(settings, 45)
    connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
    connection.save()
    posting = _pay(lease)
    assert outbox.deliver(posting.pk) == PostingState.RETRYING
    posting.refresh_from_db()
    finished = posting.attempt_log.last().finished_at
    assert posting.outcome_unknown
    when = outbox.retry(posting)
    posting.refresh_from_db()
    assert when == posting.next_attempt_at == finished + dt.timedelta(seconds=45)
    assert outbox.deliver(posting.pk) is None
    assert posting.attempt_log.count() == 1


def test_forced_delivery_respects_the_unknown_outcome_wait(connection, lease, manual, settings):
    _wait(settings, 45)
    connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
    connection.save()
    posting = _pay(lease)
    assert outbox.deliver(posting.pk) == PostingState.RETRYING
    assert outbox.deliver(posting.pk, force=True) is None
    assert outbox.claim(posting.pk, force=True) is None
    assert Posting.objects.get(pk=posting.pk).attempt_log.count() == 1


def test_a_claim_taken_over_too_early_waits(connection, lease, manual, settings):
    """The sweep finds a claim that expired a second ago: its write may still be landing."""
    _wait(settings, 45)
    posting = _die_mid_call(_pay(lease))
    deadline = posting.claimed_until
    assert outbox.deliver(posting.pk) is None
    posting.refresh_from_db()
    assert posting.state == PostingState.RETRYING and posting.outcome_unknown
    assert posting.next_attempt_at == deadline + dt.timedelta(seconds=45)
    assert posting.attempt_log.count() == 1


# -- 3. held by a disabled connection --


def test_disabled_connection_holds_postings_until_enabled(
    connection, lease, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=connection.pk).update(enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        payment = services.accept_payment(lease, "100.00", "card")
        second = services.accept_payment(lease, "40.00", "card")
        reversal = services.void_payment(second)
    postings = Posting.objects.filter(payment__in=[payment, second])
    assert postings.count() == 3  # two payments and the void: written, held
    assert set(postings.values_list("state", flat=True)) == {PostingState.PENDING}
    assert FakeRemoteEntry.objects.count() == 0
    for posting in postings:
        assert outbox.deliver(posting.pk) is None
        assert outbox.claim(posting.pk, force=True) is None
    assert not outbox.due_postings().exists()
    assert outbox.sweep() == 0
    assert PostingAttempt.objects.count() == 0

    connection.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.enable_connection(connection) == 3
    assert set(Posting.objects.values_list("state", flat=True)) == {PostingState.POSTED}
    assert FakeRemoteEntry.objects.count() == 3
    assert FakeRemoteEntry.objects.filter(key=reversal.reference.hex).exists()


# -- 4. a reversal whose payment is never posted --


def test_reversal_of_a_payment_without_posting_needs_attention_at_once(lease, manual):
    payment = services.accept_payment(lease, "100.00", "card")  # before the connection existed
    Connection.objects.create(property=lease.property, provider="fake")
    reversal = services.void_payment(payment)
    rp = Posting.objects.get(reversal=reversal)
    assert outbox.deliver(rp.pk) == PostingState.NEEDS_ATTENTION
    rp.refresh_from_db()
    assert rp.last_error.startswith(f"its payment {payment.short_id} is not posted")
    assert "no posting" in rp.last_error
    assert rp.attempts == 0 and rp.attempt_log.count() == 0
    assert FakeRemoteEntry.objects.count() == 0


def test_waiting_reversal_spends_nothing_waits_longer_and_gives_up(
    connection, lease, manual, settings
):
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "RETRY_BACKOFF_SECONDS": [5, 60, 3600],
        "PAYMENT_WAIT_SECONDS": 7200,
    }
    payment = services.accept_payment(lease, "100.00", "card")
    reversal = services.void_payment(payment)
    rp = Posting.objects.get(reversal=reversal)
    delays = []
    for waited in (0, 100, 1000):
        Posting.objects.filter(pk=rp.pk).update(next_attempt_at=None)
        if waited:
            Posting.objects.filter(pk=rp.pk).update(
                waiting_since=timezone.now() - dt.timedelta(seconds=waited)
            )
        before = timezone.now()
        assert outbox.deliver(rp.pk) == PostingState.RETRYING
        rp.refresh_from_db()
        assert rp.error_code == outbox.WAITING_FOR_PAYMENT
        delays.append((rp.next_attempt_at - before).total_seconds())
    assert delays[0] == pytest.approx(5, abs=1)
    assert delays[1] == pytest.approx(100, abs=1)
    assert delays[2] == pytest.approx(1000, abs=1)
    assert rp.attempts == 0 and rp.attempt_log.count() == 0  # no attempt spent, none logged
    # Bounded: past PAYMENT_WAIT_SECONDS it needs attention, saying why.
    Posting.objects.filter(pk=rp.pk).update(
        next_attempt_at=None, waiting_since=timezone.now() - dt.timedelta(seconds=7201)
    )
    assert outbox.deliver(rp.pk) == PostingState.NEEDS_ATTENTION
    rp.refresh_from_db()
    assert rp.last_error.startswith(f"its payment {payment.short_id} is not posted: still pending")
    assert rp.attempt_log.count() == 0
    assert FakeRemoteEntry.objects.count() == 0


def test_reversal_waits_for_an_unconfirmed_payment_and_follows_it(
    connection, lease, manual, no_check
):
    connection.settings = {"fail": {"mode": "lost_reply", "count": 1}}
    connection.save()
    payment = services.accept_payment(lease, "100.00", "card")
    paid = Posting.objects.get(payment=payment, kind="payment")
    assert outbox.deliver(paid.pk) == PostingState.UNCONFIRMED
    reversal = services.void_payment(payment)
    rp = Posting.objects.get(reversal=reversal)
    assert outbox.deliver(rp.pk) == PostingState.RETRYING
    rp.refresh_from_db()
    assert "unconfirmed" in rp.last_error and rp.waiting_since is not None
    outbox.mark_found(paid, receipt="R-1", who="manager")
    Posting.objects.filter(pk=rp.pk).update(next_attempt_at=None)
    assert outbox.deliver(rp.pk) == PostingState.POSTED
    rp.refresh_from_db()
    assert rp.waiting_since is None and rp.attempts == 1


def _reversal_looking_again_in(lease, settings, seconds):
    """A voided payment whose posting is not posted, and its reversal, which has waited
    ``seconds`` already: its next look is as far away (the waits grow)."""
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "RETRY_BACKOFF_SECONDS": [5, 60, 3600],
        "PAYMENT_WAIT_SECONDS": 7200,
    }
    payment = services.accept_payment(lease, "100.00", "card")
    paid = Posting.objects.get(payment=payment, kind="payment")
    rp = Posting.objects.get(reversal=services.void_payment(payment))
    Posting.objects.filter(pk=rp.pk).update(
        waiting_since=timezone.now() - dt.timedelta(seconds=seconds)
    )
    assert outbox.deliver(rp.pk) == PostingState.RETRYING
    rp.refresh_from_db()
    assert rp.next_attempt_at > timezone.now() + dt.timedelta(seconds=seconds - 100)
    return paid, rp


def test_a_waiting_reversal_goes_as_soon_as_its_payment_posts(
    connection, lease, manual, settings, django_capture_on_commit_callbacks
):
    """Not at its next look, up to an hour away after a long wait: the payment's posting
    queues it once it is posted (here the queued task runs at once, as DELIVERY=sync)."""
    paid, rp = _reversal_looking_again_in(lease, settings, 1000)
    said = rp.connection.get_provider().explain(rp)  # what the console says meanwhile
    assert said.what_to_do == "Nothing yet: it is sent by itself as soon as the payment is posted."
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "sync"}
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.deliver(paid.pk) == PostingState.POSTED
    rp.refresh_from_db()
    assert rp.state == PostingState.POSTED, rp.last_error
    assert rp.waiting_since is None and rp.attempts == 1
    assert FakeRemoteEntry.objects.filter(key=rp.key).count() == 1
    assert FakeRemoteEntry.objects.filter(key=paid.key).count() == 1


def test_a_waiting_reversal_goes_once_a_person_finds_its_payment(
    connection, lease, manual, settings, no_check, django_capture_on_commit_callbacks
):
    paid, rp = _reversal_looking_again_in(lease, settings, 1000)
    Posting.objects.filter(pk=paid.pk).update(state=PostingState.UNCONFIRMED)
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "sync"}
    with django_capture_on_commit_callbacks(execute=True):
        outbox.mark_found(paid, receipt="R-7", who="manager")
    rp.refresh_from_db()
    assert rp.state == PostingState.POSTED, rp.last_error


def test_a_waiting_reversal_stops_for_a_person_as_soon_as_its_payment_is_abandoned(
    connection, lease, manual, settings, django_capture_on_commit_callbacks
):
    paid, rp = _reversal_looking_again_in(lease, settings, 1000)
    Posting.objects.filter(pk=paid.pk).update(
        state=PostingState.NEEDS_ATTENTION, last_error="refused"
    )
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "sync"}
    with django_capture_on_commit_callbacks(execute=True):
        outbox.abandon(paid, who="manager", note="voided before it reached the ledger")
    rp.refresh_from_db()
    assert rp.state == PostingState.NEEDS_ATTENTION
    assert rp.error_code == outbox.PAYMENT_ABANDONED
    assert FakeRemoteEntry.objects.count() == 0


def test_a_posted_payment_that_was_not_reversed_looks_for_no_reversal(
    connection, lease, manual, django_capture_on_commit_callbacks
):
    """The wake costs the common payment nothing: no statement looks for reversals."""
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    posting = _pay(lease)
    with CaptureQueriesContext(db) as queries, django_capture_on_commit_callbacks(execute=True):
        assert outbox.deliver(posting.pk) == PostingState.POSTED
    assert not [q["sql"] for q in queries if outbox.WAITING_FOR_PAYMENT in q["sql"]]
    # ... where a reversed one does (the test above it checks what it queues).
    rp = Posting.objects.get(reversal=services.void_payment(posting.payment))
    posting.refresh_from_db()
    with CaptureQueriesContext(db) as queries:
        assert outbox.wake_waiting_reversals(posting) == 0  # rp never waited: not queued
    assert [q["sql"] for q in queries if outbox.WAITING_FOR_PAYMENT in q["sql"]]
    assert Posting.objects.get(pk=rp.pk).state == PostingState.PENDING


def test_a_waiting_reversal_does_not_hold_a_worker(connection, lease, settings):
    """A real worker waits inline for a retry due within seconds; not for a reversal whose
    payment is not posted (it would sleep, re-queue, and sleep again)."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payment = services.accept_payment(lease, "100.00", "card")
    rp = Posting.objects.get(reversal=services.void_payment(payment))
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS,
        "DELIVERY": "async",
        "RETRY_BACKOFF_SECONDS": [3],
    }
    with mock.patch("integrations.tasks.time.sleep") as sleep:
        assert tasks.deliver_posting(rp.pk) == PostingState.RETRYING
    sleep.assert_not_called()


# -- 5. attempts that never finish --


def _claim_and_die(posting_id):
    claimed = outbox.claim(posting_id)
    if claimed is None:
        return False
    Posting.objects.filter(pk=posting_id).update(
        claimed_until=timezone.now() - dt.timedelta(seconds=1)
    )
    return True


def test_attempts_that_never_finish_count_against_the_budget(connection, lease, manual, settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "MAX_ATTEMPTS": 3}
    posting = _pay(lease)
    runs = [_claim_and_die(posting.pk) for _ in range(5)]
    assert runs == [True, True, True, False, False]
    posting.refresh_from_db()
    assert posting.state == PostingState.NEEDS_ATTENTION
    assert posting.last_error.startswith("gave up after 3 attempts")
    assert "never finished" in posting.last_error
    assert not outbox.due_postings().filter(pk=posting.pk).exists()
    # A person's retry gives a fresh budget; the next attempt checks first.
    outbox.retry(posting)
    assert outbox.deliver(posting.pk) == PostingState.POSTED
    assert Posting.objects.get(pk=posting.pk).attempt_log.last().checked_first


def test_exhausted_attempts_without_a_check_go_to_a_person(
    connection, lease, manual, settings, no_check
):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "MAX_ATTEMPTS": 1}
    posting = _pay(lease)
    assert _claim_and_die(posting.pk)
    assert outbox.claim(posting.pk) is None
    posting.refresh_from_db()
    assert posting.state == PostingState.UNCONFIRMED
    assert "may have been written" in posting.last_error


@pytest.mark.parametrize(
    "q_cluster,claim,check_id",
    [
        ({"timeout": 90, "retry": 80}, 105, "integrations.E001"),
        ({"timeout": 90, "retry": 120}, 80, "integrations.E003"),
        ({"timeout": 90, "retry": 120}, 130, "integrations.E004"),
        ({"retry": 120}, 105, "integrations.E005"),
    ],
)
def test_a_broken_timing_chain_is_an_error(settings, q_cluster, claim, check_id):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, **q_cluster}
    if "timeout" not in q_cluster:
        settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "timeout"}
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "CLAIM_SECONDS": claim}
    found = [m for m in check_timeouts(None) if m.id == check_id]
    assert found and all(isinstance(m, Error) for m in found)


def test_the_configured_chain_holds(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 120}
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "CLAIM_SECONDS": 105}
    assert check_timeouts(None) == []


def test_a_connection_whose_timeout_breaks_the_chain_is_warned(connection, settings):
    from integrations.checks import check_connection_timeouts

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 120}
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "RETRY_BACKOFF_SECONDS": [5, 60]}
    connection.settings = {"timeout": 50}
    connection.save()
    (warning,) = check_connection_timeouts(None)
    assert isinstance(warning, Warning) and warning.id == "integrations.W002"
    assert "2 x 50 s" in warning.msg and "105 s" in warning.msg and "90 s" in warning.msg
    assert "less than 42.5 s" in warning.msg
    connection.settings = {"timeout": 20}
    connection.save()
    assert check_connection_timeouts(None) == []


def _amsi_form(lease, timeout):
    from integrations_amsi.forms import AmsiConnectionForm

    return AmsiConnectionForm(
        data={
            "property": str(lease.property.pk),
            "enabled": "on",
            "url": "http://127.0.0.1:9/edexweb/esite",
            "portfolio": "DEMO",
            "user_id": "u",
            "password": "pw-123456",
            "property_id": "001",
            "merchant_id": "1",
            "close_cutoff": "22:00",
            "time_zone": "America/Chicago",
            "timeout": str(timeout),
        }
    )


def test_amsi_form_refuses_a_timeout_that_breaks_the_chain(lease, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 120}
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "RETRY_BACKOFF_SECONDS": [5, 60]}
    form = _amsi_form(lease, 50)
    assert not form.is_valid()
    (message,) = form.errors["timeout"]
    assert "50 s is too long" in message and "2 x 50 s" in message
    assert "Q_CLUSTER['timeout'] = 90 s" in message and "less than 42.5 s" in message
    assert "less than 42.5 s" in form.fields["timeout"].help_text
    assert _amsi_form(lease, 42).is_valid(), _amsi_form(lease, 42).errors
    # A shorter task timeout (a test cluster) lowers the limit with it.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 30, "retry": 40}
    assert "less than 12.5 s" in _amsi_form(lease, 20).errors["timeout"][0]


# -- 6. the broker is down when a payment is taken --


def test_broker_down_after_commit_leaves_the_payment_and_a_posting_for_the_sweep(
    connection, lease, settings, django_capture_on_commit_callbacks, caplog
):
    """A broker outage cannot be produced safely in-process (the ORM broker shares the test
    database; there is no Redis here), so django-q2's async_task is made to raise as it does
    when Redis refuses the connection."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async"}
    down = ConnectionError("Error 111 connecting to redis:6379. Connection refused.")
    with mock.patch("django_q.tasks.async_task", side_effect=down):
        with caplog.at_level(logging.WARNING, logger="integrations.outbox"):
            with django_capture_on_commit_callbacks(execute=True):
                payment = services.accept_payment(lease, "100.00", "card")
    payment.refresh_from_db()  # committed
    posting = Posting.objects.get(payment=payment)
    assert posting.state == PostingState.PENDING and posting.enqueued_at is None
    assert outbox.sweepable_postings().filter(pk=posting.pk).exists()
    assert f"posting {posting.pk}" in caplog.text and "retry sweep" in caplog.text
    # The sweep queues it once the broker is back.
    with mock.patch("django_q.tasks.async_task") as queued:
        assert outbox.sweep() == 1
    queued.assert_called_once()
