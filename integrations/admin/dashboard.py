"""The integration dashboard (the admin home and each connection's page) and the banner every
admin page shows when something waits for a person.

Design notes:
- Cheap whatever the size: the dashboard runs six queries for all connections (the
  connections with their last sync run's and last reconciliation's ids, those runs, those
  reconciliations, open postings counted by connection
  and state, today's batches by property and status, undelivered reports by property and
  state); the banner three counts. Posted and abandoned postings are never counted (the
  table's bulk), so the state index does the work.
- Every number links to the admin list behind it, filtered the same way, so what the number
  says and what the list shows cannot drift apart.
- "Today" is each property's own day, in its time zone.
- Every reconciliation is recorded (ReconciliationRun); the dashboard shows each connection's
  last one and links to it, and the banner names connections whose last one found
  differences or could not compare.
- The templates reach these through the ``integrations_admin`` template tags, so neither the
  admin site nor the host's admin changes; ``admin/base_site.html`` and ``admin/index.html``
  are overridden by this app's templates (it comes before django.contrib.admin in
  INSTALLED_APPS, docs/configuration.md).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Count, OuterRef, Q, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from integrations.models import (
    Connection,
    Posting,
    PostingState,
    ReconciliationRun,
    ReportDelivery,
    SyncKind,
    SyncRun,
)
from integrations.models.posting import FINAL_STATES, ReportDeliveryState
from integrations.providers import registry
from rentplatform.models import DepositBatch

from .base import plural

# The posting states a dashboard shows, in the order a person reads them.
POSTING_STATES = [
    PostingState.NEEDS_ATTENTION,
    PostingState.UNCONFIRMED,
    PostingState.RETRYING,
    PostingState.PENDING,
    PostingState.IN_FLIGHT,
]
# Undelivered Batch Deposit Report emails, by the report list's own filter values.
REPORT_FILTERS = [
    (ReportDeliveryState.FAILED, "failed", "failed (send again by hand)"),
    (ReportDeliveryState.RETRYING, "failing", "failing, will retry"),
    (ReportDeliveryState.PENDING, "pending", "pending"),
    (ReportDeliveryState.SENDING, "pending", "sending"),
]


@dataclass
class Figure:
    """One number on the dashboard and the filtered list it stands for."""

    label: str
    number: int
    url: str = ""


@dataclass
class Panel:
    """One connection's part of the dashboard."""

    connection: Connection
    url: str
    system: str
    state: str
    state_detail: str
    needs_person: bool
    last_sync: SyncRun | None
    last_sync_url: str
    today: dt.date
    postings: list[Figure] = field(default_factory=list)
    batches: list[Figure] = field(default_factory=list)
    reports: list[Figure] = field(default_factory=list)
    reconcile_url: str = ""
    last_reconciliation: ReconciliationRun | None = None
    last_reconciliation_url: str = ""


def _url(name: str, args=None, **query) -> str:
    try:
        base = reverse(name, args=args)
    except NoReverseMatch:
        return ""
    return f"{base}?{urlencode(query)}" if query else base


def postings_url(**filters) -> str:
    return _url("admin:integrations_posting_changelist", **filters)


def system_name(connection: Connection) -> str:
    try:
        return registry.get(connection.provider).system_name
    except Exception:  # noqa: BLE001  (a provider no longer installed: show its id)
        return f"{connection.provider} (not installed)"


def connection_state(connection: Connection) -> tuple[str, str, bool]:
    """(state, detail, needs a person) of a connection as a person says it."""
    if connection.paused_at is not None:
        return (
            "paused: credentials refused",
            f"since {timezone.localtime(connection.paused_at):%Y-%m-%d %H:%M}: "
            f"{connection.paused_reason[:300]}. Fix the login, then run 'Test connection'.",
            True,
        )
    if not connection.enabled:
        return "disabled", "postings are held until it is enabled", False
    if connection.last_test_ok is False:
        return "enabled", f"last test failed: {connection.last_test_message[:300]}", True
    return "enabled", "", False


def today_of(time_zone: str, now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(time_zone)).date()


def panels(connection_ids: list[int] | None = None, now: dt.datetime | None = None) -> list[Panel]:
    """The dashboard of the given connections (all when None), in six queries."""
    latest_run = (
        SyncRun.objects.filter(connection=OuterRef("pk"))
        .exclude(kind=SyncKind.TEST)
        .order_by("-started_at")
        .values("pk")[:1]
    )
    latest_reconciliation = ReconciliationRun.objects.filter(connection=OuterRef("pk")).values(
        "pk"
    )[:1]
    connections = Connection.objects.select_related("property").annotate(
        last_run_id=Subquery(latest_run), last_reconciliation_id=Subquery(latest_reconciliation)
    )
    if connection_ids is not None:
        connections = connections.filter(pk__in=connection_ids)
    connections = list(connections.order_by("property__code"))
    if not connections:
        return []
    runs = SyncRun.objects.in_bulk([c.last_run_id for c in connections if c.last_run_id])
    reconciliations = ReconciliationRun.objects.defer("differences").in_bulk(
        [c.last_reconciliation_id for c in connections if c.last_reconciliation_id]
    )

    posting_counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        Posting.objects.filter(connection__in=connections)
        .exclude(state__in=FINAL_STATES)
        .values("connection_id", "state")
        .annotate(n=Count("id"))
    ):
        posting_counts[row["connection_id"]][row["state"]] = row["n"]

    days = {c.property_id: today_of(c.property.time_zone, now) for c in connections}
    today = Q(pk__in=[])
    for property_id, day in days.items():
        today |= Q(property_id=property_id, business_day=day)
    batch_counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        DepositBatch.objects.filter(today).values("property_id", "status").annotate(n=Count("id"))
    ):
        batch_counts[row["property_id"]][row["status"]] = row["n"]

    report_counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        ReportDelivery.objects.filter(batch__property_id__in=list(days))
        .exclude(state=ReportDeliveryState.SENT)
        .values("batch__property_id", "state")
        .annotate(n=Count("id"))
    ):
        report_counts[row["batch__property_id"]][row["state"]] = row["n"]

    return [
        _panel(
            c,
            runs.get(c.last_run_id),
            days[c.property_id],
            posting_counts[c.pk],
            batch_counts[c.property_id],
            report_counts[c.property_id],
            reconciliations.get(c.last_reconciliation_id),
        )
        for c in connections
    ]


