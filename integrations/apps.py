from __future__ import annotations

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Accounting integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: Django imports apps.py while it loads the app registry,
        # before these modules' models may be imported.
        from integrations import checks, receivers  # noqa: F401  (register checks and receivers)
        from integrations.logging import install_record_masking

        # No provider is registered here: each provider's app registers its own, and the fake
        # provider is offered only where settings.INTEGRATIONS["PROVIDERS"] names it.
        # Mask secrets in every log record, not only in the console handler's output (zeep's
        # DEBUG transport log carries the eDex Password in each envelope).
        install_record_masking()
        _guard_django_q_resubmit()


def _guard_django_q_resubmit() -> None:
    """django-q2's admin offers "Resubmit selected tasks" to every staff user who may view
    tasks (the action names no permission). Re-queuing work is a change: require it."""
    try:
        from django_q import admin as q_admin
    except ImportError:  # django-q2 not installed: nothing to guard
        return
    q_admin.resubmit_task.allowed_permissions = ("change",)
