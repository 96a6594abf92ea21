"""Exactly-once effects under faults, with a real django-q2 cluster and the sandbox as processes.

Each test takes payments and reversals through the platform's services (the outbox writes the
postings in the same transaction; django-q2 tasks go to the ORM broker on the test database), a
real cluster (``manage.py qcluster``) delivers them to the sandbox (``manage.py amsi_sandbox``)
while a fault is injected, and then the sandbox's ledger is compared with ours per batch: count
and total, no duplicates, nothing lost, every posting posted (or needing attention with a
reason), every batch of the day settled. The summary line is printed for CI's log.

The scenarios that leave a write's outcome unknown (write faults, a worker killed mid-call) run
twice: against an eSite that refuses a repeated ClientTransactionID, with the platform checking
unknown outcomes unattended (re-send; the refusal proves it landed), and against one that would
book it again, where the posting waits "unconfirmed" and the harness plays the person who looks
in the ledger ("found" / "not there, post it").
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from django.db import connection

from integrations import outbox
from integrations.models import Posting, PostingAttempt, PostingState
from tests.faults.harness import (
    BOTH_DUPLICATES,
    CLIENT_TIMEOUT,
    SLOW_WRITE_SECONDS,
    Platform,
    Tally,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def finish(platform: Platform, scenario: str, capsys, *, wait: float = 90) -> Tally:
    """Wait for every posting, close the day's batches, compare, print the summary line."""
    try:
        platform.wait_until_done(timeout=wait)
    finally:
        platform.sandbox.note_fired()
    platform.sandbox.clear_faults()
    platform.close_batches()
    tally = platform.tally(scenario)
    if os.environ.get("FAULTS_DEBUG"):
        _dump_attempts(capsys)
    with capsys.disabled():
        print(f"\n{tally.line()}")
        if not tally.ok:
            print(tally.table())
    return tally


def assert_exact(tally: Tally) -> None:
    """Bounded faults: everything lands exactly once and every batch is settled."""
    assert tally.ok, tally.table()
    assert tally.needs_attention == {}, tally.needs_attention
    assert tally.sandbox_payments == tally.payments
    assert tally.sandbox_reversals == tally.reversals
    assert tally.posted == tally.payments + tally.reversals


WRITE_FAULTS = {
    # mode: options (see docs/sandbox.md)
    "lost_reply": {},  # the write commits, then the connection is reset: no reply
    "latency": {"seconds": SLOW_WRITE_SECONDS},  # longer than the client's timeout
    "http500": {},
    "reset": {},
    "malformed": {},
}


# Which write faults surely leave a write that landed without a reply.
LANDED_WITHOUT_REPLY = ("lost_reply", "latency")


@pytest.mark.parametrize("mode", list(WRITE_FAULTS))
@pytest.mark.parametrize("duplicates", BOTH_DUPLICATES)
def test_write_faults_land_exactly_once(mode, duplicates, platform, clusters, capsys):
    assert SLOW_WRITE_SECONDS > CLIENT_TIMEOUT
    sandbox = platform.sandbox
    sandbox.add_fault(mode, "AddPayment", count=2, **WRITE_FAULTS[mode])
    sandbox.add_fault(mode, "ReturnPayment", count=1, **WRITE_FAULTS[mode])
    sandbox.add_fault(mode, "*", ratio=0.1, seed=7, **WRITE_FAULTS[mode])
    clusters.start()
    rng = random.Random(mode)
    platform.pay(8, rng=rng)
    platform.reverse(3, rng=rng)
    tally = finish(platform, f"write-{mode}", capsys)
    assert_exact(tally)
    assert tally.faults_fired.get(mode, 0) >= 3
    if duplicates == "refuse":
        assert platform.automatic
        # Payments are checked unattended; a reversal never is (nothing shows that eSite
        # refuses a repeated ReturnPayment): the ReturnPayment fault waited for the person.
        unconfirmed = PostingAttempt.objects.filter(outcome="unconfirmed")
        assert not unconfirmed.filter(posting__kind="payment").exists()
        assert unconfirmed.filter(posting__kind="reversal").count() == tally.went_unconfirmed
        assert tally.went_unconfirmed >= 1
        assert tally.found_by_person + tally.posted_by_person >= 1
        if mode in LANDED_WITHOUT_REPLY:
            # The write landed without a reply: the next attempt re-sent it, eSite refused
            # the repeat, and that refusal proved it landed (nothing written twice).
            assert tally.found_after_unknown >= 1
            assert PostingAttempt.objects.filter(
                outcome="found_posted", checked_first=True
            ).exists()
    else:
        # Nothing is re-sent unattended: every unknown outcome waited for the person.
        assert not platform.automatic
        assert tally.found_after_unknown == 0
        assert tally.went_unconfirmed >= 1
        if mode in LANDED_WITHOUT_REPLY:
            assert tally.found_by_person >= 1  # it was there: marked found, not posted again
        else:
            assert tally.posted_by_person >= 1  # nothing was written: the person posted it


def test_amsi_down_for_a_while_and_back(platform, clusters, capsys):
    clusters.start()
    sandbox = platform.sandbox
    rng = random.Random("down")
    platform.pay(4, rng=rng)
    sandbox.stop()  # AMSI is down: connections refused
    platform.pay(6, rng=rng)
    platform.reverse(2, rng=rng)
    time.sleep(3)
    assert Posting.objects.filter(state=PostingState.RETRYING).exists()
    sandbox.start()  # back, same port, same books
    tally = finish(platform, "amsi-down-and-back", capsys)
    assert_exact(tally)
    assert PostingAttempt.objects.filter(outcome="retry").exists()


