"""Admin for the host platform.

State changes go through ``rentplatform.services`` here too: payment, batch and access fields
are read-only, and the actions (block/unblock, void, mark deposited) call the services. Each
action names a permission (Django's ``@admin.action(permissions=[...])`` plus a matching
``has_<perm>_permission``), so a staff user without it neither sees nor runs it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from import_export import resources
from import_export.admin import ImportExportModelAdmin
from import_export.fields import Field
from import_export.widgets import ForeignKeyWidget

from rentplatform.csvsafe import neutralise_dataset
from rentplatform.models import (
    AccessSource,
    Building,
    DepositBatch,
    Lease,
    LeaseResident,
    NachaReturnCode,
    Payment,
    Property,
    Resident,
    Reversal,
    Unit,
)
from rentplatform.models.payment import ReferenceFormatError, reference_q
from rentplatform.services import (
    ServiceError,
    block_lease,
    deposit_batch,
    unblock_lease,
    void_payment,
)
from rentplatform.services.batches import batch_totals


class NarrowListMedia:
    """Change lists that fit a 1,400 px screen: headers wrap, long values break (the css)."""

    css = {"all": ["rentplatform/admin_lists.css"]}


class ReadOnlyAdminMixin:
    """Rows written only by the services: viewable, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SafeImportExportModelAdmin(ImportExportModelAdmin):
    """Every django-import-export export (any resource, CSV/TSV/XLSX/...) is neutralised
    against spreadsheet formulas before it is written: names, addresses and emails come from
    outside (AMSI, residents). Plain numbers such as a balance of -35.00 stay numbers
    (rentplatform.csvsafe). Hooked on the admin's dataset, so a resource added later is
    covered too."""

    def get_data_for_export(self, request, queryset, **kwargs):
        return neutralise_dataset(super().get_data_for_export(request, queryset, **kwargs))


# --- real estate -----------------------------------------------------------------------------


class BuildingInline(admin.TabularInline):
    model = Building
    extra = 0
    show_change_link = True


@admin.register(Property)
class PropertyAdmin(SafeImportExportModelAdmin):
    list_display = ["code", "name", "time_zone", "manager_emails", "created_at"]
    list_filter = ["time_zone"]
    search_fields = ["code", "name", "manager_emails"]
    inlines = [BuildingInline]


@admin.register(Building)
class BuildingAdmin(SafeImportExportModelAdmin):
    list_display = ["__str__", "name", "property"]
    list_filter = ["property"]
    search_fields = ["code", "name", "property__code", "property__name"]
    autocomplete_fields = ["property"]


@admin.register(Unit)
class UnitAdmin(SafeImportExportModelAdmin):
    list_display = ["__str__", "unit_type", "address"]
    list_filter = ["building__property", "unit_type"]
    search_fields = ["code", "address", "building__code", "building__property__code"]
    autocomplete_fields = ["building"]
    list_select_related = ["building__property"]


class MembershipInline(admin.TabularInline):
    model = LeaseResident
    extra = 0
    autocomplete_fields = ["resident", "lease"]


@admin.register(Resident)
class ResidentAdmin(SafeImportExportModelAdmin):
    list_display = ["__str__", "email", "phone", "user"]
    search_fields = ["first_name", "last_name", "email", "phone", "user__username"]
    autocomplete_fields = ["user"]
    inlines = [MembershipInline]


# --- leases and payment access ---------------------------------------------------------------

_ACCESS_FIELDS = (
    "accounting_access",
    "accounting_access_reason",
    "accounting_access_since",
    "platform_blocked",
    "platform_block_reason",
    "platform_blocked_since",
)


class UnitByCodesWidget(ForeignKeyWidget):
    """A unit named as people name it: its code in the ``unit`` column, within the row's
    ``property`` and ``building`` codes (a database id means nothing in a spreadsheet)."""

    def __init__(self):
        super().__init__(Unit, field="code")

    def get_queryset(self, value, row, *args, **kwargs):
        return Unit.objects.filter(
            building__property__code=str((row or {}).get("property") or "").strip(),
            building__code=str((row or {}).get("building") or "").strip(),
        )

    def clean(self, value, row=None, **kwargs):
        try:
            return super().clean(str(value or "").strip(), row=row, **kwargs)
        except Unit.DoesNotExist:
            raise ValueError(
                f"no unit {value} in building {(row or {}).get('building')} of property "
                f"{(row or {}).get('property')}"
            ) from None


