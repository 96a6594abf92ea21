"""Idempotency keys: what a client sends so that a retried request is the first one's result.

A key is 1-64 printable ASCII characters without spaces (a UUID is typical). Keys are scoped:
a payment's key belongs to the resident who paid (``Payment.resident``; keys sent without a
resident, from the processor command, share one scope of their own), a reversal's key to the
user who asked for it (``Reversal.requested_by``). So another resident's key never finds a
result that is not theirs, and nobody learns that someone else used a key.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

KEY_MAX_LENGTH = 64
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def key_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable key (one sentence), or None when it is."""
    if not value.strip():
        return "The idempotency key is empty: send 1-64 printable characters, e.g. a UUID."
    if len(value) > KEY_MAX_LENGTH:
        return f"The idempotency key must be at most {KEY_MAX_LENGTH} characters, e.g. a UUID."
    if not _PRINTABLE.fullmatch(value):
        return "The idempotency key must be printable ASCII characters without spaces, e.g. a UUID."
    return None


def validate_key(value: str) -> None:
    """A Django validator (forms, DRF serializers)."""
    problem = key_problem(value)
    if problem:
        raise ValidationError(problem, code="idempotency_key")


def clean_key(value: object) -> str | None:
    """None for no key (None or ""), else the key; ValueError with the reason when it is bad."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("The idempotency key must be a string, e.g. a UUID.")
    problem = key_problem(value)
    if problem:
        raise ValueError(problem)
    return value