def _attempt_in_flight(timeout: float = 20, settle: float = 0.3) -> PostingAttempt:
    """An attempt whose SOAP call is in the sandbox now (every call is slowed down meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempt = (
            PostingAttempt.objects.filter(finished_at__isnull=True, posting__kind="payment")
            .order_by("started_at")
            .first()
        )
        if attempt is not None:
            time.sleep(settle)  # the request has reached the sandbox, which is sleeping on it
            attempt.refresh_from_db()
            if attempt.finished_at is None:
                return attempt
        time.sleep(0.02)
    raise AssertionError("no posting was in flight")


def test_sandbox_process_killed_and_restarted_mid_run(platform, clusters, capsys):
    sandbox = platform.sandbox
    # Slow but in time: calls are in the sandbox when it dies.
    sandbox.add_fault("latency", "*", ratio=1.0, seconds=0.8 * CLIENT_TIMEOUT)
    clusters.start()
    rng = random.Random("restart")
    platform.pay(10, rng=rng)
    _attempt_in_flight()
    sandbox.kill()
    time.sleep(0.5)
    sandbox.start()
    platform.reverse(3, rng=rng)
    tally = finish(platform, "sandbox-restarted", capsys)
    assert_exact(tally)


@pytest.mark.parametrize("duplicates", BOTH_DUPLICATES)
def test_worker_killed_with_sigkill_mid_posting(duplicates, platform, clusters, capsys):
    sandbox = platform.sandbox
    # AddPayment takes a while (within the client's timeout); a worker making one is killed
    # meanwhile; the sandbox still books it.
    sandbox.add_fault("latency", "AddPayment", ratio=1.0, seconds=0.8 * CLIENT_TIMEOUT)
    cluster = clusters.start()
    rng = random.Random("sigkill")
    platform.pay(6, rng=rng)
    attempt = _attempt_in_flight()
    pid = int(attempt.worker.rsplit(":", 1)[1])
    assert cluster.owns(pid), f"{attempt.worker} is not a process of our cluster"
    os.kill(pid, signal.SIGKILL)
    sandbox.clear_faults()
    victim = attempt.posting
    platform.reverse(2, rng=rng)
    tally = finish(platform, "worker-sigkill", capsys)
    assert_exact(tally)
    victim.refresh_from_db()
    log = list(victim.attempt_log.order_by("number"))
    assert log[0].finished_at is None  # the killed attempt never recorded an outcome
    later = [a for a in log[1:] if a.outcome]
    assert later and later[0].checked_first, "the next attempt must check AMSI first"
    if duplicates == "refuse":
        assert later[-1].outcome == "found_posted"  # it had landed: found, not written again
    else:
        # Not re-sent: unconfirmed until the person found it in the ledger.
        assert later[0].outcome == "unconfirmed"
        assert later[-1].outcome == "found_by_person"
        assert victim.remote_reference
    assert victim.state == PostingState.POSTED


def test_two_clusters_race_on_one_postgresql_database(platform, clusters, capsys):
    if connection.vendor != "postgresql":
        pytest.skip(
            "two clusters racing need PostgreSQL row locks (SELECT ... FOR UPDATE); SQLite has "
            "none and one SQLite file is never shared by clusters on several machines"
        )
    sandbox = platform.sandbox
    sandbox.add_fault("lost_reply", "*", ratio=0.2, seed=11)
    sandbox.add_fault("latency", "*", ratio=0.2, seed=12, seconds=SLOW_WRITE_SECONDS)
    first, second = clusters.start("a"), clusters.start("b")
    rng = random.Random("race")
    platform.pay(16, rng=rng)
    platform.reverse(4, rng=rng)
    # Every posting is queued several more times, and the sweep runs far more often than in
    # production: both clusters keep trying to deliver the same postings at once.
    for _ in range(2):
        for pk in Posting.objects.values_list("pk", flat=True):
            outbox.enqueue(pk)
    tally = finish_racing(platform, capsys)
    assert_exact(tally)
    assert tally.overlapping_attempts == 0
    workers = PostingAttempt.objects.exclude(worker__startswith="person:")  # not the harness
    pids = {int(w.rsplit(":", 1)[1]) for w in workers.values_list("worker", flat=True)}
    assert any(first.owns(p) for p in pids) and any(second.owns(p) for p in pids), pids


def finish_racing(platform: Platform, capsys) -> Tally:
    deadline = time.monotonic() + 90
    while platform.open_count() and time.monotonic() < deadline:
        platform.sweep()
        platform.resolve_unconfirmed()  # a reversal's unknown outcome waits for the person
        time.sleep(0.3)
    return finish(platform, "two-clusters-race", capsys)


def _dump_attempts(capsys) -> None:
    attempts = list(PostingAttempt.objects.order_by("started_at"))
    if not attempts:
        return
    t0 = attempts[0].started_at
    with capsys.disabled():
        for a in attempts:
            end = f"{(a.finished_at - t0).total_seconds():6.2f}" if a.finished_at else "  --  "
            print(
                f"  {a.posting_id:4} #{a.number} {(a.started_at - t0).total_seconds():6.2f} {end} "
                f"{a.outcome:13} {a.worker.rsplit(':', 1)[1]:>7} {a.error[:70]}"
            )
