"""Drains: a new posting is delivered by its connection's drain task, not a task of its own.

Why: on a rent-day burst a django-q2 task per posting cost the machine more than the posting
itself (docs/performance.md, "Drains"). A drain is one task that delivers its connection's
pending postings one after another, each through ``deliver`` as before (claim, call, finish:
the exactly-once guard is unchanged, so a drain that runs twice, or two drains at once, can
never send a posting twice; at worst one finds a posting already claimed and goes on).

The rule that loses nothing (``ConnectionDrain.queued_at``: "a drain is queued and has not
started yet"):

- A taker, once its posting is committed, looks at the flag (``poke``). Set: the drain waiting
  to start will clear it later, so it reads the postings after this commit and finds this one.
  Not set (or set so long ago that the drain must be lost): the taker sets it and queues a
  drain, in one transaction with django-q2's ORM broker. Setting it is conditional, so of two
  takers at once one queues a drain and the other sees it set.
- A drain clears the flag as it starts, before it reads any posting. From then on the next
  taker queues another drain; anything committed before the clear, this drain finds.
- A drain walks the connection's pending postings in id order from the start, each once. When
  its time is up it pokes before it ends, so whatever it leaves has a drain after it.
- Should a drain be lost anyway (a worker killed before it read anything, a broker that lost
  the task), its postings stay marked queued: the sweep pokes the connection of any posting
  still pending ``DRAIN_LOST_SECONDS`` after it was queued, and queues a task for each posting
  after ``QUEUE_GRACE_SECONDS`` as it always has.

Several drains may run for one connection at once: that is how a burst uses every worker. A
drain that starts and finds more than one posting pending queues one more drain (it waits
while every worker is busy), and a payment taken after the last drain started queues another.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from django.db import connections, router, transaction
from django.utils import timezone
from django_q import conf as q_conf

from integrations.conf import get_setting, timing_chain
from integrations.logging import mask
from integrations.models import ConnectionDrain, Posting, PostingState

from ._claims import _NEXT_PENDING
from ._common import _holds, log
from ._delivery import deliver

DRAIN_TASK = "integrations.tasks.drain_connection"
# A drain queued this long ago and not started is presumed lost: the next taker queues another
# (a spare drain costs one task that finds little; a lost one would leave postings to the sweep).
DRAIN_LOST_SECONDS = 30


def drains_enabled() -> bool:
    """Whether new postings go to drains: async delivery with ``DRAIN`` on."""
    if get_setting("DELIVERY") != "async" or q_conf.Conf.SYNC:
        return False
    return bool(get_setting("DRAIN"))


def _table_and_db():
    return ConnectionDrain._meta.db_table, connections[router.db_for_write(ConnectionDrain)]


def _drain_waiting(connection_id: int, now: dt.datetime) -> bool:
    """Whether a drain is queued for the connection and not started (nor presumed lost)."""
    table, db = _table_and_db()
    lost = now - dt.timedelta(seconds=DRAIN_LOST_SECONDS)
    with db.cursor() as cursor:
        cursor.execute(
            f'SELECT 1 FROM "{table}" WHERE "connection_id" = %s AND "queued_at" >= %s',
            [connection_id, db.ops.adapt_datetimefield_value(lost)],
        )
        return cursor.fetchone() is not None


def _take_flag(connection_id: int, now: dt.datetime) -> bool:
    """Set the flag unless a drain (not presumed lost) is already queued: True when this caller
    set it and must queue the drain. One statement (an upsert whose update is conditional), so
    of two callers at once exactly one gets True."""
    table, db = _table_and_db()
    lost = now - dt.timedelta(seconds=DRAIN_LOST_SECONDS)
    adapt = db.ops.adapt_datetimefield_value
    with db.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ("connection_id", "queued_at") VALUES (%s, %s) '
            f'ON CONFLICT ("connection_id") DO UPDATE SET "queued_at" = EXCLUDED."queued_at" '
            f'WHERE "{table}"."queued_at" IS NULL OR "{table}"."queued_at" < %s '
            f'RETURNING "connection_id"',
            [connection_id, adapt(now), adapt(lost)],
        )
        return cursor.fetchone() is not None


def _release_flag(connection_id: int, now: dt.datetime) -> None:
    """A drain that could not be queued: clear the flag this caller set, and the queued mark of
    the connection's pending postings, so that the next taker queues a drain and the sweep (once
    the broker is back) queues what a taker left to this drain."""
    ConnectionDrain.objects.filter(connection_id=connection_id, queued_at=now).update(
        queued_at=None
    )
    Posting.objects.filter(
        connection_id=connection_id, state=PostingState.PENDING, enqueued_at__isnull=False
    ).update(enqueued_at=None)


def queue_drain(connection_id: int) -> bool:
    """Make sure a drain will read the connection's postings after now: queue one unless one is
    waiting to start. Returns whether this call queued it. Raises when the broker cannot take
    it (the flag is released first)."""
    from ._queue import _queues_in_transaction, _transaction_broker, enqueue_task

    now = timezone.now()
    if _drain_waiting(connection_id, now):
        return False
    if _queues_in_transaction():
        # The flag and django-q2's task row in one commit.
        with transaction.atomic(using=router.db_for_write(ConnectionDrain)):
            if not _take_flag(connection_id, now):
                return False
            enqueue_task(
                DRAIN_TASK, connection_id, group="integrations.drains", broker=_transaction_broker()
            )
        return True
    if not _take_flag(connection_id, now):
        return False
    try:
        enqueue_task(DRAIN_TASK, connection_id, group="integrations.drains")
    except Exception:
        try:
            _release_flag(connection_id, now)
        except Exception:  # noqa: BLE001, S110  (the database is down too: the flag is presumed
            pass  # lost after DRAIN_LOST_SECONDS, and the sweep finds the postings)
        raise
    return True


def poke(connection_id: int, posting_id: int | None = None) -> bool:
    """``queue_drain`` after a posting's commit, never raising (it runs in ``on_commit``, where
    an exception would turn a taken payment into an HTTP 500). When the drain cannot be queued
    the posting's queued mark is cleared, for the retry sweep."""
    try:
        queue_drain(connection_id)
    except Exception as err:  # noqa: BLE001  (the broker is down: the sweep will queue it)
        if posting_id is not None:
            try:
                Posting.objects.filter(pk=posting_id).update(enqueued_at=None)
            except Exception:  # noqa: BLE001, S110  (the database is down too: the mark stays;
                pass  # the sweep presumes such a task lost after QUEUE_GRACE_SECONDS)
        log.warning(
            "connection %s: its drain could not be queued (%s: %s); %s waits for the retry sweep",
            connection_id,
            type(err).__name__,
            mask(str(err))[:500],
            f"posting {posting_id}" if posting_id is not None else "what is pending",
        )
        return False
    return True


