from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Accounting integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integrations import checks, receivers  # noqa: F401  (register checks and receivers)
        from integrations.providers import registry
        from integrations.providers.fake import FakeProvider

        registry.register(FakeProvider)
