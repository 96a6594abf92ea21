"""Admin for the outbox and the sync log: the posting console and sync runs, both read-only;
every action names its own permission.

Design note: the console. A posting's page says, in plain sentences from its provider
(``AccountingProvider.explain``, integrations.advice), what happened and what to do next, and
offers the actions that fit its state (``advice.actions_for``) and that the person may run. The
buttons post to the changelist's own actions (one code path, one permission check: Django's
action machinery drops an action the user may not run), with ``_console`` so the person lands
back on the posting. The host payment's state and its batch are linked; "outcome unknown" shows
only while it is true; the documents are pretty-printed and collapsed.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from lxml import etree

from integrations import advice, outbox
from integrations.models import Posting, PostingAttempt, PostingState, SyncRun
from integrations.models.posting import FINAL_STATES

from .base import ReadOnlyAdmin, admin_url, plural


class AttemptInline(admin.TabularInline):
    model = PostingAttempt
    extra = 0
    can_delete = False
    fields = [
        "number",
        "started_at",
        "finished_at",
        "outcome",
        "checked_first",
        "worker",
        "error_text",
    ]
    readonly_fields = fields

    @admin.display(description="Error")
    def error_text(self, obj):
        """The error, the reply's excerpt in it collapsed (it is XML)."""
        text = without_reply(obj.error)
        if text == obj.error:
            return text or "-"
        return format_html(
            '{} <details class="attempt-reply"><summary>Reply</summary><pre>{}</pre></details>',
            text,
            obj.error[len(text) + len(" reply: ") :],
        )

    def has_add_permission(self, request, obj=None):
        return False


class MarkFoundForm(forms.Form):
    receipt = forms.CharField(
        label="Receipt / reference number",
        max_length=100,
        help_text="As the accounting system shows it for this payment.",
    )
    note = forms.CharField(label="Note", max_length=500, required=False)


class NoteForm(forms.Form):
    note = forms.CharField(
        label="Note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded with your name and the time.",
    )


class ResolveForm(NoteForm):
    receipt = forms.CharField(
        label="Receipt / reference in the accounting system (optional)",
        max_length=100,
        required=False,
    )


# A parser that never fetches, never expands entities and never builds a huge tree: the
# documents are the remote's replies, shown to a person.
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_blank_text=True,
)


