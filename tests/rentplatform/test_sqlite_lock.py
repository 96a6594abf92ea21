"""rentplatform/sqlite: waiting for SQLite's write lock in small steps, on a real file.

A second, plain sqlite3 connection holds the write lock (``BEGIN IMMEDIATE``) as another
process (a worker, the broker's pusher) would; the backend's connection must wait for it,
try again in steps of at most 1 ms, and give up with SQLite's own error at its timeout.
Runs in both passes: the database here is its own SQLite file, whatever the default is.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connections

from rentplatform.sqlite import base as lock_backend


@pytest.fixture(autouse=True)
def _own_database(django_db_blocker):
    """These tests open their own SQLite file, not the test database: pytest-django's guard
    (which stops every wrapper connecting) is lifted for them."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def db_file(tmp_path):
    path = tmp_path / "lock.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return path


def wrapper(path, timeout=5.0):
    settings = {
        **connections["default"].settings_dict,
        "ENGINE": "rentplatform.sqlite",
        "NAME": str(path),
        "OPTIONS": {"timeout": timeout, "transaction_mode": "IMMEDIATE"},
        "TEST": {},
    }
    return lock_backend.DatabaseWrapper(settings, alias="lock-test")


def hold_lock(path, seconds: float) -> threading.Event:
    """Take the write lock in another connection for ``seconds``; the event is set once held."""
    held = threading.Event()

    def run():
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    threading.Thread(target=run, daemon=True).start()
    assert held.wait(5)
    return held


@pytest.fixture
def pauses(monkeypatch):
    """The pauses the backend asks for, each with how long the wait had lasted when it was
    asked (time.sleep still sleeps)."""
    asked: list[tuple[float, float]] = []
    real = time.sleep
    first: list[float] = []

    def sleep(seconds):
        now = time.monotonic()
        first[:] = first or [now]
        asked.append((now - first[0], seconds))
        real(seconds)

    monkeypatch.setattr(lock_backend, "sleep", sleep)
    return asked


def small_steps(pauses) -> None:
    """At most 1 ms between tries for the first 20 ms, at most 10 ms after; each pause at most
    twice the one before. Counted in pauses asked, not in tries per millisecond: on a loaded
    machine (CI runs three suites at once on two CPUs) a try itself can take several ms."""
    asked = [pause for _, pause in pauses]
    assert asked[:1] == [0.0001]  # the first try again comes 0.1 ms after the first refusal
    assert all(later <= 2 * before for before, later in zip(asked, asked[1:]))  # no jump
    early = [pause for waited, pause in pauses if waited < 0.015]
    assert len(early) >= 3  # tried again and again, not once after a long sleep
    assert max(early) <= 0.001
    assert max(asked) <= 0.01


def test_connection_turns_sqlite_wait_off(db_file):
    db = wrapper(db_file)
    try:
        with db.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 0
    finally:
        db.close()


def test_begin_immediate_waits_for_the_lock_in_small_steps(db_file, pauses):
    db = wrapper(db_file)
    try:
        db.ensure_connection()
        hold_lock(db_file, 0.08)
        started = time.monotonic()
        with db.cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.execute("INSERT INTO t (v) VALUES (%s)", ["after the wait"])
        db.connection.execute("COMMIT")
        waited = time.monotonic() - started
    finally:
        db.close()
    assert waited >= 0.07  # it did wait for the other writer
    small_steps(pauses)
    with sqlite3.connect(db_file) as check:
        assert check.execute("SELECT v FROM t").fetchall() == [("after the wait",)]


def test_autocommit_write_waits_too(db_file, pauses):
    db = wrapper(db_file)
    try:
        db.ensure_connection()
        hold_lock(db_file, 0.05)
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO t (v) VALUES (%s)", ["autocommit"])
    finally:
        db.close()
    small_steps(pauses)
    with sqlite3.connect(db_file) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_gives_up_at_the_timeout_with_sqlites_error(db_file):
    db = wrapper(db_file, timeout=0.2)
    try:
        db.ensure_connection()
        hold_lock(db_file, 1.0)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            with db.cursor() as cursor:
                cursor.execute("INSERT INTO t (v) VALUES (%s)", ["never"])
        assert 0.2 <= time.monotonic() - started < 0.9
    finally:
        db.close()
    time.sleep(0.9)  # the holder commits: nothing was written meanwhile
    with sqlite3.connect(db_file) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_executemany_outside_a_transaction_writes_each_row_once(db_file, pauses):
    """Each row of an autocommit executemany is its own commit: it waits in SQLite's own
    handler rather than being tried again whole (which could repeat the rows before)."""
    db = wrapper(db_file)
    try:
        db.ensure_connection()
        hold_lock(db_file, 0.05)
        with db.cursor() as cursor:
            cursor.executemany("INSERT INTO t (v) VALUES (%s)", [["a"], ["b"], ["c"]])
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 0  # SQLite's wait is off again afterwards
    finally:
        db.close()
    assert pauses == []  # no retry loop: SQLite waited
    with sqlite3.connect(db_file) as check:
        assert sorted(v for (v,) in check.execute("SELECT v FROM t")) == ["a", "b", "c"]


def test_the_embedded_default_uses_it():
    from django.conf import settings

    default = settings.DATABASES["default"]
    if connections["default"].vendor != "sqlite":
        pytest.skip("the SQLite pass checks the default's engine")
    assert default["ENGINE"] == "rentplatform.sqlite"
    assert default["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
