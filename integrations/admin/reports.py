"""Admin for Batch Deposit Reports: the report page, its CSV, its email (sent again on request)
and the reconcile view (``integrations.reconciliation.reconcile``)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from integrations.models import Connection, DepositReport
from integrations.models.posting import ReportDeliveryState as S
from integrations.providers import registry
from integrations.reconciliation import parse_month, reconcile
from integrations.reconciliation_words import as_csv, sentences, sides
from integrations.reports import NotAllowed, build_report, resend
from rentplatform.models import DepositBatch
from rentplatform.services.batches import batch_totals

from .base import ReadOnlyAdmin, admin_url, plural


def this_month(connection: Connection | None) -> str:
    """This month (YYYY-MM) where the property is: its business day, not the server's."""
    today = connection.property.local_day() if connection else timezone.localdate()
    return f"{today:%Y-%m}"


class ReconcileForm(forms.Form):
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.filter(enabled=True).select_related("property")
    )
    month = forms.CharField(
        help_text="YYYY-MM", max_length=7, widget=forms.TextInput(attrs={"type": "month"})
    )
    report = forms.FileField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            # One enabled connection: chosen already; the month is this month where it is.
            choices = list(self.fields["connection"].queryset[:2])
            chosen = choices[0] if len(choices) == 1 else None
            self.initial.setdefault("connection", chosen)
            self.initial.setdefault("month", this_month(chosen))
        exports = [
            f"{cls.system_name}: {cls.report_help}"
            for cls in registry.all_providers()
            if cls.report_help
        ]
        self.fields["report"].help_text = " ".join(
            [
                "Optional: the accounting system's export of the month's deposits.",
                *exports,
                "Without it the provider fetches the report itself where it can.",
            ]
        )

    def clean_month(self):
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
        self.message_user(request, f"{n} {plural(n, 'report')} queued to be sent again{note}")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("integrations.view_depositreport") or request.user.has_perm(
            "rentplatform.view_depositbatch"
        )

    @admin.display(description="Net")
    def net(self, obj):
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
        batch = self.get_object(request, str(pk))
        if batch is None or not self.has_view_permission(request, batch):
            raise PermissionDenied
        response = HttpResponse(build_report(batch).as_csv(), content_type="text/csv")
        response["Content-Disposition"] = (
            f'attachment; filename="batch-deposit-report-{batch.batch_id}.csv"'
        )
        return response

    def reconcile_view(self, request):
        """The form (POST, with an optional export); a GET naming a connection (and month:
        this month by default) reconciles too, so the page and its CSV can be linked to.
        ``format=csv`` answers the differences as a CSV instead of the page."""
        if not request.user.has_perm("integrations.reconcile"):
            raise PermissionDenied
        data = None
        if request.method == "POST":
            data = request.POST
        elif "connection" in request.GET:
            data = request.GET.copy()
            if not data.get("month"):
                pk = data["connection"]
                chosen = None
                if pk.isdigit():
                    chosen = Connection.objects.select_related("property").filter(pk=pk).first()
                data["month"] = this_month(chosen)
        result = None
        form = ReconcileForm(data, request.FILES or None)
        if data is not None and form.is_valid():
            upload = request.FILES.get("report")
            result = reconcile(
                form.cleaned_data["connection"],
                form.cleaned_data["month"],
                form.cleaned_data["report"],
                ran_by=request.user.get_username(),
                source=f"uploaded {upload.name}" if upload is not None else "",
            )
            if data.get("format") == "csv" and not result.error:
                return self._differences_csv(result)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reconcile with the accounting system",
            "form": form,
            "result": result,
            "rows": self._difference_rows(result) if result else [],
            "csv_url": "",
            "csv_data": "",
            "uploaded": "",
        }
        if result and form.cleaned_data["report"] is not None:
            # The export is not kept, and a browser never sends a file again: the page's CSV
            # of an upload is the differences shown, carried in the link itself.
            context["uploaded"] = request.FILES["report"].name
            if result.differences:
                context["csv_data"] = as_csv(result)
                context["csv_name"] = _csv_name(result)
        elif result and result.differences:
            query = {"connection": result.connection.pk, "month": f"{result.month:%Y-%m}"}
            context["csv_url"] = f"?{urlencode({**query, 'format': 'csv'})}"
        return TemplateResponse(request, "admin/integrations/reconcile.html", context)

    def _difference_rows(self, result):
        """Each difference with its sentence and links: our batch (the batch list, searched
        by its id, where we have that batch) and our payment or reversal."""
        ids = {d.batch_id for d in result.differences}
        ours = set(
            DepositBatch.objects.filter(
                property=result.connection.property_id, batch_id__in=ids
            ).values_list("batch_id", flat=True)
        )
        batches = reverse("admin:rentplatform_depositbatch_changelist")
        rows = []
        for diff, sentence in sentences(result):
            batch_url = (
                f"{batches}?{urlencode({'q': diff.batch_id})}" if diff.batch_id in ours else ""
            )
            rows.append(
                {
                    "diff": diff,
                    "sentence": sentence,
                    "batch_url": batch_url,
                    "item_url": admin_url(diff.subject),
                    "sides": sides(diff),
                }
            )
        return rows

    def _differences_csv(self, result):
        response = HttpResponse(as_csv(result), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{_csv_name(result)}"'
        return response


def _csv_name(result) -> str:
    return f"reconciliation-{result.connection.property.code}-{result.month:%Y-%m}.csv"