def _time_allowed(posting: Posting) -> float:
    """How long (from its start) a drain may go on starting deliveries: ``DRAIN_SECONDS``, and
    never so late that one more attempt could outlast the task timeout (the timing chain: a
    drain's last attempt must end before django-q2 stops the task, as a task's only one does)."""
    from integrations.checks import connection_timeout

    allowed = float(get_setting("DRAIN_SECONDS"))
    chain = timing_chain()
    timeout = connection_timeout(posting.connection)
    if chain.task_timeout and timeout:
        allowed = min(allowed, chain.task_timeout - chain.attempt_seconds(timeout) - 1.0)
    return allowed


def drain(connection_id: int, *, after_delivery=None) -> int:
    """Deliver the connection's pending postings, oldest first, each once, until none is left or
    the drain's time is up (then the next drain is queued). Returns how many it tried.
    ``after_delivery(posting_id, state)``: what the task does after each (the inline retry).

    With a backlog, up to ``DRAIN_CONCURRENCY`` deliveries run at once (PostgreSQL; one at a
    time on SQLite): threads of this worker walking the same list, each taking the next
    posting none of them took (one cursor, advanced under a lock) on its own database
    connection. The claim still decides who sends a posting, so a walker, a second drain or
    another worker can never send one twice.
    """
    started = time.monotonic()
    ConnectionDrain.objects.filter(connection_id=connection_id).update(queued_at=None)
    walk = _Walk(connection_id, started, after_delivery)
    first = walk.next()
    if first is None or _holds(first.connection):
        # Nothing pending, or the connection is disabled or paused: its postings wait for it
        # (enabling or a passing test queues them). Each keeps its queued mark; the sweep skips
        # a held connection.
        return 0
    walk.allowed = _time_allowed(first)
    if _more_pending(connection_id, first.pk):
        # A backlog (payments taken while the workers were busy or stopped): one more drain,
        # so that every free worker joins in. Each drain that starts and finds more does the
        # same; the one queued waits while every worker is busy.
        poke(connection_id)
        helpers = _concurrency() - 1
    else:
        helpers = 0
    db = transaction.get_connection(router.db_for_write(Posting))
    if db.in_atomic_block or db.vendor == "sqlite":
        # Inside a caller's transaction, which other threads could not see; or on SQLite,
        # which lets one writer in at a time (the walkers would only queue for its lock).
        helpers = 0
    threads = [
        threading.Thread(target=walk.run_in_thread, name=f"drain-{connection_id}-{n + 1}")
        for n in range(helpers)
    ]
    for thread in threads:
        thread.start()
    try:
        walk.run(first)
    finally:
        with walk._lock:
            walk.stop = True  # the helpers end after their current delivery
        for thread in threads:
            thread.join()
    if walk.failures:
        raise walk.failures[0]
    return walk.tried


