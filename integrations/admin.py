"""Admin for connections, the outbox and sync runs.

Each action has its own permission (Django's ``@admin.action(permissions=...)`` with a
``has_<name>_permission`` method), so a staff user without it neither sees nor runs it.
Logs (postings, attempts, sync runs) are read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integrations import outbox, services
from integrations.forms import BackfillForm, ConnectionForm
from integrations.models import (
    Connection,
    DepositReport,
    Posting,
    PostingAttempt,
    PostingState,
    SyncRun,
)
from integrations.providers import registry


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs and mirrors: written by the integration only; viewable, never edited here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EnableAndBackfillMixin:
    """For a connection admin (generic and provider-specific): enabling a connection (the
    checkbox, saved) queues the postings it held while disabled and offers a backfill of
    earlier payments; the backfill page shows what it would create before it creates it.

    The page needs ``integrations.backfill_postings`` (and view access to the connection).
    """

    BACKFILL_HELP = "Create postings for payments taken before this connection existed."

    def get_urls(self):
        opts = self.model._meta
        urls = [
            path(
                "<path:object_id>/backfill/",
                self.admin_site.admin_view(self.backfill_view),
                name=f"{opts.app_label}_{opts.model_name}_backfill",
            )
        ]
        return urls + super().get_urls()

    def has_backfill_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("integrations.backfill_postings") and (
            self.has_view_permission(request, obj)
        )

    def _backfill_url(self, obj) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_backfill", args=[obj.pk])

    @admin.display(description="Backfill")
    def backfill_link(self, obj):
        if obj is None or not obj.pk:
            return "-"
        return format_html('<a href="{}">Backfill earlier payments…</a>', self._backfill_url(obj))

    def save_model(self, request, obj, form, change):
        was_enabled = (
            Connection.objects.filter(pk=obj.pk).values_list("enabled", flat=True).first()
            if obj.pk
            else None
        )
        super().save_model(request, obj, form, change)
        if obj.enabled and not was_enabled:
            queued = services.enable_connection(obj)
            request._integrations_enabled = (obj.pk, queued, was_enabled is None)

    def _after_enabling(self, request, obj, response):
        enabled = getattr(request, "_integrations_enabled", None)
        if not enabled or enabled[0] != obj.pk:
            return response
        _pk, queued, new = enabled
        if queued:
            self.message_user(
                request,
                f"{obj.property.code}: enabled; {queued} posting(s) held while it was "
                "disabled are being delivered",
                messages.SUCCESS,
            )
        if self.has_backfill_permission(request, obj):
            self.message_user(
                request,
                f"{obj.property.code}: payments taken {'before it existed' if new else 'earlier'}"
                " have no posting unless you backfill them. Choose a day to backfill from, or "
                "leave this page to backfill nothing.",
                messages.INFO,
            )
            return HttpResponseRedirect(self._backfill_url(obj))
        return response

    def response_add(self, request, obj, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        return self._after_enabling(request, obj, response)

    def response_change(self, request, obj):
        response = super().response_change(request, obj)
        return self._after_enabling(request, obj, response)

    def backfill_view(self, request, object_id):
        connection = self.get_object(request, object_id)
        if connection is None or not self.has_backfill_permission(request, connection):
            raise PermissionDenied
        plan = None
        form = BackfillForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            since = form.cleaned_data["since"]
            if "confirm" in request.POST:
                plan = services.backfill(connection, since, dry_run=False)
                self.message_user(
                    request, f"{connection.property.code}: {plan.summary()}", messages.SUCCESS
                )
                opts = self.model._meta
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_change", args=[connection.pk]
                    )
                )
            plan = services.backfill(connection, since, dry_run=True)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Backfill postings for {connection.property.code}",
            "connection": connection,
            "system": connection.get_provider().name,
            "form": form,
            "plan": plan,
        }
        return TemplateResponse(request, "admin/integrations/backfill.html", context)


@admin.register(Connection)
class ConnectionAdmin(EnableAndBackfillMixin, admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["property", "provider", "enabled", "last_test", "pending", "attention"]
    list_filter = ["provider", "enabled"]
    search_fields = ["property__code", "property__name"]
    readonly_fields = [
        "credentials_set",
        "last_tested_at",
        "last_test_ok",
        "last_test_message",
        "backfill_link",
    ]
    actions = ["test_connections", "sync_now", "full_sync"]

    def get_queryset(self, request):
        own_admin = [cls.id for cls in registry.all_providers() if cls.has_own_admin]
        return (
            super().get_queryset(request).exclude(provider__in=own_admin).select_related("property")
        )

    @admin.display(description="Credentials")
    def credentials_set(self, obj):
        return "set (encrypted)" if obj.credentials else "not set"

    @admin.display(description="Last test")
    def last_test(self, obj):
        if obj.last_test_ok is None:
            return "never tested"
        return format_html(
            "{} {}", "OK" if obj.last_test_ok else "FAILED", obj.last_test_message[:80]
        )

    @admin.display(description="Pending")
    def pending(self, obj):
        return obj.postings.exclude(
            state__in=[PostingState.POSTED, PostingState.NEEDS_ATTENTION]
        ).count()

    @admin.display(description="Needs attention")
    def attention(self, obj):
        return obj.postings.filter(state=PostingState.NEEDS_ATTENTION).count()

    def has_test_connection_permission(self, request):
        return request.user.has_perm("integrations.test_connection")

    def has_run_sync_permission(self, request):
        return request.user.has_perm("integrations.run_sync")

    @admin.action(description="Test connection", permissions=["test_connection"])
    def test_connections(self, request, queryset):
        for connection in queryset:
            check = services.test_connection(connection)
            level = messages.SUCCESS if check.ok else messages.ERROR
            self.message_user(request, f"{connection.property.code}: {check.message}", level)

    def _sync(self, request, queryset, kind):
        for connection in queryset:
            run = services.run_sync(connection, kind, triggered_by=f"admin:{request.user}")
            level = messages.SUCCESS if run.status == "succeeded" else messages.WARNING
            self.message_user(request, f"{connection.property.code}: {run.summary()}", level)

    @admin.action(description="Sync now (changes since the last sync)", permissions=["run_sync"])
    def sync_now(self, request, queryset):
        self._sync(request, queryset, "delta")

    @admin.action(description="Full resync now", permissions=["run_sync"])
    def full_sync(self, request, queryset):
        self._sync(request, queryset, "full")


class AttemptInline(admin.TabularInline):
    model = PostingAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "finished_at", "outcome", "checked_first", "worker", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class MarkFoundForm(forms.Form):
    receipt = forms.CharField(
        label="Receipt / reference number",
        max_length=100,
        help_text="As the accounting system shows it for this payment.",
    )
    note = forms.CharField(label="Note", max_length=500, required=False)


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = [
        "key",
        "kind",
        "state",
        "connection",
        "amount",
        "attempts",
        "remote_reference",
        "short_error",
        "created_at",
    ]
    list_filter = ["state", "kind", "connection__property"]
    search_fields = ["key", "remote_reference", "payment__reference", "last_error"]
    inlines = [AttemptInline]
    actions = ["retry_postings", "mark_found", "post_unconfirmed"]
    readonly_fields = ["where_to_look", *[f.name for f in Posting._meta.fields]]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("connection__property", "payment", "reversal")
        )

    @admin.display(description="Amount")
    def amount(self, obj):
        return f"-{obj.reversal.amount}" if obj.reversal_id else obj.payment.amount

    @admin.display(description="Last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:120]

    def has_retry_posting_permission(self, request):
        return request.user.has_perm("integrations.retry_posting")

    @admin.action(description="Retry now", permissions=["retry_posting"])
    def retry_postings(self, request, queryset):
        n = 0
        for posting in queryset.exclude(state=PostingState.POSTED):
            try:
                when = outbox.retry(posting)
            except outbox.NotAllowed as err:
                self.message_user(request, str(err), messages.WARNING)
                continue
            if when is not None:
                self.message_user(
                    request,
                    f"posting {posting.key}: its last write may still land; it is tried again "
                    f"(checking first) after {timezone.localtime(when):%H:%M:%S}",
                    messages.INFO,
                )
            n += 1
        self.message_user(request, f"{n} posting(s) queued for another attempt")

    @admin.display(description="What to look for")
    def where_to_look(self, obj):
        if obj.state != PostingState.UNCONFIRMED:
            return "-"
        return obj.connection.get_provider().where_to_look(obj)

    def has_resolve_unconfirmed_permission(self, request):
        return request.user.has_perm("integrations.resolve_unconfirmed")

    @admin.action(
        description="Found in the accounting system (enter its receipt)",
        permissions=["resolve_unconfirmed"],
    )
    def mark_found(self, request, queryset):
        postings = list(queryset[:2])
        if len(postings) != 1 or postings[0].state != PostingState.UNCONFIRMED:
            self.message_user(
                request, "Choose exactly one unconfirmed posting to mark found.", messages.ERROR
            )
            return None
        posting = postings[0]
        form = MarkFoundForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                outbox.mark_found(
                    posting,
                    receipt=form.cleaned_data["receipt"],
                    note=form.cleaned_data["note"],
                    who=request.user.get_username(),
                )
            except outbox.NotAllowed as err:
                self.message_user(request, str(err), messages.ERROR)
                return None
            self.message_user(
                request, f"Posting {posting.key} marked posted by you (receipt recorded)"
            )
            return None
        provider = posting.connection.get_provider()
        return TemplateResponse(
            request,
            "admin/integrations/mark_found.html",
            {
                **self.admin_site.each_context(request),
                "posting": posting,
                "form": form,
                "system": provider.name,
                "where_to_look": provider.where_to_look(posting),
                "title": "Found in the accounting system",
            },
        )

    @admin.action(
        description="Not in the accounting system: post it",
        permissions=["resolve_unconfirmed"],
    )
    def post_unconfirmed(self, request, queryset):
        n = 0
        for posting in queryset.filter(state=PostingState.UNCONFIRMED):
            try:
                outbox.post_unconfirmed(posting, who=request.user.get_username())
            except outbox.NotAllowed as err:
                self.message_user(request, str(err), messages.WARNING)
                continue
            n += 1
        skipped = queryset.exclude(state=PostingState.UNCONFIRMED).count()
        note = f"; {skipped} not unconfirmed, left alone" if skipped else ""
        self.message_user(request, f"{n} posting(s) will be posted now{note}")


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "connection",
        "kind",
        "status",
        "dry_run",
        "created",
        "updated",
        "unchanged",
        "deactivated",
        "errors",
        "message",
    ]
    list_filter = ["status", "kind", "connection__property"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("connection__property")


class ReconcileForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.filter(enabled=True))
    month = forms.CharField(help_text="YYYY-MM", max_length=7)
    report = forms.FileField(
        required=False,
        help_text="Optional: the External Deposits export from eSite (By Payment, CSV). "
        "Without it the provider fetches the report itself where it can (the sandbox can).",
    )

    def clean_month(self):
        from integrations.reconciliation import parse_month

        try:
            return parse_month(self.cleaned_data["month"])
        except ValueError as err:
            raise forms.ValidationError(str(err)) from None

    def clean_report(self):
        upload = self.cleaned_data.get("report")
        if not upload:
            return None
        if upload.size > 20 * 1024 * 1024:
            raise forms.ValidationError("the export is over 20 MB; is it the right file?")
        return upload.read().decode("utf-8-sig", errors="replace")


class ReportEmailFilter(admin.SimpleListFilter):
    """Which Batch Deposit Reports reached the managers (integrations.reports)."""

    title = "report email"
    parameter_name = "report_email"

    def lookups(self, request, model_admin):
        return [
            ("sent", "Sent"),
            ("pending", "Pending or sending"),
            ("failing", "Failing, will retry"),
            ("failed", "Failed"),
            ("not_sent", "Not sent (failing, failed or none)"),
        ]

    def queryset(self, request, queryset):
        from django.db.models import Q

        from integrations.models.posting import ReportDeliveryState as S

        value = self.value()
        if value == "sent":
            return queryset.filter(report_delivery__state=S.SENT)
        if value == "pending":
            return queryset.filter(report_delivery__state__in=[S.PENDING, S.SENDING])
        if value == "failing":
            return queryset.filter(report_delivery__state=S.RETRYING)
        if value == "failed":
            return queryset.filter(report_delivery__state=S.FAILED)
        if value == "not_sent":
            return queryset.filter(status="deposited").filter(
                Q(report_delivery__isnull=True)
                | Q(report_delivery__state__in=[S.RETRYING, S.FAILED])
            )
        return queryset


@admin.register(DepositReport)
class DepositReportAdmin(ReadOnlyAdmin):
    """Batch Deposit Reports (one per our batch id), their CSV, their email, reconciliation."""

    list_display = [
        "batch_id",
        "property",
        "stream",
        "kind",
        "business_day",
        "status",
        "net",
        "report_email",
    ]
    list_filter = ["status", ReportEmailFilter, "stream", "kind", "property"]
    list_select_related = ["property", "report_delivery"]
    search_fields = ["batch_id"]
    date_hierarchy = "business_day"
    actions = ["send_again"]

    @admin.display(description="Report email")
    def report_email(self, obj):
        delivery = getattr(obj, "report_delivery", None)
        if delivery is not None:
            return delivery.status_text[:200]
        return "not sent" if obj.status == "deposited" else "-"

    def has_resend_report_permission(self, request):
        return request.user.has_perm("integrations.resend_report")

    @admin.action(description="Send the report email again", permissions=["resend_report"])
    def send_again(self, request, queryset):
        from integrations.reports import NotAllowed, resend

        n = 0
        for batch in queryset.filter(status="deposited"):
            try:
                resend(batch)
            except NotAllowed as err:
                self.message_user(request, str(err), messages.WARNING)
                continue
            n += 1
        skipped = queryset.exclude(status="deposited").count()
        note = f"; {skipped} not deposited yet, left alone" if skipped else ""
        self.message_user(request, f"{n} report(s) queued to be sent again{note}")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("integrations.view_depositreport") or request.user.has_perm(
            "rentplatform.view_depositbatch"
        )

    @admin.display(description="Net")
    def net(self, obj):
        from rentplatform.services.batches import batch_totals

        return batch_totals(obj)["net"]

    def get_urls(self):
        urls = [
            path(
                "reconcile/",
                self.admin_site.admin_view(self.reconcile_view),
                name="integrations_depositreport_reconcile",
            ),
            path(
                "<int:pk>/csv/",
                self.admin_site.admin_view(self.csv_view),
                name="integrations_depositreport_csv",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from integrations.reports import build_report

        batch = self.get_object(request, object_id)
        if batch is None or not self.has_view_permission(request, batch):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Batch Deposit Report {batch.batch_id}",
            "report": build_report(batch),
            "batch": batch,
        }
        return TemplateResponse(request, "admin/integrations/deposit_report.html", context)

    def csv_view(self, request, pk):
        from integrations.reports import build_report

        batch = self.get_object(request, str(pk))
        if batch is None or not self.has_view_permission(request, batch):
            raise PermissionDenied
        response = HttpResponse(build_report(batch).as_csv(), content_type="text/csv")
        response["Content-Disposition"] = (
            f'attachment; filename="batch-deposit-report-{batch.batch_id}.csv"'
        )
        return response

    def reconcile_view(self, request):
        from integrations.reconciliation import reconcile

        if not request.user.has_perm("integrations.reconcile"):
            raise PermissionDenied
        result = None
        form = ReconcileForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            result = reconcile(
                form.cleaned_data["connection"],
                form.cleaned_data["month"],
                form.cleaned_data["report"],
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reconcile with the accounting system",
            "form": form,
            "result": result,
        }
        return TemplateResponse(request, "admin/integrations/reconcile.html", context)