def pretty_xml(text: str) -> str:
    """An XML document indented for reading; a document that does not parse, as it is."""
    if not text.strip().startswith("<"):
        return text
    try:
        root = etree.fromstring(text.strip().encode("utf-8"), _SAFE_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return text
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def without_reply(error: str) -> str:
    """An error's text without the excerpt of the reply IntegrationError appends (the reply is
    shown whole, pretty-printed, under "Response received")."""
    head, sep, _ = error.partition(") reply: <")
    return f"{head})" if sep else error


# The console's buttons: label, form (None: a plain button), and a sentence on what it does.
CONSOLE_ACTIONS = {
    advice.RETRY: ("Retry now", None, "After the cause is fixed: a fresh set of attempts."),
    advice.FOUND: (
        "Found in the accounting system",
        MarkFoundForm,
        "It is there: it counts as posted, with its receipt.",
    ),
    advice.POST_IT: (
        "Not in the accounting system: post it",
        None,
        "You looked and it is not there: it is sent (once).",
    ),
    advice.RESOLVE: (
        "Mark resolved",
        ResolveForm,
        "You entered it in the accounting system yourself: it counts as posted and is never sent.",
    ),
    advice.ABANDON: (
        "Abandon",
        NoteForm,
        "It must never be posted (its payment was voided before it reached the ledger, "
        "say): final.",
    ),
}


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    # Fits 1,400 px with the admin's sidebar and the filters open (the change_list template's
    # css): the connection is a filter (by property), not a column.
    list_display = [
        "short_key",
        "kind",
        "state",
        "amount",
        "attempts",
        "remote_reference",
        "short_error",
        "created",
    ]
    list_filter = ["state", "kind", "connection__property"]
    search_fields = ["key", "remote_reference", "payment__reference", "last_error"]
    inlines = [AttemptInline]
    actions = [
        "retry_postings",
        "mark_found",
        "post_unconfirmed",
        "resolve_postings",
        "abandon_postings",
    ]
    change_form_template = "admin/integrations/posting/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "key",
                    "kind",
                    "state",
                    "connection",
                    "attempts",
                    "remote_reference",
                    "error_now",
                    "created_at",
                    "posted_at",
                ]
            },
        ),
        (
            "Internals",
            {
                "classes": ["collapse"],
                "fields": [
                    "next_attempt_at",
                    "claimed_until",
                    "enqueued_at",
                    "waiting_since",
                    "attention_mailed_at",
                    "remote_data",
                    "updated_at",
                ],
            },
        ),
    ]
    readonly_fields = [*(f.name for f in Posting._meta.fields), "error_now"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("connection__property", "payment", "reversal")
        )

    @admin.display(description="Amount")
    def amount(self, obj):
        return f"-{obj.reversal.amount}" if obj.reversal_id else obj.payment.amount

    # The key's first ten characters, as the payment lists show a reference (the search finds
    # a posting by them); the whole key is on the posting's page.
    @admin.display(description="Key", ordering="key")
    def short_key(self, obj):
        return obj.key[:10]

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return f"{timezone.localtime(obj.created_at):%Y-%m-%d %H:%M}"

    @admin.display(description="Last error")
    def short_error(self, obj):
        text = without_reply(obj.last_error or "")
        return text if len(text) <= 100 else f"{text[:99]}…"

    @admin.display(description="Error")
    def error_now(self, obj):
        """The error that stands (none once posted: the attempts below keep the history),
        without the reply's excerpt when the whole reply is under "Response received"."""
        if not obj.last_error:
            return "-"
        text = without_reply(obj.last_error) if obj.response_document else obj.last_error
        if obj.error_code and f"code {obj.error_code}" not in text:
            return f"{text} (code {obj.error_code})"
        return text

    # -- the console -----------------------------------------------------------------------------
    def change_view(self, request, object_id, form_url="", extra_context=None):
        posting = self.get_object(request, object_id)
        if posting is not None:
            extra_context = {**(extra_context or {}), "console": self.console(request, posting)}
        return super().change_view(request, object_id, form_url, extra_context)

    def console(self, request, posting: Posting) -> dict:
        """What the posting's page shows above its fields (see the module's note)."""
        try:
            provider = posting.connection.get_provider()
            said = provider.explain(posting)
        except Exception as err:  # noqa: BLE001  (the page must show even for a broken provider)
            said = advice.Advice(
                f"Its provider cannot be loaded ({err}); the last error was: "
                f"{posting.last_error or '-'}",
                "Fix the provider's installation or settings, then come back here.",
            )
        runnable = self.get_actions(request)
        actions = [
            {
                "name": name,
                "label": CONSOLE_ACTIONS[name][0],
                "form": form() if (form := CONSOLE_ACTIONS[name][1]) else None,
                "help": CONSOLE_ACTIONS[name][2],
            }
            for name in advice.actions_for(posting)
            if name in runnable
        ]
        payment, reversal = posting.payment, posting.reversal
        batch = (reversal or payment).batch
        paid = None
        if reversal is not None:
            paid = Posting.objects.filter(payment=payment, kind="payment").first()
        return {
            "advice": said,
            "outcome_unknown": posting.outcome_unknown and posting.state not in FINAL_STATES,
            "payment": payment,
            "payment_url": admin_url(payment),
            "reversal": reversal,
            "reversal_url": admin_url(reversal),
            "batch": batch,
            "batch_url": admin_url(batch),
            "payment_posting": paid,
            "payment_posting_url": admin_url(paid),
            "connection_url": admin_url(posting.connection),
            "actions": actions,
            "changelist_url": reverse("admin:integrations_posting_changelist"),
            "checkbox_name": ACTION_CHECKBOX_NAME,
            "documents": [
                (title, pretty_xml(text))
                for title, text in (
                    ("Request sent", posting.request_document),
                    ("Response received", posting.response_document),
                )
                if text
            ],
        }

    def _back(self, request, queryset):
        """From the console: back to the posting's page (None: Django's changelist)."""
        if "_console" not in request.POST:
            return None
        posting = queryset.first()
        return HttpResponseRedirect(admin_url(posting)) if posting else None

    # -- actions ---------------------------------------------------------------------------------
    def has_retry_posting_permission(self, request):
        return request.user.has_perm("integrations.retry_posting")

    @admin.action(description="Retry now", permissions=["retry_posting"])
    def retry_postings(self, request, queryset):
        n = 0
        for posting in queryset.exclude(state__in=FINAL_STATES):
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
        skipped = queryset.filter(state__in=FINAL_STATES).count()
        note = f"; {skipped} posted or abandoned, left alone" if skipped else ""
        self.message_user(request, f"{n} {plural(n, 'posting')} queued for another attempt{note}")
        return self._back(request, queryset)

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
                return self._back(request, queryset)
            self.message_user(
                request, f"Posting {posting.key} marked posted by you (receipt recorded)"
            )
            return self._back(request, queryset)
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
        self.message_user(request, f"{n} {plural(n, 'posting')} will be posted now{note}")
        return self._back(request, queryset)

    def has_resolve_posting_permission(self, request):
        return request.user.has_perm("integrations.resolve_posting")

    @admin.action(
        description="Mark resolved: entered in the accounting system by hand (with a note)",
        permissions=["resolve_posting"],
    )
    def resolve_postings(self, request, queryset):
        return self._close_by_hand(request, queryset, advice.RESOLVE, outbox.resolve, "resolved")

    def has_abandon_posting_permission(self, request):
        return request.user.has_perm("integrations.abandon_posting")

    @admin.action(
        description="Abandon: never post it (with a note)", permissions=["abandon_posting"]
    )
    def abandon_postings(self, request, queryset):
        return self._close_by_hand(request, queryset, advice.ABANDON, outbox.abandon, "abandoned")

    def _close_by_hand(self, request, queryset, name: str, act, done: str):
        """Resolve or abandon: a note first (a page asking for it), then each posting; one
        whose state does not allow it is refused with the reason, the others go on."""
        label, form_class, help_text = CONSOLE_ACTIONS[name]
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            n = 0
            for posting in queryset:
                try:
                    act(posting, who=request.user.get_username(), **form.cleaned_data)
                except outbox.NotAllowed as err:
                    self.message_user(request, str(err), messages.WARNING)
                    continue
                n += 1
            self.message_user(
                request, f"{n} {plural(n, 'posting')} {done} by you (your note is recorded)"
            )
            return self._back(request, queryset)
        return TemplateResponse(
            request,
            "admin/integrations/posting/close_by_hand.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{label}: {help_text}",
                "action": name,
                "label": label,
                "form": form,
                "postings": list(queryset),
                "checkbox_name": ACTION_CHECKBOX_NAME,
                "console": "_console" in request.POST,
            },
        )


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
