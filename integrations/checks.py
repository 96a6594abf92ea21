"""System checks: catch a mis-set timing chain or a missing provider before a worker starts."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register()
def check_timeouts(app_configs, **kwargs):
    from integrations.conf import get_setting

    messages = []
    q = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = q.get("timeout"), q.get("retry")
    if timeout and retry and retry <= timeout:
        messages.append(
            Error(
                "Q_CLUSTER['retry'] must be longer than Q_CLUSTER['timeout'], or django-q2 may "
                "run a posting twice at once",
                id="integrations.E001",
            )
        )
    claim = get_setting("CLAIM_SECONDS")
    if timeout and claim <= timeout:
        messages.append(
            Warning(
                "INTEGRATIONS['CLAIM_SECONDS'] should be longer than Q_CLUSTER['timeout']",
                id="integrations.W001",
            )
        )
    return messages


@register(Tags.database)
def check_connections_providers(app_configs, **kwargs):
    from django.db import DatabaseError

    from integrations.models import Connection
    from integrations.providers import registry

    known = {cls.id for cls in registry.all_providers()}
    try:
        used = set(Connection.objects.values_list("provider", flat=True).distinct())
    except DatabaseError:
        return []  # not migrated yet
    return [
        Error(f"connections use provider {p!r}, which is not registered", id="integrations.E002")
        for p in sorted(used - known)
    ]