def _concurrency() -> int:
    try:
        return min(max(int(get_setting("DRAIN_CONCURRENCY")), 1), 8)
    except (TypeError, ValueError):
        return 1  # integrations.E010 says what is wrong with the setting


class _Walk:
    """One drain's walk through its connection's pending postings, shared by its threads."""

    def __init__(self, connection_id: int, started: float, after_delivery):
        self.connection_id = connection_id
        self.started = started
        self.after_delivery = after_delivery
        self.allowed = float("inf")
        self.after = 0  # the last posting taken by any walker
        self.tried = 0
        self.stop = False
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()

    def next(self) -> Posting | None:
        """The next pending posting no walker of this drain took, or None (nothing left, the
        connection held, or the drain's time is up: then the next drain is queued)."""
        with self._lock:
            if self.stop:
                return None
            posting = _NEXT_PENDING.first(self.connection_id, self.after)
            if posting is None or (self.tried and _holds(posting.connection)):
                self.stop = True
                return None
            if self.tried and time.monotonic() - self.started >= self.allowed:
                self.stop = True
                poke(self.connection_id)
                return None
            self.after = posting.pk
            self.tried += 1
            return posting

    def run(self, posting: Posting | None = None) -> None:
        posting = posting or self.next()
        while posting is not None:
            self._deliver(posting)
            posting = self.next()

    def run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as err:  # noqa: BLE001  (re-raised by the drain's own thread)
            self.failures.append(err)
            with self._lock:
                self.stop = True
        finally:
            connections.close_all()  # this thread's own database connections

    def _deliver(self, posting: Posting) -> None:
        try:
            state = deliver(posting.pk, peeked=posting)
            if self.after_delivery is not None:
                self.after_delivery(posting.pk, state)
        except Exception:  # noqa: BLE001  (logged with its traceback, below)
            # One posting's failure (deliver records the provider's own; this is a bug or a
            # database error) must not hold the connection's others: it is left as it is
            # (pending, or in flight until its claim expires) for the retry sweep.
            log.exception(
                "connection %s: drain: posting %s failed outside its attempt; left to the "
                "retry sweep, the drain goes on",
                self.connection_id,
                posting.pk,
            )


def _more_pending(connection_id: int, after: int) -> bool:
    return Posting.objects.filter(
        connection_id=connection_id, state=PostingState.PENDING, pk__gt=after
    ).exists()


def poke_lost_drains(now: dt.datetime | None = None) -> int:
    """The sweep's part: poke every connection with a posting still pending and marked queued
    ``DRAIN_LOST_SECONDS`` after it was marked (its drain was lost, or its taker stopped
    between the commit and the poke). Returns how many connections were poked."""
    if not drains_enabled():
        return 0
    now = now or timezone.now()
    ids = list(
        Posting.objects.filter(
            state=PostingState.PENDING,
            enqueued_at__lt=now - dt.timedelta(seconds=DRAIN_LOST_SECONDS),
            connection__enabled=True,
            connection__paused_at__isnull=True,
        )
        .order_by()
        .values_list("connection_id", flat=True)
        .distinct()
    )
    for connection_id in ids:
        poke(connection_id)
    return len(ids)
