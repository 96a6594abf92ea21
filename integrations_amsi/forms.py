"""The AMSI connection form (the provider's ``admin_form``) and its layout (``admin_fieldsets``).

The connection form edits ``Connection.settings`` and ``Connection.credentials`` through typed
fields rather than raw JSON, so a property manager cannot misspell a key. The password is
write-only: the widget never renders a value back and a blank field keeps the stored one.

Saving checks the settings against eSite first (integrations_amsi.onboarding: reachable, login,
portfolio, property, the ClientMerchantID where eSite shows it), unless "Check against eSite"
is unticked; a failure is shown on the field it is about and nothing is saved. A second
connection to an AMSI property already connected is refused unless its reason is given. A new
connection starts disabled: the manager enables it once the import looks right.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations.conf import CALLS_PER_ATTEMPT, timing_chain
from integrations.models import Connection
from rentplatform.models.property import validate_time_zone

from . import onboarding
from .conf import (
    APPROVAL_CODE_MAX,
    DEFAULT_APPROVAL_CODE,
    DEFAULT_CUTOFF,
    DEFAULT_SETTLEMENT_LAG_DAYS,
    DEFAULT_TIMEOUT,
    AmsiSettings,
    parse_cutoff,
    validate_merchant_id,
    validate_url,
)

# form field -> Connection.settings key
SETTINGS_FIELDS = {
    "url": "url",
    "portfolio": "portfolio",
    "user_id": "user_id",
    "property_id": "property_id",
    "merchant_id": "merchant_id",
    "created_by": "created_by",
    "close_cutoff": "close_cutoff",
    "timeout": "timeout",
    "settlement_lag_days": "settlement_lag_days",
    "approval_code": "approval_code",
    "duplicates_refused_code": "duplicates_refused_code",
    "shared_reason": "shared_property_reason",
}
# What the eSite check needs, all valid.
CHECKED_FIELDS = ("url", "portfolio", "user_id", "property_id", "merchant_id", "close_cutoff")


class AmsiConnectionForm(forms.ModelForm):
    url = forms.CharField(
        label="eDex base URL",
        max_length=300,
        validators=[validate_url],
        # The admin's widest text input: a full eDex URL is long.
        widget=forms.TextInput(attrs={"class": "vLargeTextField"}),
        help_text="e.g. https://host/AMSIWEBG003/edexweb/esite (leasing.asmx and ledger.asmx "
        "live under it).",
    )
    portfolio = forms.CharField(label="PortfolioName", max_length=100)
    user_id = forms.CharField(label="UserID", max_length=100)
    password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again. Leave blank to keep the current one.",
    )
    property_id = forms.CharField(
        label="AMSI PropertyId", max_length=20, help_text='Leading zeros matter ("001").'
    )
    merchant_id = forms.CharField(
        label="ClientMerchantID",
        max_length=9,
        validators=[validate_merchant_id],
        help_text="The merchant (group) id this property has in eSite's eDex setup: a whole "
        "number, as production clients sent it.",
    )
    created_by = forms.CharField(
        label="Created By",
        max_length=100,
        required=False,
        help_text="The eDex user name eSite shows as Created By on the batches "
        "(default: the UserID).",
    )
    close_cutoff = forms.CharField(
        label="Batch close cutoff",
        max_length=5,
        initial=DEFAULT_CUTOFF,
        help_text="HH:MM, property time: a day's batches are closed from this time on.",
    )
    time_zone = forms.CharField(
        label="Property time zone",
        max_length=64,
        required=False,
        validators=[validate_time_zone],
        help_text="Written to the property (e.g. America/Chicago): business days and batches. "
        "Blank keeps the property's own.",
    )
    timeout = forms.FloatField(
        label="Operation timeout (s)",
        min_value=1,
        max_value=600,  # a sanity bound; the real limit is the timing chain (clean_timeout)
        initial=DEFAULT_TIMEOUT,
        # The figures are the configured ones: see __init__ (timing_help).
        help_text="Per SOAP call.",
    )

    settlement_lag_days = forms.IntegerField(
        label="Deposit lag (business days)",
        required=False,
        min_value=0,
        max_value=10,
        initial=DEFAULT_SETTLEMENT_LAG_DAYS,
        help_text="SettlementDate when the bank deposit date is not known yet: the batch's day "
        f"plus this many business days (blank: {DEFAULT_SETTLEMENT_LAG_DAYS}).",
    )
    approval_code = forms.CharField(
        label="ApprovalCode",
        required=False,
        max_length=APPROVAL_CODE_MAX,
        initial=DEFAULT_APPROVAL_CODE,
        help_text="The short constant sent when a batch is settled (production sent its "
        f"company name; blank: {DEFAULT_APPROVAL_CODE}).",
    )
    duplicates_refused = forms.BooleanField(
        label="Duplicates refused (confirmed on this eSite)",
        required=False,
        help_text="Tick only after you have seen this eSite refuse a repeated "
        "ClientTransactionID (docs/amsi.md, 'First payment on a live eSite'). Then a payment "
        "whose reply was lost is sent again automatically and eSite's refusal of the repeat "
        "proves it landed. Unticked (the default), such a payment waits as 'unconfirmed' for "
        "a person to look in eSite. Reversals wait for a person either way: this check says "
        "nothing about a repeated ReturnPayment. Who ticked it and when is recorded.",
    )

    duplicates_refused_code = forms.CharField(
        label="ErrorCode of the refusal",
        max_length=10,
        required=False,
        help_text="The ErrorCode this eSite answered when it refused the repeated "
        "ClientTransactionID (the sandbox answers 206). Required with the box above.",
    )

    shared_reason = forms.CharField(
        label="Why a second connection",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Only when another platform property is already connected to this AMSI "
        "property (same PortfolioName and PropertyId): why both are wanted. Without a reason "
        "that is refused, since both would import the same AMSI leases.",
    )
    check_esite = forms.BooleanField(
        label="Check against eSite on save",
        required=False,
        initial=True,
        help_text="Read-only: the eDex services answer, the login, portfolio and property are "
        "right, and the ClientMerchantID matches where eSite shows one. Untick only to save "
        "settings eSite cannot be reached for yet.",
    )

    class Meta:
        model = Connection
        fields = ["property", "enabled"]

    # The admin sets this to the signed-in user's name before saving.
    changed_by = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = self.instance
        current = (instance.settings or {}) if instance.pk else {}
        for field, key in SETTINGS_FIELDS.items():
            if key in current and current[key] not in (None, ""):
                self.initial.setdefault(field, current[key])
        if current.get("duplicates_refused_at"):
            self.initial.setdefault("duplicates_refused", True)
            self.fields["duplicates_refused"].help_text += (
                f" Confirmed by {current.get('duplicates_refused_by')} at "
                f"{current.get('duplicates_refused_at')}."
            )
        self.fields["timeout"].help_text = timing_help()
        if instance.pk:
            self.initial.setdefault("time_zone", instance.property.time_zone)
            if not (instance.credentials or {}).get("password"):
                self.fields["password"].help_text = "Not set yet: required."
        else:
            # Blank: the chosen property keeps its time zone (a default here would quietly
            # overwrite the one set on the property).
            # Nothing syncs or posts before the manager says so.
            self.initial.setdefault("enabled", False)
            self.fields[
                "enabled"
            ].help_text = "New connections start disabled: enable once the import looks right."
        self.esite_check: onboarding.OnboardingCheck | None = None
        # Said beside the admin's "saved" message (the connection admin shows them).
        self.notes: list[str] = []

    def clean_timeout(self) -> float | None:
        """The timing chain, enforced: one attempt's calls and inline wait must end before the
        task timeout, or django-q2 may stop (and later re-deliver) a task still talking to
        eSite."""
        value = self.cleaned_data.get("timeout")
        if value is not None:
            problem = timing_chain().operation_timeout_problem(value)
            if problem:
                raise ValidationError(problem[0].upper() + problem[1:] + ".")
        return value

    def clean_close_cutoff(self) -> str:
        value = self.cleaned_data["close_cutoff"]
        return parse_cutoff(value).strftime("%H:%M")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (
            data.get("duplicates_refused")
            and not (data.get("duplicates_refused_code") or "").strip()
        ):
            self.add_error(
                "duplicates_refused_code",
                ValidationError(
                    "Give the ErrorCode eSite answered for the repeat: without it a refused "
                    "repeat could not be told from any other refusal."
                ),
            )
        has_password = bool((self.instance.credentials or {}).get("password"))
        if not data.get("password") and not has_password:
            self.add_error("password", ValidationError("A password is required."))
        self._check_same_amsi_property(data)
        if data.get("check_esite") and not self.errors and self._has(data, CHECKED_FIELDS):
            check = onboarding.check_settings(self._candidate(data))
            if not check.ok:
                message = onboarding.unsaved(check.message)
                if not message.endswith((".", ".)")):
                    message += "."
                self.add_error(check.field or None, ValidationError(message))
            else:
                self.esite_check = check
                if check.caveat:
                    self.notes.append(f"Connection OK, but {check.caveat}.")
        return data

    def _check_same_amsi_property(self, data: dict[str, Any]) -> None:
        if not self._has(data, ("portfolio", "property_id")):
            return
        others = onboarding.same_amsi_property(
            data["portfolio"], data["property_id"], connection=self.instance
        )
        if others and not (data.get("shared_reason") or "").strip():
            message = onboarding.duplicate_message(others, data["portfolio"], data["property_id"])
            self.add_error(
                "property_id", ValidationError(f"{message} in 'Why a second connection'.")
            )

    @staticmethod
    def _has(data: dict[str, Any], names: tuple[str, ...]) -> bool:
        return all(data.get(name) not in (None, "") for name in names)

    def _candidate(self, data: dict[str, Any]) -> AmsiSettings:
        """The settings as they would be saved, for the eSite check."""
        stored = (self.instance.credentials or {}).get("password", "")
        return AmsiSettings(
            url=data["url"],
            portfolio=data["portfolio"],
            user_id=data["user_id"],
            password=data.get("password") or stored,
            property_id=data["property_id"],
            merchant_id=str(data["merchant_id"]),
            created_by=data.get("created_by") or data["user_id"],
            close_cutoff=parse_cutoff(data["close_cutoff"]),
            timeout=float(data.get("timeout") or DEFAULT_TIMEOUT),
        )

    def save(self, commit: bool = True) -> Connection:
        connection: Connection = super().save(commit=False)
        connection.provider = "amsi"
        settings = dict(connection.settings or {})
        for field, key in SETTINGS_FIELDS.items():
            value = self.cleaned_data.get(field)
            if value in (None, ""):
                settings.pop(key, None)
            else:
                settings[key] = value
        record_duplicates_confirmation(
            settings, self.cleaned_data.get("duplicates_refused", False), self.changed_by
        )
        connection.settings = settings
        if self.esite_check is not None:
            onboarding.record(connection, self.esite_check)
        password = self.cleaned_data.get("password")
        if password:
            connection.credentials = {**(connection.credentials or {}), "password": password}
        prop = connection.property
        time_zone = self.cleaned_data.get("time_zone") or prop.time_zone
        if commit:
            if prop.time_zone != time_zone:
                prop.time_zone = time_zone
                prop.save(update_fields=["time_zone"])
            connection.save()
        else:
            # The admin saves the object itself: still write the property's time zone then.
            prop.time_zone = time_zone
            self._pending_time_zone = True
        return connection

    def _save_m2m(self) -> None:
        super()._save_m2m()
        if getattr(self, "_pending_time_zone", False):
            self.instance.property.save(update_fields=["time_zone"])


# The change page's layout, one section per concern; the read-only fields are the connection
# admin's.
CONNECTION_FIELDSETS = [
    (
        "Platform property",
        {
            "fields": ["property", "time_zone", "enabled", "backfill_link"],
            "description": "A disabled connection neither syncs nor posts: it holds its "
            "payments' postings and sends them once it is enabled again.",
        },
    ),
    (
        "eDex web services",
        {
            "classes": ["wide"],
            "fields": ["url", "portfolio", "user_id", "password", "credentials_set", "timeout"],
        },
    ),
    (
        "Property in AMSI",
        {"fields": ["property_id", "merchant_id"]},
    ),
    (
        "Second connection to the same AMSI property",
        {"classes": ["collapse"], "fields": ["shared_reason"]},
    ),
    ("Batches", {"fields": ["created_by", "close_cutoff"]}),
    ("Settlement", {"fields": ["settlement_lag_days", "approval_code"]}),
    (
        "Unknown outcomes",
        {
            "fields": ["duplicates_refused", "duplicates_refused_code"],
            "description": "Whether a payment whose reply was lost may be sent again "
            "automatically. Leave unticked until this eSite has been seen to refuse a "
            "repeated ClientTransactionID.",
        },
    ),
    (
        "Check against eSite",
        {"fields": ["check_esite", "last_tested_at", "last_test_ok", "last_test_message"]},
    ),
]


def timing_help() -> str:
    """The timeout field's help, with the configured numbers (docs/configuration.md)."""
    chain = timing_chain()
    limit = chain.max_operation_timeout()
    if limit is None:
        return "Per SOAP call."
    return (
        f"Per SOAP call. One attempt may make {CALLS_PER_ATTEMPT} calls and wait up to "
        f"{chain.inline_wait:g} s for its retry, which must end within the task timeout "
        f"({chain.task_timeout:g} s): less than {limit:g} s (default {DEFAULT_TIMEOUT:g} s)."
    )


def record_duplicates_confirmation(settings: dict, confirmed: bool, who: str) -> None:
    """Keep (or clear) who confirmed that this eSite refuses a repeated ClientTransactionID."""
    if not confirmed:
        settings.pop("duplicates_refused_by", None)
        settings.pop("duplicates_refused_at", None)
    elif not settings.get("duplicates_refused_at"):
        settings["duplicates_refused_by"] = who or "unknown"
        settings["duplicates_refused_at"] = timezone.now().isoformat(timespec="seconds")
