"""Admin for the outbox and the sync log: postings (retry, found / not found by a person) and
sync runs, both read-only; every action names its own permission."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils import timezone

from integrations import outbox
from integrations.models import Posting, PostingAttempt, PostingState, SyncRun

from .base import ReadOnlyAdmin


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
