"""Reconciliation runs as they were recorded: each connection's months, who ran them, what
they compared with, and the differences in words (read-only; the reconcile page runs one)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from integrations.models import ReconciliationRun

from .base import ReadOnlyAdmin
from .dashboard import system_name


class HasDifferencesFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [
            ("unsettled", "Differences found or could not compare"),
            ("differences", "Differences found"),
            ("clean", "No differences"),
            ("error", "Could not reconcile"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "unsettled":
            return queryset.exclude(error="", differences_count=0)
        if self.value() == "differences":
            return queryset.filter(error="", differences_count__gt=0)
        if self.value() == "clean":
            return queryset.filter(error="", differences_count=0)
        if self.value() == "error":
            return queryset.exclude(error="")
        return queryset


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ["ran_at", "connection", "month_label", "outcome_text", "source", "ran_by"]
    list_filter = [HasDifferencesFilter, "connection__property"]
    list_select_related = ["connection__property"]
    date_hierarchy = "ran_at"
    fields = [
        "connection",
        "month_label",
        "ran_at",
        "ran_by",
        "source",
        "outcome_text",
        "differences_table",
        "run_again",
    ]
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "integrations.reconcile"
        )

    @admin.display(description="Month", ordering="month")
    def month_label(self, obj):
        return f"{obj.month:%Y-%m}"

    @admin.display(description="Outcome")
    def outcome_text(self, obj):
        return obj.outcome()

    @admin.display(description="Differences")
    def differences_table(self, obj):
        if not obj.differences:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (d.get("batch", ""), d.get("sentence", ""), d.get("ours", ""), d.get("theirs", ""))
                for d in obj.differences
            ),
        )
        more = ""
        if obj.differences_count > len(obj.differences):
            more = f"(the first {len(obj.differences)} of {obj.differences_count} are kept)"
        return format_html(
            '<table class="reconciliation-differences"><thead><tr><th>Batch</th>'
            "<th>What differs</th><th>Ours</th><th>{}</th></tr></thead><tbody>{}</tbody>"
            "</table>{}",
            system_name(obj.connection),
            rows,
            more,
        )

    @admin.display(description="Run it again")
    def run_again(self, obj):
        query = urlencode({"connection": obj.connection_id, "month": f"{obj.month:%Y-%m}"})
        url = f"{reverse('admin:integrations_depositreport_reconcile')}?{query}"
        note = (
            " (with the same export: choose it again on that page)"
            if obj.source.startswith("uploaded")
            else ""
        )
        return format_html(
            '<a href="{}">Reconcile {} again now</a>{}', url, obj.month.strftime("%Y-%m"), note
        )
