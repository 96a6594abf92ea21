"""The integrations' settings: one dict, ``settings.INTEGRATIONS``, read at call time.

Reading at call time (not import time) keeps ``override_settings`` working in tests and lets an
operator change a value without reloading modules (anymail's get_anymail_setting does the same).
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "CREDENTIALS_KEYS": [],
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
    # async: django-q2 task per posting (production); sync: run the task in-process through
    # django-q2's sync path (tests); manual: leave postings pending (operators, dry runs).
    "DELIVERY": "async",
    "DELTA_SYNC_MINUTES": 5,
    "FULL_SYNC_HOUR_UTC": 7,
    "CLOSE_BATCHES_MINUTES": 5,
    "RETRY_SWEEP_MINUTES": 1,
}


# Timing knobs an operator (or a test starting worker processes) may set from the environment:
# ``INTEGRATIONS_<NAME>``; a number, or a comma-separated / JSON list of numbers for the backoff.
# When set, the environment wins over settings.INTEGRATIONS (a worker started with it must use it).
ENV_OVERRIDES = (
    "MAX_ATTEMPTS",
    "RETRY_BACKOFF_SECONDS",
    "UNKNOWN_OUTCOME_DELAY_SECONDS",
    "CLAIM_SECONDS",
    "QUEUE_GRACE_SECONDS",
    "SWEEP_QUEUE_LIMIT",
)


def _from_env(name: str) -> Any:
    raw = os.environ.get(f"INTEGRATIONS_{name}", "").strip()
    if not raw:
        return None
    try:
        if name == "RETRY_BACKOFF_SECONDS":
            values = json.loads(raw) if raw.startswith("[") else raw.split(",")
            return [float(v) for v in values]
        value = float(raw)
        return int(value) if name in ("MAX_ATTEMPTS", "SWEEP_QUEUE_LIMIT") else value
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
