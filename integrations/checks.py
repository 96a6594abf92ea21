"""System checks: catch a mis-set timing chain or a missing provider before a worker starts.

The chain (integrations.conf.TimingChain): one attempt (2 SOAP calls + the inline retry wait)
< task timeout < claim < broker retry. A broken chain is an Error (``manage.py qcluster`` and
``runserver`` refuse to start); a connection whose own timeout breaks it is a Warning naming
the connection (it may be fixed in the admin without a restart).
"""

from __future__ import annotations

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from integrations.conf import get_setting, timing_chain
from integrations.models import Connection
from integrations.providers import registry


@register()
def check_timeouts(app_configs, **kwargs):

    chain = timing_chain()
    return [
        Error(message, hint="docs/configuration.md, 'Timing chain'", id=check_id)
        for check_id, message in chain.problems()
    ]


@register()
def check_drain_concurrency(app_configs, **kwargs):
    value = get_setting("DRAIN_CONCURRENCY")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        return [
            Error(
                f"INTEGRATIONS['DRAIN_CONCURRENCY'] is {value!r}: deliveries a drain runs at "
                "once, a whole number from 1 to 8",
                hint="docs/configuration.md, 'Delivery'",
                id="integrations.E010",
            )
        ]
    return []


def connection_timeout(connection) -> float | None:
    """A connection's per-call timeout: its ``timeout`` setting, else its provider's default
    (``default_operation_timeout``, when the provider declares one)."""

    value = connection.setting("timeout")
    if value in (None, ""):
        try:
            value = getattr(registry.get(connection.provider), "default_operation_timeout", None)
        except Exception:  # noqa: BLE001  (an unknown provider: integrations.E002 says so)
            value = None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@register(Tags.database)
def check_connection_timeouts(app_configs, **kwargs):

    chain = timing_chain()
    try:
        connections = list(Connection.objects.select_related("property"))
    except DatabaseError:
        return []  # not migrated yet
    messages = []
    for connection in connections:
        timeout = connection_timeout(connection)
        problem = chain.operation_timeout_problem(timeout) if timeout else None
        if problem:
            messages.append(
                Warning(
                    f"connection {connection.property.code} ({connection.provider}): {problem}",
                    hint="lower the connection's operation timeout in the admin, or raise "
                    "Q_CLUSTER['timeout'] (and the claim and retry above it)",
                    obj=connection,
                    id="integrations.W002",
                )
            )
    return messages


@register(Tags.database)
def check_connections_providers(app_configs, **kwargs):

    known = {cls.id for cls in registry.all_providers()}
    try:
        used = set(Connection.objects.values_list("provider", flat=True).distinct())
    except DatabaseError:
        return []  # not migrated yet
    return [
        Error(f"connections use provider {p!r}, which is not registered", id="integrations.E002")
        for p in sorted(used - known)
    ]