class LeaseResource(resources.ModelResource):
    """Leases with their unit by property, building and unit codes. Imports leave payment
    access alone: only the services change it."""

    property = Field(attribute="unit__building__property__code", readonly=True)
    building = Field(attribute="unit__building__code", readonly=True)
    unit = Field(attribute="unit", column_name="unit", widget=UnitByCodesWidget())

    class Meta:
        model = Lease
        fields = (
            "id",
            "property",
            "building",
            "unit",
            "status",
            "start_date",
            "end_date",
            "balance",
        )


class BlockPaymentsForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Shown to the resident when they try to pay, with the managers' emails.",
    )


@admin.register(Lease)
class LeaseAdmin(SafeImportExportModelAdmin):
    resource_classes = [LeaseResource]
    list_display = [
        "__str__",
        "status_display",
        "balance_display",
        "access_display",
        "residents_display",
    ]
    Media = NarrowListMedia
    list_filter = ["status", "accounting_access", "platform_blocked", "unit__building__property"]
    search_fields = [
        "id",
        "unit__code",
        "unit__building__property__code",
        "residents__last_name",
        "residents__email",
    ]
    list_select_related = ["unit__building__property"]
    autocomplete_fields = ["unit"]
    readonly_fields = ["effective_access_display", *_ACCESS_FIELDS, "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["unit", "status", "start_date", "end_date", "balance"]}),
        (
            "Online payment access",
            {
                "fields": ["effective_access_display", *_ACCESS_FIELDS],
                "description": "Changed with the list's block/unblock actions or by the "
                "accounting integration, never edited by hand.",
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [MembershipInline]
    actions = ["block_payments", "unblock_payments"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lease]:
        return super().get_queryset(request).prefetch_related("residents")

    # A status word and an amount never break mid-word (the list css lets long values break).
    @admin.display(description="Status", ordering="status")
    def status_display(self, lease: Lease) -> str:
        return format_html('<span class="nowrap">{}</span>', lease.get_status_display())

    @admin.display(description="Balance", ordering="balance")
    def balance_display(self, lease: Lease) -> str:
        if lease.balance is None:
            return "-"
        return format_html('<span class="nowrap">{}</span>', lease.balance)

    @admin.display(description="Payment access")
    def access_display(self, lease: Lease) -> str:
        """E.g. "Blocked by a platform admin: <reason>"; the accounting system's reasons say
        where they come from ("... in AMSI")."""
        access = lease.effective_access
        label = access.label
        if access.source == AccessSource.PLATFORM:
            label += " by a platform admin"
        return f"{label}: {access.reason}" if access.reason else label

    @admin.display(description="Effective access")
    def effective_access_display(self, lease: Lease) -> str:
        access = lease.effective_access
        parts = [access.label]
        if access.reason:
            parts.append(f"reason: {access.reason}")
        if access.source:
            parts.append(f"source: {access.source}")
        if access.since:
            parts.append(f"since {access.since:%Y-%m-%d %H:%M %Z}")
        return "; ".join(parts)

    @admin.display(description="Residents")
    def residents_display(self, lease: Lease) -> str:
        return ", ".join(str(r) for r in lease.residents.all())

    def has_block_payments_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rentplatform.block_payments")

    @admin.action(description="Block online payments", permissions=["block_payments"])
    def block_payments(self, request: HttpRequest, queryset: QuerySet[Lease]) -> Any:
        """Asks for the reason on an intermediate page, then blocks each lease."""
        form = BlockPaymentsForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            count = 0
            for lease in queryset:
                block_lease(lease, form.cleaned_data["reason"])
                count += 1
            self.message_user(request, f"Blocked online payments on {count} lease(s).")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Block online payments",
            "opts": self.model._meta,
            "form": form,
            "leases": queryset,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/rentplatform/lease/block_payments.html", context)

    @admin.action(description="Unblock online payments", permissions=["block_payments"])
    def unblock_payments(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        count = 0
        for lease in queryset.filter(platform_blocked=True):
            unblock_lease(lease)
            count += 1
        self.message_user(
            request,
            f"Lifted the platform block on {count} lease(s). Blocks from the accounting system "
            "stay until it lifts them.",
        )


# --- payments and batches --------------------------------------------------------------------


class ReferenceSearchMixin:
    """A search for a payment reference as shown (10 hex digits), or all 32, finds it.

    The stock ``icontains`` search on a UUID column compares dashed text on PostgreSQL, where
    the short form (which runs over the first dash) would find nothing.
    """

    reference_search_fields: list[str] = []

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(  # type: ignore[misc]
            request, queryset, search_term
        )
        matching = Q()
        try:
            for field in self.reference_search_fields:
                matching |= reference_q(search_term, field)
        except ReferenceFormatError:
            return results, may_have_duplicates
        return results | queryset.filter(matching), may_have_duplicates


@admin.register(Payment)
class PaymentAdmin(ReferenceSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "public_id_short",
        "lease",
        "amount",
        "method",
        "state",
        "batch_id_display",
        "business_day",
    ]
    list_filter = ["state", "method", "business_day", "batch__property"]
    Media = NarrowListMedia
    search_fields = ["reference", "idempotency_key", "batch__batch_id", "lease__id"]
    reference_search_fields = ["reference"]
    list_select_related = ["lease__unit__building__property", "batch__property"]
    date_hierarchy = "accepted_at"
    actions = ["void_payments"]

    @admin.display(description="Reference")
    def public_id_short(self, payment: Payment) -> str:
        return payment.short_id

    # The batch's id, not its long __str__ (property, stream and day are filters already); the
    # time of day is on the payment's page, the day here.
    @admin.display(description="Batch", ordering="batch__batch_id")
    def batch_id_display(self, payment: Payment) -> str:
        return payment.batch.batch_id

    def has_void_payment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rentplatform.void_payment")

    @admin.action(description="Void (same day only)", permissions=["void_payment"])
    def void_payments(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        """Each payment separately: one refusal must not stop the others."""
        for payment in queryset:
            try:
                void_payment(payment, note=f"voided in the admin by {request.user.get_username()}")
            except ServiceError as err:
                self.message_user(request, f"{payment}: refused: {err.message}", messages.ERROR)
            else:
                self.message_user(request, f"Payment {payment.short_id} voided.", messages.SUCCESS)


class PaymentInline(admin.TabularInline):
    model = Payment
    fields = ["reference", "lease", "amount", "method", "state", "accepted_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReversalInline(PaymentInline):
    model = Reversal
    fk_name = "batch"
    fields = ["reference", "payment", "kind", "return_code", "amount", "created_at"]
    readonly_fields = fields


@admin.register(DepositBatch)
class DepositBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "batch_id",
        "property",
        "stream",
        "kind",
        "business_day",
        "status",
        "payments_count",
        "net_total",
    ]
    list_filter = ["status", "stream", "kind", "property", "business_day"]
    search_fields = ["batch_id", "property__code"]
    list_select_related = ["property"]
    Media = NarrowListMedia
    date_hierarchy = "business_day"
    readonly_fields = ["totals_display"]
    inlines = [PaymentInline, ReversalInline]
    actions = ["mark_deposited"]

    @admin.display(description="Payments / reversals")
    def payments_count(self, batch: DepositBatch) -> str:
        totals = batch_totals(batch)
        return f"{totals['payments']} / {totals['reversals']}"

    @admin.display(description="Net")
    def net_total(self, batch: DepositBatch) -> str:
        return str(batch_totals(batch)["net"])

    @admin.display(description="Totals")
    def totals_display(self, batch: DepositBatch) -> str:
        t = batch_totals(batch)
        return (
            f"{t['payments']} payment(s) {t['payments_total']}; "
            f"{t['reversals']} reversal(s) {t['reversals_total']}; net {t['net']}"
        )

    def has_deposit_batch_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rentplatform.deposit_batch")

    @admin.action(description="Mark deposited", permissions=["deposit_batch"])
    def mark_deposited(self, request: HttpRequest, queryset: QuerySet[DepositBatch]) -> None:
        for batch in queryset:
            try:
                deposit_batch(batch)
            except ServiceError as err:
                self.message_user(request, f"{batch}: refused: {err.message}", messages.ERROR)
            else:
                self.message_user(request, f"{batch}: deposited.", messages.SUCCESS)


@admin.register(Reversal)
class ReversalAdmin(ReferenceSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "kind", "return_code", "amount", "batch", "business_day"]
    Media = NarrowListMedia
    list_filter = ["kind", "business_day", "batch__property"]
    search_fields = ["reference", "payment__reference", "batch__batch_id"]
    reference_search_fields = ["reference", "payment__reference"]
    list_select_related = ["payment", "batch__property"]


@admin.register(NachaReturnCode)
class NachaReturnCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "description", "counts_as_nsf"]
    list_editable = ["description", "counts_as_nsf"]
    list_filter = ["counts_as_nsf"]
    search_fields = ["code", "description"]
