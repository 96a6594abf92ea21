"""Admin forms of the framework: the generic connection form (for a provider without a typed
form of its own: ``AccountingProvider.admin_form``), the backfill date, and the lease link.

Credentials are write-only: the password widget never renders a value back and a blank field
keeps the stored one. The provider is chosen before the form is shown (the connection admin's
first step), so it is not a field here.
"""

from __future__ import annotations

from django import forms

from integrations.models import Connection

ENABLED_HELP = (
    "Unticked, payments still get their postings but nothing is sent; ticking it (and saving) "
    "sends what waited and offers a backfill of payments taken before the connection existed."
)


class ConnectionForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave blank to keep the current one.",
    )

    class Meta:
        model = Connection
        fields = ["property", "enabled", "settings"]

    # The admin sets this to the signed-in user's name before saving (unused here).
    changed_by = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "enabled" in self.fields:  # a view-only user's form has no editable fields
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


class LeaseLinkForm(forms.Form):
    """The remote lease id a person typed; label and help come from the lease's provider."""

    remote_id = forms.CharField(max_length=80)

    def __init__(self, provider, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["remote_id"]
        field.label = provider.link_label
        field.help_text = provider.link_help
