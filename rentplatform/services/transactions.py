"""The services' transactions: once the money moved and committed, nothing can undo the answer.

``committing()`` is ``transaction.atomic()`` plus one promise: every ``transaction.on_commit``
callback registered inside it (the outbox queueing a posting's task, a deposit report, anything a
signal receiver adds) runs after the commit *guarded*: an exception there (the broker is down, a
bug in a hook) is logged with its traceback and goes no further. Without it, Django re-raises the
first failing callback out of the ``atomic`` block after the commit, skips the callbacks after it,
and the portal or the API answers HTTP 500 for a payment that was taken; the resident pays again.

Work the hooks would have done is not lost: postings are rows written in the transaction, and the
retry sweep queues any whose task never started (docs/reliability.md).

Receivers that raise *inside* the transaction still roll it back: nothing is committed, and the
caller sees the error (a retry with the same idempotency key is then a first attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction

log = logging.getLogger("rentplatform.services")


def _guarded(func: Callable[[], Any]) -> Callable[[], None]:
    def run_after_commit() -> None:
        try:
            func()
        except Exception:
            log.exception(
                "after-commit work %s failed; the transaction it belongs to is committed and "
                "stays committed (queued work is picked up by the retry sweep)",
                getattr(func, "__qualname__", repr(func)),
            )

    run_after_commit.rentplatform_guarded = True  # type: ignore[attr-defined]
    return run_after_commit


def _guard_hooks_since(conn: Any, start: int) -> None:
    # Django (4.2+) keeps the pending callbacks as (savepoint ids, callable, robust) tuples in
    # ``connection.run_on_commit``; those from ``start`` on were registered inside our block.
    # tests/rentplatform/test_idempotency.py fails if a Django upgrade changes this.
    hooks = conn.run_on_commit
    for index in range(start, len(hooks)):
        entry = hooks[index]
        if not (isinstance(entry, tuple) and len(entry) == 3):
            continue
        sids, func, robust = entry
        if not getattr(func, "rentplatform_guarded", False):
            hooks[index] = (sids, _guarded(func), robust)


@contextmanager
def committing(using: str | None = None) -> Iterator[None]:
    """``transaction.atomic()`` whose after-commit callbacks can never fail the caller."""
    conn = transaction.get_connection(using)
    with transaction.atomic(using=using):
        start = len(conn.run_on_commit)
        yield
        _guard_hooks_since(conn, start)
