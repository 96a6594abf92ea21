from django.apps import AppConfig


class AmsiConfig(AppConfig):
    name = "integrations_amsi"
    label = "integrations_amsi"
    verbose_name = "AMSI eSite"
    default_auto_field = "django.db.models.BigAutoField"