def _panel(connection, run, day, postings, batches, reports, reconciliation=None) -> Panel:
    state, detail, needs_person = connection_state(connection)
    prop = connection.property
    panel = Panel(
        connection=connection,
        url=_url("admin:integrations_connection_change", args=[connection.pk]),
        system=system_name(connection),
        state=state,
        state_detail=detail,
        needs_person=needs_person,
        last_sync=run,
        last_sync_url=_url("admin:integrations_syncrun_change", args=[run.pk]) if run else "",
        today=day,
        reconcile_url=_url("admin:integrations_depositreport_reconcile"),
        last_reconciliation=reconciliation,
        last_reconciliation_url=(
            _url("admin:integrations_reconciliationrun_change", args=[reconciliation.pk])
            if reconciliation
            else ""
        ),
    )
    for posting_state in POSTING_STATES:
        panel.postings.append(
            Figure(
                posting_state.label,
                postings.get(posting_state, 0),
                postings_url(connection__id__exact=connection.pk, state__exact=posting_state),
            )
        )
    for status, label in DepositBatch._meta.get_field("status").choices:
        panel.batches.append(
            Figure(
                str(label).lower(),
                batches.get(status, 0),
                _url(
                    "admin:rentplatform_depositbatch_changelist",
                    property__id__exact=prop.pk,
                    business_day=day.isoformat(),
                    status__exact=status,
                ),
            )
        )
    for delivery_state, list_filter, label in REPORT_FILTERS:
        panel.reports.append(
            Figure(
                label,
                reports.get(delivery_state, 0),
                _url(
                    "admin:integrations_depositreport_changelist",
                    property__id__exact=prop.pk,
                    report_email=list_filter,
                ),
            )
        )
    return panel


@dataclass
class Alert:
    """One line of the banner: what waits for a person, and the list that shows it."""

    text: str
    url: str


def alerts(user) -> list[Alert]:
    """What needs a person, for the banner on every admin page: postings that need attention
    or are unconfirmed, paused connections, reports whose emails gave up, last reconciliations
    that found differences. Only what ``user`` may see; four counts."""
    if not getattr(user, "is_staff", False) or not user.is_active:
        return []
    out: list[Alert] = []
    if user.has_perm("integrations.view_posting"):
        counts = dict(
            Posting.objects.filter(
                state__in=[PostingState.NEEDS_ATTENTION, PostingState.UNCONFIRMED]
            )
            .values_list("state")
            .annotate(n=Count("id"))
        )
        n = counts.get(PostingState.NEEDS_ATTENTION, 0)
        if n:
            out.append(
                Alert(
                    f"{n} posting needs attention" if n == 1 else f"{n} postings need attention",
                    postings_url(state__exact=PostingState.NEEDS_ATTENTION),
                )
            )
        n = counts.get(PostingState.UNCONFIRMED, 0)
        if n:
            out.append(
                Alert(
                    f"{n} {plural(n, 'posting')} unconfirmed: look in the accounting system",
                    postings_url(state__exact=PostingState.UNCONFIRMED),
                )
            )
    if user.has_perm("integrations.view_connection"):
        n = Connection.objects.filter(paused_at__isnull=False).count()
        if n:
            out.append(
                Alert(
                    f"{n} {plural(n, 'connection')} paused: credentials refused",
                    _url("admin:integrations_connection_changelist", paused_at__isnull="False"),
                )
            )
    if user.has_perm("integrations.view_depositreport") or user.has_perm(
        "rentplatform.view_depositbatch"
    ):
        n = ReportDelivery.objects.filter(state=ReportDeliveryState.FAILED).count()
        if n:
            out.append(
                Alert(
                    f"{n} Batch Deposit Report {plural(n, 'email')} failed: send again by hand",
                    _url("admin:integrations_depositreport_changelist", report_email="failed"),
                )
            )
    if user.has_perm("integrations.reconcile") or user.has_perm(
        "integrations.view_reconciliationrun"
    ):
        latest = ReconciliationRun.objects.filter(connection=OuterRef("connection")).values("pk")
        n = (
            ReconciliationRun.objects.filter(pk=Subquery(latest[:1]))
            .exclude(error="", differences_count=0)
            .count()
        )
        if n:
            out.append(
                Alert(
                    f"the last reconciliation of {n} {plural(n, 'connection')} found "
                    "differences or could not compare",
                    _url("admin:integrations_reconciliationrun_changelist", outcome="unsettled"),
                )
            )
    return out
