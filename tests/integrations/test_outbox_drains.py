"""Drains: a new posting is delivered by its connection's drain task, a few tasks a burst
instead of one a payment, and the rule that loses nothing (integrations/outbox/_drain.py).

These run the drain task's function in the test's process against the real database and
django-q2's ORM broker (its task rows are read back and checked); real worker processes run
drains in tests/faults and bench/worker.py."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from integrations import outbox, tasks
from integrations.models import ConnectionDrain, FakeRemoteEntry, Posting, PostingState
from rentplatform import services


@pytest.fixture
def drains(settings):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": True}


def _take(lease, amount="100.00"):
    return services.accept_payment(lease, amount, "card")


def _queued() -> list[dict]:
    return [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("pk")]


def _flag(connection):
    """When the connection's waiting drain was queued; None: none waits (or no row yet)."""
    return (
        ConnectionDrain.objects.filter(connection=connection)
        .values_list("queued_at", flat=True)
        .first()
    )


def test_a_burst_queues_one_drain_which_posts_every_payment_once(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payments = [_take(lease, f"{10 + i}.00") for i in range(5)]
    (task,) = _queued()
    assert task["func"] == "integrations.tasks.drain_connection"
    assert task["args"] == (connection.pk,)
    assert task["group"] == "integrations.drains"
    postings = Posting.objects.filter(payment__in=payments)
    assert all(p.enqueued_at is not None for p in postings)
    assert _flag(connection) is not None

    OrmQ.objects.all().delete()  # taken by a worker
    assert tasks.drain_connection(*task["args"]) == 5
    for posting in Posting.objects.filter(payment__in=payments):
        assert posting.state == PostingState.POSTED, posting.last_error
        assert posting.enqueued_at is None
        assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1
    # It found a backlog as it started, so it queued one more drain for a free worker to join.
    (more,) = _queued()
    assert more["func"] == "integrations.tasks.drain_connection"
    assert _flag(connection) is not None
    # That one (or the same task delivered twice by django-q2) finds nothing left to send.
    assert tasks.drain_connection(connection.pk) == 0
    assert _flag(connection) is None  # cleared as it started
    assert FakeRemoteEntry.objects.count() == 5


def test_a_payment_after_the_drain_started_queues_the_next_drain(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _take(lease)
    assert len(_queued()) == 1
    taken_during = []

    def take_another(posting_id, state):
        # A payment committed while the drain runs (after it cleared the flag).
        if not taken_during:
            with django_capture_on_commit_callbacks(execute=True):
                taken_during.append(_take(lease, "7.00"))

    assert outbox.drain(connection.pk, after_delivery=take_another) == 2
    # The drain found it (its id is after the one it was on) and a second drain was queued
    # for it, as the taker cannot know the running drain will see it.
    later = Posting.objects.get(payment=taken_during[0])
    assert later.state == PostingState.POSTED
    assert [t["func"] for t in _queued()] == ["integrations.tasks.drain_connection"] * 2
    assert tasks.drain_connection(connection.pk) == 0
    assert FakeRemoteEntry.objects.filter(key=later.key).count() == 1


@pytest.mark.django_db(transaction=True)
def test_taking_a_payment_while_a_drain_waits_writes_nothing_after_its_commit(
    connection, lease, drains
):
    """With a drain waiting to start, a payment taken is its own transaction and one read of
    the flag; with none, the flag and the drain's task row are one more commit."""
    with CaptureQueriesContext(db) as first:
        _take(lease)
    with CaptureQueriesContext(db) as second:
        _take(lease, "20.00")
    commits = [q["sql"] for q in first.captured_queries if q["sql"].startswith("COMMIT")]
    assert len(commits) == 2, [q["sql"] for q in first.captured_queries]
    sql = [q["sql"] for q in second.captured_queries]
    last_commit = max(i for i, text in enumerate(sql) if text.startswith("COMMIT"))
    after = sql[last_commit + 1 :]
    assert len(after) == 1 and after[0].startswith("SELECT 1 FROM"), after
    assert not any("django_q_ormq" in text for text in sql)
    assert len(_queued()) == 1


def test_a_drain_presumed_lost_is_queued_again(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = _take(lease)
    assert len(_queued()) == 1
    # Its task never started (a broker that lost it): after DRAIN_LOST_SECONDS the next
    # payment queues another.
    long_ago = timezone.now() - dt.timedelta(seconds=outbox.DRAIN_LOST_SECONDS + 1)
    ConnectionDrain.objects.filter(connection=connection).update(queued_at=long_ago)
    Posting.objects.filter(payment=first).update(enqueued_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        _take(lease, "20.00")
    assert len(_queued()) == 2
    # With no new payment, the sweep pokes the connection of a posting left that long.
    OrmQ.objects.all().delete()
    ConnectionDrain.objects.filter(connection=connection).update(queued_at=long_ago)
    assert outbox.sweep() == 0  # no posting is old enough for a task of its own
    (task,) = _queued()
    assert task["func"] == "integrations.tasks.drain_connection"
    assert tasks.drain_connection(connection.pk) == 2
    assert Posting.objects.filter(state=PostingState.POSTED).count() == 2


def test_a_drain_that_cannot_be_queued_leaves_the_posting_to_the_sweep(
    connection, lease, drains, django_capture_on_commit_callbacks, caplog
):
    with mock.patch("django_q.tasks.async_task", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            payment = _take(lease)
    posting = Posting.objects.get(payment=payment)
    assert posting.state == PostingState.PENDING and posting.enqueued_at is None
    assert _flag(connection) is None  # released: the next taker queues a drain
    assert f"connection {connection.pk}: its drain could not be queued" in caplog.text
    assert f"posting {posting.pk} waits for the retry sweep" in caplog.text
    assert "broker down" in caplog.text
    assert outbox.sweep() == 1  # the posting's own task, once the broker is back
    assert [t["func"] for t in _queued()] == ["integrations.tasks.deliver_posting"]


def test_a_posting_another_worker_holds_is_skipped_not_sent_again(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        held, free = _take(lease), _take(lease, "20.00")
    held_posting = Posting.objects.get(payment=held)
    # Claimed by another drain between this drain's read and its claim: the read saw it
    # pending; the conditional claim finds it changed and the locked claim leaves it alone.
    stale = outbox._claims._NEXT_PENDING.first(connection.pk, 0)
    assert stale.pk == held_posting.pk
    assert outbox.claim(held_posting.pk) is not None
    assert outbox.deliver(stale.pk, peeked=stale) is None
    assert tasks.drain_connection(connection.pk) == 1  # the free one; the held one is in flight
    assert Posting.objects.get(payment=free).state == PostingState.POSTED
    assert Posting.objects.get(pk=held_posting.pk).state == PostingState.IN_FLIGHT
    assert not FakeRemoteEntry.objects.filter(key=held_posting.key).exists()


def test_a_drain_out_of_time_queues_the_next_one(
    connection, lease, drains, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payments = [_take(lease, f"{10 + i}.00") for i in range(3)]
    OrmQ.objects.all().delete()
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DRAIN_SECONDS": 0}
    assert tasks.drain_connection(connection.pk) == 1  # the first delivery is always made
    (task,) = _queued()
    assert task["func"] == "integrations.tasks.drain_connection"
    states = [Posting.objects.get(payment=p).state for p in payments]
    assert states == [PostingState.POSTED, PostingState.PENDING, PostingState.PENDING]


def test_a_drain_leaves_a_disabled_connections_postings_waiting(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payment = _take(lease)
    connection.enabled = False
    connection.save()
    assert tasks.drain_connection(connection.pk) == 0
    posting = Posting.objects.get(payment=payment)
    assert posting.state == PostingState.PENDING and not FakeRemoteEntry.objects.exists()


def test_a_void_after_its_payment_goes_through_a_drain(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payment = _take(lease)
        tasks.drain_connection(connection.pk)
        reversal = services.void_payment(payment)
    reversal_posting = Posting.objects.get(reversal=reversal)
    assert reversal_posting.state == PostingState.PENDING
    assert tasks.drain_connection(connection.pk) == 1
    reversal_posting.refresh_from_db()
    assert reversal_posting.state == PostingState.POSTED, reversal_posting.last_error


def test_drains_are_off_outside_async_delivery_and_by_setting(settings, monkeypatch):
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": True}
    assert outbox.drains_enabled()
    monkeypatch.setenv("INTEGRATIONS_DRAIN", "off")
    assert not outbox.drains_enabled()
    monkeypatch.delenv("INTEGRATIONS_DRAIN")
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "sync"}
    assert not outbox.drains_enabled()


def test_enabling_a_connection_leaves_its_held_payments_to_one_drain(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    connection.enabled = False
    connection.save()
    with django_capture_on_commit_callbacks(execute=True):
        payments = [_take(lease, f"{10 + i}.00") for i in range(3)]
    assert not OrmQ.objects.exists()
    assert not Posting.objects.filter(enqueued_at__isnull=False).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.enable_connection(connection) == 3
    assert [t["func"] for t in _queued()] == ["integrations.tasks.drain_connection"]
    assert Posting.objects.filter(enqueued_at__isnull=False).count() == 3
    assert tasks.drain_connection(connection.pk) == 3
    for payment in payments:
        posting = Posting.objects.get(payment=payment)
        assert posting.state == PostingState.POSTED, posting.last_error
        assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_a_drain_starts_no_attempt_that_could_outlast_its_task(
    connection, lease, drains, settings, django_capture_on_commit_callbacks
):
    """The timing chain: a drain's last attempt must end before django-q2 stops the task,
    as a task's only attempt does (integrations/conf.py)."""
    from integrations.outbox._drain import _time_allowed

    with django_capture_on_commit_callbacks(execute=True):
        payment = _take(lease)
    posting = Posting.objects.select_related("connection").get(payment=payment)
    assert _time_allowed(posting) == 10  # DRAIN_SECONDS: no per-call timeout to fit
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 20}
    connection.settings = {**connection.settings, "timeout": 5}
    connection.save()
    posting = Posting.objects.select_related("connection").get(payment=payment)
    # One attempt: 2 calls x 5 s + the inline wait (0 here: RETRY_BACKOFF_SECONDS is [0]).
    assert _time_allowed(posting) == 20 - 10 - 1
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DRAIN_SECONDS": 3}
    assert _time_allowed(posting) == 3


def test_with_another_broker_a_drain_that_cannot_be_queued_releases_the_flag(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    """Redis (any broker but the ORM one on the postings' database) is called after the
    flag's own commit: a refused task releases the flag it set and the marks of the postings
    left to it (so the next taker queues a drain, and the sweep the postings)."""
    with mock.patch("django_q.conf.Conf.ORM", None):
        with mock.patch("django_q.tasks.async_task") as queued:
            with django_capture_on_commit_callbacks(execute=True):
                first = _take(lease)
                second = _take(lease, "20.00")
        queued.assert_called_once()  # the second taker saw the flag set
        assert queued.call_args.args == ("integrations.tasks.drain_connection", connection.pk)
        assert _flag(connection) is not None
        # That drain was never queued after all (say the broker lost it), then the flag is
        # presumed lost and the next taker's broker refuses.
        long_ago = timezone.now() - dt.timedelta(seconds=outbox.DRAIN_LOST_SECONDS + 1)
        ConnectionDrain.objects.filter(connection=connection).update(queued_at=long_ago)
        with mock.patch("django_q.tasks.async_task", side_effect=ConnectionError("down")):
            with django_capture_on_commit_callbacks(execute=True):
                third = _take(lease, "30.00")
    assert _flag(connection) is None
    marks = Posting.objects.filter(payment__in=[first, second, third]).values_list(
        "enqueued_at", flat=True
    )
    assert list(marks) == [None, None, None]
    assert outbox.sweep() == 3  # each its own task, once the broker is back


def test_the_sweep_leaves_a_backlog_to_a_drain_waiting_to_start(
    connection, lease, drains, django_capture_on_commit_callbacks
):
    """A long backlog (payments marked longer ago than QUEUE_GRACE_SECONDS) with a drain
    queued for its connection: a task of its own for each posting would only add tasks. Once
    that drain is presumed lost, the sweep queues a task for each, as for any lost task."""
    with django_capture_on_commit_callbacks(execute=True):
        payments = [_take(lease, f"{10 + i}.00") for i in range(3)]
    long_ago = timezone.now() - dt.timedelta(seconds=301)
    Posting.objects.filter(payment__in=payments).update(enqueued_at=long_ago)
    OrmQ.objects.all().delete()
    ConnectionDrain.objects.filter(connection=connection).update(queued_at=timezone.now())
    assert outbox.sweep() == 0
    assert not OrmQ.objects.exists()
    ConnectionDrain.objects.filter(connection=connection).update(
        queued_at=timezone.now() - dt.timedelta(seconds=outbox.DRAIN_LOST_SECONDS + 1)
    )
    assert outbox.sweep() == 3
    # Marked again by their own tasks, they are no longer left to a drain.
    queued = _queued()
    assert [t["func"] for t in queued] == ["integrations.tasks.deliver_posting"] * 3
    for task in queued:
        assert tasks.deliver_posting(*task["args"]) == PostingState.POSTED
    assert tasks.drain_connection(connection.pk) == 0
    assert FakeRemoteEntry.objects.count() == 3


def test_one_posting_failing_outside_its_attempt_does_not_hold_the_others(
    connection, lease, drains, django_capture_on_commit_callbacks, caplog
):
    """A bug or a database error raised out of one delivery (deliver records a provider's own
    failures) is logged with the posting's id, and the drain goes on with the next one."""
    from integrations.outbox import _drain

    with django_capture_on_commit_callbacks(execute=True):
        poison, fine = _take(lease), _take(lease, "20.00")
    poison_posting = Posting.objects.get(payment=poison)
    real = _drain.deliver

    def deliver(posting_id, **kwargs):
        if posting_id == poison_posting.pk:
            raise RuntimeError("a bug in the finish")
        return real(posting_id, **kwargs)

    with mock.patch.object(_drain, "deliver", side_effect=deliver):
        assert tasks.drain_connection(connection.pk) == 2
    assert Posting.objects.get(payment=fine).state == PostingState.POSTED
    assert Posting.objects.get(pk=poison_posting.pk).state == PostingState.PENDING
    assert f"drain: posting {poison_posting.pk} failed outside its attempt" in caplog.text
    assert "a bug in the finish" in caplog.text  # the traceback


needs_concurrent_writers = pytest.mark.skipif(
    db.vendor == "sqlite", reason="SQLite drains deliver one at a time (one writer at a time)"
)


@needs_concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_walked_by_several_threads_each_posting_sent_once(connection, lease, settings):
    """DRAIN_CONCURRENCY deliveries at once: threads of the drain's worker, one cursor, each
    on its own database connection. The first two deliveries wait for each other (a barrier),
    so the test fails unless two threads deliver at the same time."""
    import threading

    from integrations.outbox import _drain

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payments = [_take(lease, f"{10 + i}.00") for i in range(12)]
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": True, "DRAIN_CONCURRENCY": 3
    }  # fmt: skip
    together = threading.Barrier(2, timeout=10)
    seen: list[tuple[int, str]] = []
    real = _drain.deliver

    def deliver(posting_id, **kwargs):
        seen.append((posting_id, threading.current_thread().name))
        if len(seen) <= 2:
            together.wait()
        return real(posting_id, **kwargs)

    with mock.patch.object(_drain, "deliver", side_effect=deliver):
        assert tasks.drain_connection(connection.pk) == 12
    assert sorted(pk for pk, _ in seen) == sorted(
        Posting.objects.filter(payment__in=payments).values_list("pk", flat=True)
    )  # each taken by one walker, none twice
    assert len({name for _, name in seen[:2]}) == 2
    assert any(name.startswith(f"drain-{connection.pk}-") for _, name in seen)
    for posting in Posting.objects.filter(payment__in=payments):
        assert posting.state == PostingState.POSTED, posting.last_error
        assert posting.attempt_log.count() == 1
        assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1
    assert FakeRemoteEntry.objects.count() == 12


@needs_concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_a_walker_thread_failing_ends_the_drain_with_its_error_after_the_others(
    connection, lease, settings
):
    """A failure outside any delivery (the next posting's read, say: the database went away)
    in a helper thread stops the walk; the drain raises it once every thread has ended, and
    what was not delivered stays pending for the next drain or the sweep."""
    from integrations.outbox import _drain

    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    payments = [_take(lease, f"{10 + i}.00") for i in range(6)]
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": True, "DRAIN_CONCURRENCY": 2
    }  # fmt: skip
    real = _drain._NEXT_PENDING.first
    import threading

    def next_pending(*args, **kwargs):
        if threading.current_thread().name.startswith("drain-"):
            raise RuntimeError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    with mock.patch.object(_drain._NEXT_PENDING, "first", side_effect=next_pending):
        with pytest.raises(RuntimeError, match="server closed the connection"):
            tasks.drain_connection(connection.pk)
    states = list(Posting.objects.filter(payment__in=payments).values_list("state", flat=True))
    assert set(states) <= {PostingState.POSTED, PostingState.PENDING}
    assert states.count(PostingState.POSTED) >= 1
    assert FakeRemoteEntry.objects.count() == states.count(PostingState.POSTED)
    assert tasks.drain_connection(connection.pk) == states.count(PostingState.PENDING)
    assert FakeRemoteEntry.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_a_drain_delivers_one_at_a_time(connection, lease, settings):
    import threading

    from integrations.outbox import _drain

    if db.vendor != "sqlite":
        pytest.skip("SQLite only")
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    for i in range(4):
        _take(lease, f"{10 + i}.00")
    settings.INTEGRATIONS = {
        **settings.INTEGRATIONS, "DELIVERY": "async", "DRAIN": True, "DRAIN_CONCURRENCY": 4
    }  # fmt: skip
    names = []
    real = _drain.deliver

    def deliver(posting_id, **kwargs):
        names.append(threading.current_thread().name)
        return real(posting_id, **kwargs)

    with mock.patch.object(_drain, "deliver", side_effect=deliver):
        assert tasks.drain_connection(connection.pk) == 4
    assert set(names) == {threading.current_thread().name}
    assert FakeRemoteEntry.objects.count() == 4


def test_drain_concurrency_out_of_range_is_a_check_error(settings):
    from integrations.checks import check_drain_concurrency

    for bad in (0, 9, "2", 1.5, True):
        settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DRAIN_CONCURRENCY": bad}
        (error,) = check_drain_concurrency(None)
        assert error.id == "integrations.E010" and repr(bad) in error.msg
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DRAIN_CONCURRENCY": 4}
    assert check_drain_concurrency(None) == []
