"""Admin for AMSI: connections with typed fields, the mirror links, and lease actions.

- ``AmsiConnection`` (a proxy of the generic Connection, AMSI rows only) gets the typed form
  and three actions, each behind its own permission: test, import, sync now.
- Lease and batch links are read-only: only the importer and the lease-link service write them.
- The host's Lease admin is extended (re-registered as a subclass, so the host knows nothing of
  AMSI) with "Sync this lease from AMSI now" and "Link to AMSI lease", which asks for the ResiID
  on an intermediate page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.utils.html import format_html

from integrations import services
from integrations.admin import EnableAndBackfillMixin, ReadOnlyAdmin
from integrations.models import Connection, SyncKind, SyncStatus
from rentplatform.admin import LeaseAdmin
from rentplatform.models import Lease

from .forms import AmsiConnectionForm, LeaseLinkForm
from .linking import LinkRefused, link_lease
from .models import AmsiBatchLink, AmsiLeaseLink
from .proxy_models import AmsiConnection


def _level(run: Any) -> int:
    if run.status == SyncStatus.SUCCEEDED:
        return messages.SUCCESS
    return messages.WARNING if run.status == SyncStatus.PARTIAL else messages.ERROR


@admin.register(AmsiConnection)
class AmsiConnectionAdmin(EnableAndBackfillMixin, admin.ModelAdmin):
    """Enabling (the checkbox) queues what the connection held while disabled and offers a
    backfill of earlier payments (EnableAndBackfillMixin)."""

    form = AmsiConnectionForm
    list_display = ["property", "amsi_property", "portfolio", "enabled", "last_test", "last_sync"]
    list_filter = ["enabled", "last_test_ok"]
    search_fields = ["property__code", "property__name"]
    readonly_fields = [
        "password_state",
        "last_tested_at",
        "last_test_ok",
        "last_test_message",
        "backfill_link",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": ["property", "enabled", "backfill_link"],
                "description": "A disabled connection holds its payments' postings and sends "
                "them once it is enabled again.",
            },
        ),
        (
            "eDex web services",
            {"fields": ["url", "portfolio", "user_id", "password", "password_state", "timeout"]},
        ),
        (
            "Property in AMSI",
            {"fields": ["property_id", "merchant_id", "created_by", "close_cutoff", "time_zone"]},
        ),
        (
            "Settlement",
            {"fields": ["settlement_lag_days", "approval_code"]},
        ),
        (
            "Unknown outcomes",
            {
                "fields": ["duplicates_refused", "duplicates_refused_code"],
                "description": "Whether a payment whose reply was lost may be sent again "
                "automatically. Leave unticked until this eSite has been seen to refuse a "
                "repeated ClientTransactionID.",
            },
        ),
        ("Last test", {"fields": ["last_tested_at", "last_test_ok", "last_test_message"]}),
    ]
    actions = ["test_connection", "import_property", "sync_now"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.confirmed_by = request.user.get_username()
        return form

    def get_queryset(self, request: HttpRequest) -> QuerySet[AmsiConnection]:
        return super().get_queryset(request).select_related("property")

    # The proxy has its own model permissions; holding the generic Connection's is enough too.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            super().has_view_permission(request, obj)
            or request.user.has_perm("integrations.view_connection")
            or self.has_change_permission(request, obj)
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) or request.user.has_perm(
            "integrations.change_connection"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) or request.user.has_perm(
            "integrations.add_connection"
        )

    def has_test_connection_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.test_connection")

    def has_run_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_import")

    def has_run_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_sync")

    @admin.display(description="AMSI PropertyId")
    def amsi_property(self, obj: Connection) -> str:
        return obj.setting("property_id", "")

    @admin.display(description="PortfolioName")
    def portfolio(self, obj: Connection) -> str:
        return obj.setting("portfolio", "")

    @admin.display(description="Password")
    def password_state(self, obj: Connection) -> str:
        return "set (encrypted)" if (obj.credentials or {}).get("password") else "not set"

    @admin.display(description="Last test")
    def last_test(self, obj: Connection) -> str:
        if obj.last_test_ok is None:
            return "never tested"
        return format_html(
            "{} {}", "OK" if obj.last_test_ok else "FAILED", obj.last_test_message[:100]
        )

    @admin.display(description="Last sync")
    def last_sync(self, obj: Connection) -> str:
        run = obj.sync_runs.order_by("-started_at").first()
        return f"{run.get_kind_display()} {run.get_status_display()}" if run else "never"

    @admin.action(description="Test connection", permissions=["test_connection"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            check = services.test_connection(connection)
            level = messages.SUCCESS if check.ok else messages.ERROR
            self.message_user(request, f"{connection.property.code}: {check.message}", level)

    @admin.action(description="Import residents and leases", permissions=["run_import"])
    def import_property(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self._sync(request, queryset, SyncKind.IMPORT)

    @admin.action(description="Sync now (changes since the last sync)", permissions=["run_sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self._sync(request, queryset, SyncKind.DELTA)

    def _sync(self, request: HttpRequest, queryset: QuerySet[Connection], kind: str) -> None:
        for connection in queryset:
            run = services.run_sync(connection, kind, triggered_by=f"admin:{request.user}")
            self.message_user(request, f"{connection.property.code}: {run.summary()}", _level(run))


@admin.register(AmsiLeaseLink)
class AmsiLeaseLinkAdmin(ReadOnlyAdmin):
    list_display = [
        "composite",
        "lease",
        "active",
        "credit_status",
        "block_payment_access",
        "block_all_access",
        "linked_by_hand",
        "last_synced_at",
    ]
    list_filter = [
        "active",
        "credit_status",
        "block_payment_access",
        "block_all_access",
        "linked_by_hand",
        "connection__property",
    ]
    search_fields = ["resi_id", "=bldg_id", "=unit_id", "external_reference", "lease__id"]
    list_select_related = ["lease__unit__building__property", "connection__property"]
    readonly_fields = [f.name for f in AmsiLeaseLink._meta.fields]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AmsiLeaseLink], search_term: str
    ) -> tuple[QuerySet[AmsiLeaseLink], bool]:
        """A pasted composite (001-01-101-21) finds exactly that lease."""
        parts = search_term.strip().split("-")
        if len(parts) == 4 and all(parts):
            found = queryset.filter(
                property_id=parts[0], bldg_id=parts[1], unit_id=parts[2], resi_id=parts[3]
            )
            return found, False
        return super().get_search_results(request, queryset, search_term)


@admin.register(AmsiBatchLink)
class AmsiBatchLinkAdmin(ReadOnlyAdmin):
    """eSite External batches: payments batches (external number = our batch id) and return
    batches (external number = the original ClientTransactionID), with what landed in each."""

    list_display = [
        "client_jnl_no",
        "kind",
        "host_batch",
        "esite_batch_no",
        "bank_book",
        "settled_amount",
        "settlement_date",
        "settled_at",
        "needs_attention",
    ]
    list_filter = ["kind", "needs_attention", "connection__property"]
    search_fields = ["client_jnl_no", "esite_batch_no", "batch__batch_id"]
    list_select_related = ["batch"]
    readonly_fields = [f.name for f in AmsiBatchLink._meta.fields] + ["landed"]

    @admin.display(description="reports under", ordering="batch__batch_id")
    def host_batch(self, obj: AmsiBatchLink) -> str:
        return obj.batch.batch_id

    @admin.display(description="landed in this eSite batch")
    def landed(self, obj: AmsiBatchLink) -> str:
        from django.utils.html import format_html_join

        entries = list(obj.entries.select_related("posting").order_by("pk"))
        if not entries:
            return "nothing yet"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td style='text-align:right'>{}</td></tr>",
            (
                (
                    e.posting.get_kind_display(),
                    e.posting.key,
                    e.posting.get_state_display(),
                    e.amount,
                )
                for e in entries
            ),
        )
        return format_html(
            "<table><tr><th>Posting</th><th>Key</th><th>State</th><th>Amount</th></tr>{}</table>",
            rows,
        )


_LINK_PAGE = engines["django"].from_string(
    """{% extends "admin/base_site.html" %}
{% block content %}
<p>Lease #{{ lease.pk }}, unit {{ lease.unit.building.code }}-{{ lease.unit.code }} of
{{ lease.property }}. Enter only the AMSI ResiID: the last part of eSite's
Property-Building-Unit-ResiID. It is checked with AMSI for this unit before it is saved.</p>
<form method="post">{% csrf_token %}
  {{ form.as_p }}
  <input type="hidden" name="{{ action_checkbox_name }}" value="{{ lease.pk }}">
  <input type="hidden" name="action" value="link_to_amsi">
  <input type="submit" name="apply" value="Verify with AMSI and link">
