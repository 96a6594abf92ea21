from django.apps import AppConfig


class RentPlatformConfig(AppConfig):
    name = "rentplatform"
    verbose_name = "Rent platform"
    default_auto_field = "django.db.models.BigAutoField"
