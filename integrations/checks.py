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


# Mail backends that deliver nowhere a manager reads: fine for development, not for production.
DEVELOPMENT_MAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
}


@register("mail", deploy=True)
def check_report_mail(app_configs, **kwargs):
    """``check --deploy``: the Batch Deposit Reports would reach no manager through a
    development mail backend. Django 6.1 checks its "default" mailer itself (mail.E001), so
    this one looks at the EMAIL_BACKEND before 6.1, and at the REPORT_MAILER alias when it is
    another one."""
    from django.conf import settings

    from integrations.reports import report_setting

    if hasattr(settings, "MAILERS"):
        alias = report_setting("REPORT_MAILER")
        if alias == "default":
            return []
        backend = settings.MAILERS.get(alias, {}).get("BACKEND", "")
    else:
        backend = getattr(settings, "EMAIL_BACKEND", "")
    if backend not in DEVELOPMENT_MAIL_BACKENDS:
        return []
    return [
        Warning(
            f"Batch Deposit Reports are sent through {backend}, which delivers to no one",
            hint="Set EMAIL_BACKEND (and EMAIL_HOST, ...) to the mail server: "
            "docs/configuration.md, 'Production'.",
            id="integrations.W003",
        )
    ]
