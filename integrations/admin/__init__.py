"""The framework's admin, one module per subject (each action names its own permission, so a
staff user without it neither sees nor runs it; logs are read-only):

- ``connections``: one connection admin for every provider (the provider supplies its form);
- ``leases``: the lease actions (sync now, link), added to the host's Lease admin;
- ``postings``: the outbox's console (what happened, what to do; retry, found / not found,
  resolve, abandon) and the sync runs;
- ``reports``: Batch Deposit Reports, their CSV and email, and the reconcile page;
- ``reconciliations``: the reconciliation runs as recorded (the dashboard shows the last);
- ``dashboard``: the integration dashboard (admin home, a connection's page) and the banner on
  every admin page (through the ``integrations_admin`` template tags).

``ReadOnlyAdmin`` and ``EnableAndBackfillMixin`` are importable from here (provider apps use
``ReadOnlyAdmin`` for their mirror models).
"""

from . import connections, leases, postings, reconciliations, reports
from .base import EnableAndBackfillMixin, ReadOnlyAdmin

__all__ = [
    "EnableAndBackfillMixin",
    "ReadOnlyAdmin",
    "connections",
    "leases",
    "postings",
    "reconciliations",
    "reports",
]