</form>
{% endblock %}"""
)


class AmsiLeaseAdmin(LeaseAdmin):
    """The host's Lease admin plus the AMSI actions."""

    actions = [*LeaseAdmin.actions, "sync_from_amsi", "link_to_amsi"]

    def has_run_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_sync")

    def has_run_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_import")

    @admin.action(description="Sync this lease from AMSI now", permissions=["run_sync"])
    def sync_from_amsi(self, request: HttpRequest, queryset: QuerySet[Lease]) -> None:
        for lease in queryset.select_related("unit__building__property"):
            connection = Connection.objects.filter(property=lease.property, enabled=True).first()
            if connection is None:
                self.message_user(
                    request, f"{lease}: its property has no enabled connection", messages.ERROR
                )
                continue
            run = services.run_sync(
                connection, SyncKind.LEASE, lease_id=lease.pk, triggered_by=f"admin:{request.user}"
            )
            self.message_user(request, f"{lease}: {run.summary()}", _level(run))

    @admin.action(description="Link to AMSI lease (ResiID)", permissions=["run_import"])
    def link_to_amsi(self, request: HttpRequest, queryset: QuerySet[Lease]) -> HttpResponse | None:
        leases = list(queryset[:2])
        if len(leases) != 1:
            self.message_user(request, "Select exactly one lease to link.", messages.ERROR)
            return None
        lease = leases[0]
        form = LeaseLinkForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                result = link_lease(
                    lease, form.cleaned_data["resi_id"], triggered_by=f"admin link:{request.user}"
                )
            except LinkRefused as err:
                form.add_error("resi_id", err.message)
            else:
                level = _level(result.run) if result.run else messages.SUCCESS
                self.message_user(request, result.message, level)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Link to AMSI lease",
            "opts": self.model._meta,
            "form": form,
            "lease": lease,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return HttpResponse(_LINK_PAGE.render(context, request))


if admin.site.is_registered(Lease):
    admin.site.unregister(Lease)
admin.site.register(Lease, AmsiLeaseAdmin)
