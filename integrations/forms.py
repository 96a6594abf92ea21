"""Admin forms: provider choices from the registry; credentials are write-only."""

from __future__ import annotations

from django import forms

from integrations.models import Connection
from integrations.providers import registry


class ConnectionForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=())
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave blank to keep the current one.",
    )

    class Meta:
        model = Connection
        fields = ["property", "provider", "enabled", "settings"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [
            (cls.id, cls.name) for cls in registry.all_providers() if not cls.has_own_admin
        ]

    def save(self, commit: bool = True):
        connection = super().save(commit=False)
        password = self.cleaned_data.get("password")
        if password:
            connection.credentials = {**(connection.credentials or {}), "password": password}
        if commit:
            connection.save()
        return connection
