"""Django's SQLite backend, waiting for the write lock in small steps.

The embedded default runs the web process, django-q2's ORM broker (its pusher and monitor)
and every worker on one SQLite file, and SQLite lets one writer in at a time. A writer that
finds the lock taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ...
ms between tries: a lock held for a millisecond costs the waiter 3 to 8 ms, and the lock often
sits free while the waiters sleep. In a burst of postings with two workers, py-spy found a
third of each delivery asleep there, and the broker's pusher starved the same way
(docs/performance.md, "SQLite's write lock").

Here SQLite's own wait is off (``busy_timeout`` 0) and a statement run outside a transaction
that meets a taken lock (``BEGIN IMMEDIATE``, an autocommit write such as the broker's) is
tried again every 0.1 to 1 ms (every 10 ms once it has waited 20 ms: a long transaction holds
the lock, and frequent tries would only burn CPU) until the connection's ``timeout``
(settings: 30 s), then fails as SQLite would ("database is locked"). Such a statement did
nothing when it failed, so trying it again is safe. ``executemany`` outside a transaction (each
row its own commit: a retry could repeat rows) and the rare lock error inside a transaction
(never the write lock: transactions take it when they start, ``transaction_mode`` IMMEDIATE)
get SQLite's own wait, as before.
"""

from __future__ import annotations

from contextlib import contextmanager
from time import monotonic, sleep

from django.db.backends.sqlite3 import base

Database = base.Database

_FIRST_PAUSE = 0.0001  # seconds; doubled after each try, up to _SHORT_CAP ...
_SHORT_CAP = 0.001
_SHORT_WAIT = 0.02  # ... and, once a wait has lasted this long (a long transaction holds the
_LONG_CAP = 0.01  # lock: an import, a settlement), up to _LONG_CAP: few wake-ups, little CPU


def _locked(error: Exception) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


@contextmanager
def _sqlite_wait(conn, timeout: float):
    """SQLite's own busy handler for one statement."""
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    try:
        yield
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


class LockWaitingCursor(base.SQLiteCursorWrapper):
    timeout = 5.0  # seconds; the connection's OPTIONS["timeout"] (DatabaseWrapper.create_cursor)

    def execute(self, query, params=None):
        try:
            return super().execute(query, params)
        except Database.OperationalError as err:
            if not _locked(err):
                raise
            if self.connection.in_transaction:
                with _sqlite_wait(self.connection, self.timeout):
                    return super().execute(query, params)
        started = monotonic()
        pause = _FIRST_PAUSE
        while True:
            sleep(pause)
            try:
                return super().execute(query, params)
            except Database.OperationalError as err:
                waited = monotonic() - started
                if not _locked(err) or waited >= self.timeout:
                    raise
            pause = min(2 * pause, _SHORT_CAP if waited < _SHORT_WAIT else _LONG_CAP)

    def executemany(self, query, param_list):
        if self.connection.in_transaction:
            return super().executemany(query, param_list)
        with _sqlite_wait(self.connection, self.timeout):
            return super().executemany(query, param_list)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)  # init commands under SQLite's wait
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=LockWaitingCursor)
        cursor.timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
        return cursor
