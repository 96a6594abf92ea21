"""The admin's building blocks: read-only logs, the enable-and-backfill flow, message levels.

``ReadOnlyAdmin`` and ``EnableAndBackfillMixin`` are re-exported by ``integrations.admin``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from integrations import services
from integrations.forms import BackfillForm
from integrations.models import Connection, SyncRun, SyncStatus


def admin_url(obj, view: str = "change") -> str:
    """The admin page of ``obj`` (a payment, batch, posting...), "" for none, an unsaved one or
    a model not in the admin."""
    if obj is None or obj.pk is None:
        return ""
    opts = obj._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])
    except NoReverseMatch:
        return ""


def plural(n: int, noun: str) -> str:
    """``noun`` as it reads after the number n ("1 posting", "2 postings")."""
    return noun if n == 1 else f"{noun}s"


def run_level(run: SyncRun) -> int:
    """The message level a sync run's summary is shown with."""
    if run.status == SyncStatus.SUCCEEDED:
        return messages.SUCCESS
    return messages.WARNING if run.status == SyncStatus.PARTIAL else messages.ERROR


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs and mirrors: written by the integration only; viewable, never edited here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EnableAndBackfillMixin:
    """For the connection admin: enabling a connection (the checkbox, saved) queues the
    postings it held while disabled and offers a backfill of earlier payments; the backfill
    page shows what it would create before it creates it.

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
                f"{obj.property.code}: enabled; {queued} {plural(queued, 'posting')} held "
                "while it was disabled are being delivered",
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
