"""Writing postings with their event, queueing their delivery, and the retry sweep."""

from __future__ import annotations

import datetime as dt
import os

from django.db import connections, router, transaction
from django.db.models import Q, Subquery
from django.utils import timezone
from django_q import brokers as q_brokers
from django_q import conf as q_conf
from django_q import tasks as q_tasks

from integrations.conf import get_setting
from integrations.logging import mask
from integrations.models import Connection, Posting, PostingKind, PostingState
from rentplatform.models.payment import REVERSED_STATES
from rentplatform.prepared import Prepared, insert_fields, insert_params, insert_row

from ._common import _holds, log
from ._delivery import WAITING_FOR_PAYMENT
from ._drain import DRAIN_LOST_SECONDS, drains_enabled, poke, poke_lost_drains

# The property's connection and the payment's posting if it has one, in one read: made for
# every payment taken, so compiled once (rentplatform/prepared.py).
_CONNECTION_AND_PAYMENT_POSTING = Prepared(
    lambda property_id, payment_id: (
        Connection.objects.filter(property_id=property_id)
        .annotate(
            _existing=Subquery(
                Posting.objects.filter(payment_id=payment_id, kind=PostingKind.PAYMENT)
                .order_by()
                .values("pk")[:1]
            )
        )
        .order_by("pk")[:1]
    )
)


def create_payment_posting(payment, *, connection: Connection | None = None) -> Posting | None:
    """Called inside the payment's transaction; idempotent (one posting per payment)."""
    return _create_posting(
        payment.batch.property_id,
        connection,
        {"payment": payment, "kind": PostingKind.PAYMENT},
        {"key": payment.reference.hex},
    )


def create_reversal_posting(reversal, *, connection: Connection | None = None) -> Posting | None:
    """Called inside the reversal's transaction; idempotent (one posting per reversal)."""
    return _create_posting(
        reversal.batch.property_id,
        connection,
        {"reversal": reversal, "kind": PostingKind.REVERSAL},
        {"payment": reversal.payment, "key": reversal.reference.hex},
    )


def _create_posting(property_id, connection: Connection | None, lookup: dict, defaults: dict):
    """The posting for ``lookup``, written once (a repeated signal finds it), queued unless its
    connection holds it; None when the property has no connection.

    Called in the transaction that wrote the payment or reversal, which nobody else can see
    yet. A payment's posting on an enabled connection is one ``INSERT ... SELECT`` from the
    connection (``_insert_payment_posting``); otherwise a plain read then insert (no
    savepoint) is enough, and the connection and an existing posting are read in one query.
    A posting to be queued is written already marked queued, and handed on by ``_queue_new``:
    to its connection's drain after the commit (``_drain.poke``). With drains off, and django-q2's
    ORM broker on the same database, its own task row is written here, in the same transaction
    (one commit per payment, and no task without its posting nor the reverse); with any other
    broker (or the sync path) the task is queued after the commit. Either way, if the broker
    cannot take it, the mark is cleared for the retry sweep.
    """
    if connection is None and lookup["kind"] == PostingKind.PAYMENT:
        posting = _insert_payment_posting(property_id, lookup["payment"], defaults["key"])
        if posting is not None:
            if posting.enqueued_at is not None:
                _queue_new(posting)
            return posting
        # No row written: no connection, a held one, or the posting exists. Read and decide.
        connection = _CONNECTION_AND_PAYMENT_POSTING.first(property_id, lookup["payment"].pk)
        if connection is None:
            return None
        if connection._existing is not None:
            return Posting.objects.get(pk=connection._existing)
    elif connection is None:
        connection = (
            Connection.objects.filter(property_id=property_id)
            .annotate(_existing=Subquery(Posting.objects.filter(**lookup).values("pk")[:1]))
            .first()
        )
        if connection is None:
            return None
        if connection._existing is not None:
            return Posting.objects.get(pk=connection._existing)
    else:
        existing = Posting.objects.filter(**lookup).first()
        if existing is not None:
            return existing
    queue = not _holds(connection) and get_setting("DELIVERY") != "manual"
    # Written without Model.save (rentplatform/prepared.py): a new row (the abandoned guard
    # of Posting.save concerns loaded ones), and nothing listens to its save signals.
    posting = insert_row(
        Posting(
            **lookup,
            connection=connection,
            enqueued_at=timezone.now() if queue else None,
            **defaults,
        )
    )
    posting._loaded_state = posting.state
    if queue:
        _queue_new(posting)
    return posting


