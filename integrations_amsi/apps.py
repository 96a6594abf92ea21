from django.apps import AppConfig


class AmsiConfig(AppConfig):
    name = "integrations_amsi"
    label = "integrations_amsi"
    verbose_name = "AMSI eSite"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integrations.providers import registry

        from .provider import AmsiProvider

        registry.register(AmsiProvider)
