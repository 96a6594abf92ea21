"""The framework's admin, one module per subject (each action names its own permission, so a
staff user without it neither sees nor runs it; logs are read-only):

- ``connections``: one connection admin for every provider (the provider supplies its form);
- ``leases``: the lease actions (sync now, link), added to the host's Lease admin;
- ``postings``: the outbox (retry, found / not found by a person) and the sync runs;
- ``reports``: Batch Deposit Reports, their CSV and email, and reconciliation.

``ReadOnlyAdmin`` and ``EnableAndBackfillMixin`` are importable from here (provider apps use
``ReadOnlyAdmin`` for their mirror models).
"""

from . import connections, leases, postings, reports
from .base import EnableAndBackfillMixin, ReadOnlyAdmin

__all__ = [
    "EnableAndBackfillMixin",
    "ReadOnlyAdmin",
    "connections",
    "leases",
    "postings",
    "reports",
]
