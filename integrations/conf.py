"""The integrations' settings: one dict, ``settings.INTEGRATIONS``, read at call time.

Reading at call time (not import time) keeps ``override_settings`` working in tests and lets an
operator change a value without reloading modules (anymail's get_anymail_setting does the same).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "CREDENTIALS_KEYS": [],
    # Dotted paths of provider classes offered besides those their own apps register (the fake
    # provider, in tests and the demo); see integrations.providers.registry.
    "PROVIDERS": [],
    # Attempts before a posting needs attention; backoff between attempts, in seconds.
    "MAX_ATTEMPTS": 8,
    "RETRY_BACKOFF_SECONDS": [2, 10, 60, 300, 900, 1800, 3600],
    # How long a claimed posting stays "in flight" before another worker may take it over
    # (longer than the task timeout, which is longer than the SOAP operation timeout).
    "CLAIM_SECONDS": 105,
    # A queued delivery task not taken by a worker within this long is presumed lost and
    # queued again by the retry sweep.
    "QUEUE_GRACE_SECONDS": 300,
    # With more tasks than this waiting in the broker, the sweep only queues postings that have
    # no task queued at all (see outbox.sweep).
    "SWEEP_QUEUE_LIMIT": 100,
    # After an unknown outcome (timeout, reset, lost reply) the next attempt waits at least this
    # long before asking the remote whether the first write landed: a slow server may still be
    # processing it, and a check made too early would find nothing and write a second time.
    "UNKNOWN_OUTCOME_DELAY_SECONDS": 45,
    # A reversal waits (growing waits, no attempt spent) at most this long for its payment to be
    # posted, then needs attention saying so. A payment unconfirmed or retrying for 3 days is
    # one a person has to look at anyway.
    "PAYMENT_WAIT_SECONDS": 3 * 24 * 3600,
    # async: django-q2 tasks deliver postings (production); sync: run the task in-process
    # through django-q2's sync path (tests); manual: leave postings pending (operators, dry runs).
    "DELIVERY": "async",
    # async only: a new posting is delivered by its connection's drain task (one queued at a
    # time per connection, delivering every new posting it finds) instead of a task of its
    # own; a burst of payments is then a few tasks, not one a payment (docs/performance.md).
    # Retries, the sweep and a person's actions still queue a task per posting.
    "DRAIN": True,
    # A drain starts no new delivery after this many seconds (or later than the task timeout
    # allows one attempt); it queues the next drain instead, so other tasks get a worker.
    "DRAIN_SECONDS": 10,
    # Deliveries one drain runs at once (threads of its worker, each with its own database
    # connection): while one waits for eSite or the database, another works. A connection can
    # then see up to (workers running its drains) x this many calls at once. 1 to 8; SQLite
    # runs one at a time whatever it says (one writer at a time).
    "DRAIN_CONCURRENCY": 2,
    "DELTA_SYNC_MINUTES": 5,
    "FULL_SYNC_HOUR_UTC": 7,
    "CLOSE_BATCHES_MINUTES": 5,
    "RETRY_SWEEP_MINUTES": 1,
    # Postings newly waiting for a person (needs attention, unconfirmed) are mailed to the
    # property's managers this often (integrations/attention.py); 0: never.
    "ATTENTION_MAIL_MINUTES": 15,
    # Resyncs (delta and full) failing for this long, none succeeding, are mailed too.
    "SYNC_FAILURE_MAIL_MINUTES": 60,
    # The site's address (https://platform.example.com), for the console links in mails; the
    # links are bare paths when it is empty.
    "CONSOLE_URL": "",
}


# Timing knobs an operator (or a test starting worker processes) may set from the environment:
# ``INTEGRATIONS_<NAME>``; a number, or a comma-separated / JSON list of numbers for the backoff.
# When set, the environment wins over settings.INTEGRATIONS (a worker started with it must use it).
ENV_OVERRIDES = (
    "MAX_ATTEMPTS",
    "RETRY_BACKOFF_SECONDS",
    "UNKNOWN_OUTCOME_DELAY_SECONDS",
    "PAYMENT_WAIT_SECONDS",
    "CLAIM_SECONDS",
    "QUEUE_GRACE_SECONDS",
    "SWEEP_QUEUE_LIMIT",
    "DRAIN",
    "DRAIN_SECONDS",
    "DRAIN_CONCURRENCY",
)


def _from_env(name: str) -> Any:
    raw = os.environ.get(f"INTEGRATIONS_{name}", "").strip()
    if not raw:
        return None
    if name == "DRAIN":
        return raw.lower() not in ("0", "false", "no", "off")
    try:
        if name == "RETRY_BACKOFF_SECONDS":
            values = json.loads(raw) if raw.startswith("[") else raw.split(",")
            return [float(v) for v in values]
        value = float(raw)
        if name in ("MAX_ATTEMPTS", "SWEEP_QUEUE_LIMIT", "DRAIN_CONCURRENCY"):
            return int(value)
        return value
    except ValueError:
        raise ImproperlyConfigured(f"INTEGRATIONS_{name}={raw!r} is not a number") from None


def get_setting(name: str) -> Any:
    if name in ENV_OVERRIDES:
        value = _from_env(name)
        if value is not None:
            return value
    configured = getattr(settings, "INTEGRATIONS", {}) or {}
    if name in configured:
        return configured[name]
    if name in DEFAULTS:
        return DEFAULTS[name]
    raise ImproperlyConfigured(f"settings.INTEGRATIONS[{name!r}] is not set and has no default")


# -- the timing chain ----------------------------------------------------------------------------
#
#   one attempt (CALLS_PER_ATTEMPT x the operation timeout + the inline retry wait)
#     <  django-q2 task timeout (Q_CLUSTER["timeout"])  <  claim (CLAIM_SECONDS)
#     <  broker retry (Q_CLUSTER["retry"])
#
# so django-q2 never re-delivers a task while its first run may still be talking to the
# accounting system, and a claim expires only once that run has been stopped. Enforced by the
# system checks (integrations.checks) and by the AMSI connection form.

# An attempt is budgeted as a check and a write (the AMSI provider sends only the write).
CALLS_PER_ATTEMPT = 2
# A retry due within this many seconds is waited for inside the task (integrations.tasks).
INLINE_RETRY_SECONDS = 5.0
# django-q2's own default when Q_CLUSTER has no "retry".
DJANGO_Q_DEFAULT_RETRY = 60


@dataclass(frozen=True)
class TimingChain:
    task_timeout: float | None  # Q_CLUSTER["timeout"]; None: tasks are never stopped
    broker_retry: float  # Q_CLUSTER["retry"]
    claim: float  # INTEGRATIONS["CLAIM_SECONDS"]
    inline_wait: float  # the longest a task may wait inline for its next attempt

    def attempt_seconds(self, operation_timeout: float) -> float:
        """The longest one delivery task runs with this per-call timeout."""
        return CALLS_PER_ATTEMPT * float(operation_timeout) + self.inline_wait

    def max_operation_timeout(self) -> float | None:
        """Per-call timeouts must stay below this (None: no task timeout to fit under)."""
        if not self.task_timeout:
            return None
        return (self.task_timeout - self.inline_wait) / CALLS_PER_ATTEMPT

    def problems(self) -> list[tuple[str, str]]:
        """How the configured chain is broken, as (check id, message); empty when it holds."""
        out: list[tuple[str, str]] = []
        t, r, c = self.task_timeout, self.broker_retry, self.claim
        if not t:
            out.append(
                (
                    "integrations.E005",
                    "Q_CLUSTER['timeout'] is not set: a hung delivery task would hold its worker "
                    f"and its posting forever; set it between one attempt and the claim ({c:g} s)",
                )
            )
            return out
        if r <= t:
            out.append(
                (
                    "integrations.E001",
                    f"Q_CLUSTER['retry'] ({r:g} s) must be longer than Q_CLUSTER['timeout'] "
                    f"({t:g} s), or django-q2 may run a posting twice at once",
                )
            )
        if c <= t:
            out.append(
                (
                    "integrations.E003",
                    f"INTEGRATIONS['CLAIM_SECONDS'] ({c:g} s) must be longer than "
                    f"Q_CLUSTER['timeout'] ({t:g} s): a claim that expires while its task "
                    "may still run lets a second worker send the same posting",
                )
            )
        if c >= r:
            out.append(
                (
                    "integrations.E004",
                    f"INTEGRATIONS['CLAIM_SECONDS'] ({c:g} s) must be shorter than "
                    f"Q_CLUSTER['retry'] ({r:g} s): when django-q2 re-delivers a task its claim "
                    "must have expired, or the re-delivered task finds it still held and ends",
                )
            )
        return out

    def operation_timeout_problem(self, operation_timeout: float) -> str | None:
        """Why a per-call timeout breaks the chain, naming the numbers (None: it fits)."""
        limit = self.max_operation_timeout()
        if limit is None or float(operation_timeout) < limit:
            return None
        total = self.attempt_seconds(operation_timeout)
        return (
            f"an operation timeout of {float(operation_timeout):g} s is too long: one attempt "
            f"may make {CALLS_PER_ATTEMPT} calls ({CALLS_PER_ATTEMPT} x "
            f"{float(operation_timeout):g} s) and wait up to {self.inline_wait:g} s for its "
            f"retry, {total:g} s in all, which must stay below the task timeout "
            f"(Q_CLUSTER['timeout'] = {self.task_timeout:g} s); use less than {limit:g} s"
        )


def timing_chain() -> TimingChain:
    """The chain as configured now (Q_CLUSTER and INTEGRATIONS, read at call time)."""
    q = getattr(settings, "Q_CLUSTER", {}) or {}
    timeout = q.get("timeout")
    steps = [float(s) for s in (get_setting("RETRY_BACKOFF_SECONDS") or [60])]
    longest_wait = max([*steps, float(get_setting("UNKNOWN_OUTCOME_DELAY_SECONDS"))])
    return TimingChain(
        task_timeout=float(timeout) if timeout else None,
        broker_retry=float(q.get("retry", DJANGO_Q_DEFAULT_RETRY)),
        claim=float(get_setting("CLAIM_SECONDS")),
        inline_wait=min(INLINE_RETRY_SECONDS, longest_wait),
    )
