"""A property's connection to its accounting system."""

from __future__ import annotations

from django.db import models

from integrations.crypto import EncryptedJSONField
from integrations.exceptions import ProviderConfigurationError
from integrations.providers import registry


class Connection(models.Model):
    property = models.OneToOneField(
        "rentplatform.Property", on_delete=models.PROTECT, related_name="accounting_connection"
    )
    # A plain CharField: choices live in the form (registry.as_choices()), so adding a provider
    # needs no migration (allauth does the same).
    provider = models.CharField(max_length=40)
    # A disabled connection holds its postings (written with each payment, not delivered)
    # until it is enabled again (outbox.enable_connection queues them).
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True, help_text="Non-secret settings.")
    credentials = EncryptedJSONField(blank=True, default=dict, editable=False)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.TextField(blank=True)
    # Set when the remote refused the credentials: deliveries for this connection pause (none
    # is sent, none spends an attempt) until a connection test passes again.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    # When the property's managers were mailed about the pause (integrations/attention.py): a
    # pause that started after it is mailed.
    pause_mailed_at = models.DateTimeField(null=True, blank=True)
    # ... and the start of the last streak of failing resyncs they were mailed about (a streak
    # that started later is mailed).
    sync_failure_mailed_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["property__code"]
        permissions = [
            ("test_connection", "Can test an accounting connection"),
            ("run_import", "Can import a property from the accounting system"),
            ("run_sync", "Can sync a property or lease now"),
            ("backfill_postings", "Can backfill postings of earlier payments"),
        ]

    def __str__(self) -> str:
        """ "Maple Court (maple): AMSI eSite (eDex)", as the admin's messages and history say it
        (the provider's id where its class is not installed)."""
        try:
            system = registry.get(self.provider).name
        except ProviderConfigurationError:  # its class is not installed here
            system = self.provider
        return f"{self.property.name} ({self.property.code}): {system}"

    # What the platform writes as it runs, each by its own UPDATE: the last connection test
    # (services.test_connection, onboarding.record), the pause (outbox: a refused login; a
    # passing test resumes), the managers' mail marks (attention.py). A full save of a row read
    # earlier (the admin's form, a settings change) leaves them as they are now: writing back
    # what it read would resume a connection paused meanwhile, or mail the same pause twice.
    RUNTIME_FIELDS = frozenset(
        {
            "last_tested_at",
            "last_test_ok",
            "last_test_message",
            "paused_at",
            "paused_reason",
            "pause_mailed_at",
            "sync_failure_mailed_since",
        }
    )

    def save(self, *args, **kwargs):
        if (
            not args
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
            and not self._state.adding
        ):
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.RUNTIME_FIELDS
            ]
        super().save(*args, **kwargs)

    def get_provider(self):
        """Shorthand for ``registry.get_provider(self)``."""
        return registry.get_provider(self)

    def setting(self, name: str, default=None):
        return (self.settings or {}).get(name, default)
