"""Admin forms: provider choices from the registry; credentials are write-only."""

from __future__ import annotations

from django import forms

from integrations.models import Connection
from integrations.providers import registry

ENABLED_HELP = (
    "Unticked, payments still get their postings but nothing is sent; ticking it (and saving) "
    "sends what waited and offers a backfill of payments taken before the connection existed."
)


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
        self.fields["enabled"].help_text = ENABLED_HELP

    def save(self, commit: bool = True):
        connection = super().save(commit=False)
        password = self.cleaned_data.get("password")
        if password:
            connection.credentials = {**(connection.credentials or {}), "password": password}
        if commit:
            connection.save()
        return connection


class BackfillForm(forms.Form):
    """The date a backfill starts from: the property's business day of the first payment to
    post. No default: a backfill only runs for a date a manager chose."""

    since = forms.DateField(
        label="Payments and reversals from",
        help_text="The property's business day (YYYY-MM-DD). Everything from this day on that "
        "has no posting gets one; nothing is posted twice. Leave this page to backfill nothing.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_since(self):
        import datetime as dt

        since = self.cleaned_data["since"]
        if since > dt.date.today() + dt.timedelta(days=1):
            raise forms.ValidationError("that day is in the future: nothing was taken yet")
        return since
