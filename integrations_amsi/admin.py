"""Admin for the AMSI mirrors: lease links and eSite batch links, read-only (only the importer,
the lease-link service and the outbox write them).

The connection admin and the lease actions are the framework's (``integrations.admin``): this
provider supplies its connection form and layout (``AmsiProvider.admin_form`` and
``admin_fieldsets``) and its link hooks (``integrations_amsi.linking``).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from integrations.admin import ReadOnlyAdmin

from .mapping import CREDIT_STATUS_TEXT
from .models import AmsiBatchLink, AmsiLeaseLink

# What each CreditStatus code does to online payments here (integrations_amsi.mapping._access).
# The four statuses and what they allow are eSite's own (its Lease Information screen); the wire
# letters N and C were seen in a captured reply, H and R are our inference, so the label says so
# rather than passing a guess off as AMSI's word (docs/amsi-evidence.md).
_CREDIT_STATUS_EFFECT = {
    "N": "payments allowed",
    "C": "cards only",
    "H": "payments blocked; code letter inferred",
    "R": "payments blocked; code letter inferred",
}


def credit_status_label(code: str) -> str:
    """The code in words, e.g. "Hold (H): payments blocked; code letter inferred"."""
    code = (code or "").strip().upper()
    if not code:
        return "not given (Normal)"
    if code not in CREDIT_STATUS_TEXT:
        return f"{code} (unknown code)"
    return f"{CREDIT_STATUS_TEXT[code]} ({code}): {_CREDIT_STATUS_EFFECT[code]}"


class CreditStatusFilter(admin.SimpleListFilter):
    title = "credit status"
    parameter_name = "credit_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(code, f"{text} ({code})") for code, text in CREDIT_STATUS_TEXT.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(credit_status__iexact=self.value())
        return queryset


@admin.register(AmsiLeaseLink)
class AmsiLeaseLinkAdmin(ReadOnlyAdmin):
    list_display = [
        "composite",
        "lease",
        "active",
        "credit_status_display",
        "block_payment_access",
        "block_all_access",
        "linked_by_hand",
        "last_synced_at",
    ]
    list_filter = [
        "active",
        CreditStatusFilter,
        "block_payment_access",
        "block_all_access",
        "linked_by_hand",
        "connection__property",
    ]
    search_fields = ["resi_id", "=bldg_id", "=unit_id", "external_reference", "lease__id"]
    list_select_related = ["lease__unit__building__property", "connection__property"]
    readonly_fields = [f.name for f in AmsiLeaseLink._meta.fields] + ["credit_status_display"]

    class Media:
        # The host's change-list css: headers wrap so the list fits a 1,400 px screen.
        css = {"all": ["rentplatform/admin_lists.css"]}

    @admin.display(description="credit status", ordering="credit_status")
    def credit_status_display(self, link: AmsiLeaseLink) -> str:
        return credit_status_label(link.credit_status)

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