def _queue_new(posting: Posting) -> None:
    """A new posting, written marked queued, in the transaction that wrote it: its connection's
    drain is poked once it is committed (``_drain``), or, without drains, its own task is
    written in this transaction (ORM broker) or queued after the commit."""
    if drains_enabled():
        transaction.on_commit(lambda: poke(posting.connection_id, posting.pk))
    elif not _enqueue_in_transaction(posting.pk):
        transaction.on_commit(lambda: enqueue(posting.pk, marked=True))


_INSERT_SQL: dict[str, str] = {}


def _insert_payment_posting(property_id: int, payment, key: str) -> Posting | None:
    """A payment's posting in one statement, the common case: ``INSERT ... SELECT`` from the
    property's connection when it is enabled and not paused, written already marked queued
    (unless DELIVERY is manual), ``ON CONFLICT DO NOTHING`` for a repeated signal. Returns
    it (its connection not loaded), or None when no row was written: the property has no
    connection, it holds its postings, or the payment has its posting already."""
    using = router.db_for_write(Posting)
    connection = connections[using]
    meta = Posting._meta
    quote = connection.ops.quote_name
    fields = insert_fields(meta)
    sql = _INSERT_SQL.get(using)
    if sql is None:
        connection_table = quote(Connection._meta.db_table)
        values = ", ".join("c.id" if f.name == "connection" else "%s" for f in fields)
        sql = _INSERT_SQL[using] = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT {values} FROM {connection_table} c "
            "WHERE c.property_id = %s AND c.enabled AND c.paused_at IS NULL "
            f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}, "
            f"{quote(meta.get_field('connection').column)}"
        )
    queued = timezone.now() if get_setting("DELIVERY") != "manual" else None
    posting = Posting(payment=payment, kind=PostingKind.PAYMENT, key=key, enqueued_at=queued)
    params = [
        value
        for f, value in zip(fields, insert_params(posting, connection), strict=True)
        if f.name != "connection"
    ]
    params.append(property_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    posting.pk, posting.connection_id = row
    posting._state.adding = False
    posting._state.db = using
    posting._loaded_state = posting.state
    return posting


def enqueue_on_commit(posting_id: int) -> None:
    transaction.on_commit(lambda: enqueue(posting_id))


_transaction_broker_class = None


def _transaction_broker():
    """django-q2's ORM broker, writing its task row in the caller's open transaction.

    The stock one calls ``close_old_connections()`` whenever it finds the connection in
    autocommit; this one is used only inside an atomic block and never closes anything. The
    task itself is built and signed by django-q2 (``async_task(broker=...)``); its row is the
    stock broker's, written by SQL built once.
    (Built on first use: django-q2's models cannot be imported before the app registry.)"""
    global _transaction_broker_class
    if _transaction_broker_class is None:
        from django_q.brokers.orm import ORM
        from django_q.models import OrmQ

        class TransactionORM(ORM):
            @staticmethod
            def get_connection(list_key: str | None = None):
                return OrmQ.objects.using(q_conf.Conf.ORM)

            def enqueue(self, task):
                # The stock one's row, by SQL built once (rentplatform/prepared.py): OrmQ has
                # no save() override and nothing listens to its signals.
                conf = q_conf.Conf
                row = OrmQ(
                    key=self.list_key or conf.CLUSTER_NAME, payload=task, lock=timezone.now()
                )
                return insert_row(row, using=conf.ORM).pk

        _transaction_broker_class = TransactionORM
    return _transaction_broker_class()


def _queues_in_transaction() -> bool:
    """Whether a posting's task can be written in the posting's own transaction: real
    (async) delivery through django-q2's ORM broker on the postings' database (the broker
    ``get_broker`` picks: no custom class, IronMQ or SQS configured before it)."""
    conf = q_conf.Conf
    if get_setting("DELIVERY") != "async" or conf.SYNC:
        return False
    if conf.BROKER_CLASS or conf.IRON_MQ or isinstance(conf.SQS, dict) or not conf.ORM:
        return False
    return conf.ORM == router.db_for_write(Posting)


def _enqueue_in_transaction(posting_id: int) -> bool:
    """Queue a new posting's task inside the transaction writing it (see ``_create_posting``).
    False when that is not possible here: the caller queues it after the commit instead."""
    if not _queues_in_transaction():
        return False
    if not transaction.get_connection(router.db_for_write(Posting)).in_atomic_block:
        return False
    try:
        _queue_task(posting_id, broker=_transaction_broker())
    except Exception as err:  # noqa: BLE001  (queued after the commit instead, or by the sweep)
        log.warning(
            "posting %s: its task could not be written with it (%s: %s); queued after commit",
            posting_id,
            type(err).__name__,
            mask(str(err))[:500],
        )
        return False
    return True


def enqueue(posting_id: int, *, marked: bool = False) -> bool:
    """Queue a posting's delivery task. Never raises: it runs after the payment committed
    (``on_commit``), where an exception would turn a taken payment into an HTTP 500. When the
    broker cannot be reached (Redis down, the ORM broker's database error) the posting is left
    with ``enqueued_at`` empty and the retry sweep queues it once the broker is back. With the
    ORM broker the mark and the task row are one transaction (one commit)."""
    if get_setting("DELIVERY") == "manual":
        return False
    try:
        if _queues_in_transaction():
            with transaction.atomic(using=router.db_for_write(Posting)):
                if not marked:
                    Posting.objects.filter(pk=posting_id).update(enqueued_at=timezone.now())
                _queue_task(posting_id, broker=_transaction_broker())
        else:
            if not marked:  # a new posting was written marked
                Posting.objects.filter(pk=posting_id).update(enqueued_at=timezone.now())
            _queue_task(posting_id)
    except Exception as err:  # noqa: BLE001  (the broker is down: the sweep will queue it)
        try:
            Posting.objects.filter(pk=posting_id).update(enqueued_at=None)
        except Exception:  # noqa: BLE001, S110  (the database is down too: enqueued_at may stay
            pass  # set; the sweep presumes such a task lost after QUEUE_GRACE_SECONDS)
        log.warning(
            "posting %s: its delivery could not be queued (%s: %s); it waits for the retry sweep",
            posting_id,
            type(err).__name__,
            mask(str(err))[:500],
        )
        return False
    return True


def _queue_task(posting_id: int, **options) -> None:
    enqueue_task(
        "integrations.tasks.deliver_posting", posting_id, group="integrations.postings", **options
    )


def enqueue_task(func: str, object_id: int, *, group: str = "integrations", **options) -> None:
    """Queue a django-q2 task that takes one id (never anything secret). Raises when the broker
    cannot be reached (``enqueue`` catches that for postings). ``options`` go to
    ``async_task`` (``broker``)."""
    options.setdefault("broker", shared_broker())
    q_tasks.async_task(
        func,
        object_id,
        task_name=f"{func.rsplit('.', 1)[-1]}-{object_id}-{timezone.now().timestamp():.3f}",
        group=group,
        sync=(get_setting("DELIVERY") == "sync"),
        **options,
    )


_shared_brokers: dict[tuple, object] = {}


def shared_broker():
    """The configured django-q2 broker, one per process (and configuration). Without one,
    ``async_task`` builds a broker for every task, and the Redis broker's is a new client
    with its own connection pool: a new TCP connection to Redis for every payment taken
    (2.9 ms a payment in bench/worker.py). redis-py's client is safe across threads and
    reconnects in a forked child; the ORM broker holds no connection of its own."""
    conf = q_conf.Conf
    key = (
        os.getpid(),
        conf.CLUSTER_NAME,
        conf.BROKER_CLASS,
        conf.ORM,
        conf.DJANGO_REDIS,
        repr(conf.REDIS),
        repr(conf.SQS),
        repr(conf.IRON_MQ),
        repr(conf.MONGO),
    )
    broker = _shared_brokers.get(key)
    if broker is None:
        _shared_brokers.clear()
        broker = _shared_brokers[key] = q_brokers.get_broker()
    return broker


def sweepable_postings(now: dt.datetime | None = None, *, grace: float | None = None):
    """Due postings whose delivery task is not already waiting in the queue (or was queued so
    long ago that it must have been lost)."""
    now = now or timezone.now()
    if grace is None:
        grace = get_setting("QUEUE_GRACE_SECONDS")
    lost = now - dt.timedelta(seconds=grace)
    return due_postings(now).filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lost))


