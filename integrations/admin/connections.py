"""The connection admin: one for every provider, dispatching through the registry.

Design notes:
- A connection's provider decides its form and its layout (``AccountingProvider.admin_form``
  and ``admin_fieldsets``; the generic form, settings as JSON, when it has none), so a provider
  writes a form, never an admin. A row whose provider is not installed gets the generic form,
  so it can still be seen and disabled.
- Adding a connection starts with choosing the accounting system (a page listing the
  registered providers; the add form is then ``?provider=<id>``), because the form depends on
  it. The provider is not editable afterwards: another system needs other settings.
- The actions (test, import, sync now, full resync), the list columns and the
  enable-and-backfill flow (EnableAndBackfillMixin) exist once, here; each action names its own
  permission.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from integrations import services
from integrations.exceptions import ProviderConfigurationError
from integrations.forms import ConnectionForm
from integrations.models import Connection, PostingState, SyncKind
from integrations.providers import registry
from integrations.providers.base import AccountingProvider

from .base import EnableAndBackfillMixin, run_level

# The layout for a provider without ``admin_fieldsets`` (the generic form).
GENERIC_FIELDSETS = [
    (None, {"fields": ["property", "provider_name", "enabled", "backfill_link"]}),
    ("Settings", {"fields": ["settings", "password", "credentials_set"]}),
    ("Last test", {"fields": ["last_tested_at", "last_test_ok", "last_test_message"]}),
]

# Read-only fields that mean nothing before the connection is saved.
NOT_ON_THE_ADD_PAGE = {
    "backfill_link",
    "credentials_set",
    "last_tested_at",
    "last_test_ok",
    "last_test_message",
}


def without_fields(fieldsets: list, drop: set[str]) -> list:
    """The fieldsets without the named fields; a section left empty is dropped."""
    kept = []
    for name, options in fieldsets:
        fields = [f for f in options["fields"] if f not in drop]
        if fields:
            kept.append((name, {**options, "fields": fields}))
    return kept


def provider_class(provider_id: str) -> type[AccountingProvider] | None:
    """The registered provider class, or None for an id no installed provider has."""
    try:
        return registry.get(provider_id)
    except ProviderConfigurationError:
        return None


class ProviderFilter(admin.SimpleListFilter):
    """By accounting system, named as the registry names it."""

    title = "accounting system"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return registry.as_choices()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Connection]):
        return queryset.filter(provider=self.value()) if self.value() else queryset


@admin.register(Connection)
class ConnectionAdmin(EnableAndBackfillMixin, admin.ModelAdmin):
    list_display = [
        "property",
        "provider_name",
        "remote",
        "enabled",
        "last_test",
        "last_sync",
        "pending",
        "attention",
    ]
    list_filter = [ProviderFilter, "enabled", "last_test_ok"]
    search_fields = ["property__code", "property__name"]
    readonly_fields = [
        "provider_name",
        "credentials_set",
        "last_tested_at",
        "last_test_ok",
        "last_test_message",
        "backfill_link",
    ]
    actions = ["test_connection", "import_property", "sync_now", "full_sync"]

    class Media:
        # The host's change-list css: headers wrap so the list fits a 1,400 px screen.
        css = {"all": ["rentplatform/admin_lists.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        return super().get_queryset(request).select_related("property")

    # -- the provider decides the form ---------------------------------------------------------
    def chosen_provider(
        self, request: HttpRequest, obj: Connection | None = None
    ) -> type[AccountingProvider] | None:
        """The saved connection's provider; for a new one, the one chosen (``?provider=``)."""
        if obj is not None:
            return provider_class(obj.provider)
        return provider_class(request.GET.get("provider", ""))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        cls = self.chosen_provider(request, obj)
        kwargs["form"] = (cls.admin_form if cls else None) or ConnectionForm
        form = super().get_form(request, obj, change=change, **kwargs)
        form.changed_by = request.user.get_username()
        return form

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        cls = self.chosen_provider(request, obj)
        fieldsets = (cls.admin_fieldsets if cls else None) or GENERIC_FIELDSETS
        if obj is None:
            # The add page: a backfill link, "credentials not set" and an empty last test say
            # nothing about a connection that does not exist yet (the saved page shows them).
            fieldsets = without_fields(fieldsets, NOT_ON_THE_ADD_PAGE)
        return fieldsets

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Connection:
        connection = super().save_form(request, form, change)
        if not change:
            connection.provider = self.chosen_provider(request).id
        # What a provider's form checked but could not confirm (e.g. AMSI's merchant id).
        for note in getattr(form, "notes", ()):
            self.message_user(request, note, messages.WARNING)
        return connection

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        cls = self.chosen_provider(request)
        if cls is None:
            return self.choose_provider_view(request)
        extra_context = {**(extra_context or {}), "title": f"Add {cls.name} connection"}
        return super().add_view(request, form_url, extra_context)

    def choose_provider_view(self, request: HttpRequest) -> HttpResponse:
        """The add view's first step: which accounting system the property uses."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        providers = registry.all_providers()
        keep = {k: v for k, v in request.GET.items() if k != "provider"}
        links = [(cls.name, "?" + urlencode({**keep, "provider": cls.id})) for cls in providers]
        if len(links) == 1:
            return HttpResponseRedirect(links[0][1])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Add connection: which accounting system does the property use?",
            "providers": links,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(
            request, "admin/integrations/connection/choose_provider.html", context
        )

    # -- columns ---------------------------------------------------------------------------------
    @admin.display(description="Accounting system", ordering="provider")
    def provider_name(self, obj: Connection) -> str:
        cls = provider_class(obj.provider)
        if cls is not None:
            return cls.name
        return f"{obj.provider} (not installed)" if obj.provider else "-"

    @admin.display(description="In the accounting system")
    def remote(self, obj: Connection) -> str:
        cls = provider_class(obj.provider)
        return (cls(obj).describe() if cls else "") or "-"

    @admin.display(description="Credentials")
    def credentials_set(self, obj: Connection) -> str:
        return "set (encrypted)" if obj.credentials else "not set"

    @admin.display(description="Last test", ordering="last_tested_at")
    def last_test(self, obj: Connection) -> str:
        """OK and when; a failure with its reason (cut short: the whole message is the
        connection page's, and in the cell's tooltip)."""
        if obj.last_test_ok is None:
            return "never tested"
        when = (
            f"{timezone.localtime(obj.last_tested_at):%Y-%m-%d %H:%M}" if obj.last_tested_at else ""
        )
        if obj.last_test_ok:
            return format_html('<span title="{}">OK {}</span>', obj.last_test_message, when)
        return format_html(
            '<span title="{}"><strong>FAILED</strong> {}: {}</span>',
            obj.last_test_message,
            when,
            Truncator(obj.last_test_message).chars(120),
        )

    @admin.display(description="Last sync")
    def last_sync(self, obj: Connection) -> str:
        run = obj.sync_runs.order_by("-started_at").first()
        return f"{run.get_kind_display()} {run.get_status_display()}" if run else "never"

    @admin.display(description="Pending")
    def pending(self, obj: Connection) -> int:
        return obj.postings.exclude(
            state__in=[PostingState.POSTED, PostingState.NEEDS_ATTENTION]
        ).count()

    @admin.display(description="Needs attention")
    def attention(self, obj: Connection) -> int:
        return obj.postings.filter(state=PostingState.NEEDS_ATTENTION).count()

    # -- actions ---------------------------------------------------------------------------------
    def has_test_connection_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.test_connection")

    def has_run_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_import")

    def has_run_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.run_sync")

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

    @admin.action(description="Full resync now", permissions=["run_sync"])
    def full_sync(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self._sync(request, queryset, SyncKind.FULL)

    def _sync(self, request: HttpRequest, queryset: QuerySet[Connection], kind: str) -> None:
        for connection in queryset:
            run = services.run_sync(connection, kind, triggered_by=f"admin:{request.user}")
            self.message_user(
                request, f"{connection.property.code}: {run.summary()}", run_level(run)
            )