def _queue_backlog() -> int:
    try:
        return int(shared_broker().queue_size() or 0)
    except Exception:  # noqa: BLE001  (an unreachable broker: the sweep's enqueue will say so)
        return 0


def sweep(*, grace: float | None = None, limit: int = 500) -> int:
    """Queue delivery for due postings: what the retry-sweep schedule runs.

    While the broker holds a backlog, a task queued earlier is most likely still waiting in it,
    so only postings with no task queued (a retry whose backoff elapsed, a claim that expired)
    are queued; once the queue has drained, a task queued more than ``grace`` seconds ago is
    presumed lost and queued again. Either way nothing floods the queue with duplicates.
    """
    candidates = sweepable_postings(grace=grace)
    if drains_enabled():
        # A long backlog left to its connection's drains (they run while one more waits to
        # start): a task of its own for each would only add tasks, not deliveries. Decided on
        # the flag as it is before this sweep pokes anything (below): a drain that never
        # starts, or crashes as it starts, leaves the backlog to a task each.
        waiting = timezone.now() - dt.timedelta(seconds=DRAIN_LOST_SECONDS)
        candidates = candidates.exclude(
            Q(state=PostingState.PENDING) & Q(connection__drain__queued_at__gte=waiting)
        )
    if _queue_backlog() > get_setting("SWEEP_QUEUE_LIMIT"):
        candidates = candidates.filter(enqueued_at__isnull=True)
    ids = list(candidates.values_list("pk", flat=True)[:limit])
    for posting_id in ids:
        enqueue(posting_id)
    poke_lost_drains()
    return len(ids)


def due_postings(now: dt.datetime | None = None):
    """Postings a sweep should (re)deliver: pending/retrying and due, or stale in flight, on a
    connection that is enabled and not paused."""
    now = now or timezone.now()
    return Posting.objects.filter(
        Q(state__in=[PostingState.PENDING, PostingState.RETRYING])
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        | Q(state=PostingState.IN_FLIGHT, claimed_until__lt=now),
        connection__enabled=True,
        connection__paused_at__isnull=True,
    ).order_by("created_at")


def queue_waiting(connection: Connection) -> int:
    """Queue (after commit) every posting of the connection that is due: what a disabled or
    paused connection held. Returns how many; none while it is still held. With drains, its
    pending postings are marked queued in one statement and left to the connection's drains
    (a few tasks for a long-held backlog); the others (retrying, a claim that expired) get a
    task each, as without."""
    due = due_postings().filter(connection=connection)
    queued = 0
    if drains_enabled():
        queued = due.filter(state=PostingState.PENDING).update(enqueued_at=timezone.now())
        if queued:
            transaction.on_commit(lambda: poke(connection.pk))
        due = due.exclude(state=PostingState.PENDING)
    ids = list(due.values_list("pk", flat=True))
    for posting_id in ids:
        enqueue_on_commit(posting_id)
    return queued + len(ids)


def wake_waiting_reversals(posting: Posting) -> int:
    """A payment's posting just became final (posted by an attempt, found or resolved by a
    person, or abandoned): the reversals waiting for it are queued now, instead of at their
    next look, which grows with the wait up to an hour (``_payment_wait_delay``). Their own
    claim then decides (posted: they are sent; abandoned: they stop for a person, saying so).
    Runs after the commit; never raises (the sweep still finds them at their next look).

    Looked up only when the payment, as the caller loaded it, is in a reversed state: the
    common posted payment costs no statement. A reversal taken while the payment's attempt
    was in flight is not seen so; it waits only its first look (the first retry step).
    Returns how many were queued."""
    if posting.kind != PostingKind.PAYMENT:
        return 0
    try:
        if posting.payment.state not in REVERSED_STATES:
            return 0
        waiting = Posting.objects.filter(
            payment_id=posting.payment_id,
            kind=PostingKind.REVERSAL,
            state=PostingState.RETRYING,
            error_code=WAITING_FOR_PAYMENT,
            connection__enabled=True,
            connection__paused_at__isnull=True,
        )
        ids = list(waiting.values_list("pk", flat=True))
        if ids:
            waiting.filter(pk__in=ids).update(next_attempt_at=timezone.now())
        queued = sum(1 for posting_id in ids if enqueue(posting_id))
    except Exception as err:  # noqa: BLE001  (after the commit: the sweep finds them later)
        log.warning(
            "posting %s: the reversals waiting for it could not be queued (%s: %s); the sweep "
            "finds them at their next look",
            posting.key,
            type(err).__name__,
            mask(str(err))[:500],
        )
        return 0
    if queued:
        log.info("posting %s: %s reversal(s) waiting for it queued", posting.key, queued)
    return queued
