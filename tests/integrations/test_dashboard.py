"""The integration dashboard (admin home and a connection's page) and the banner on every admin
page, through the Django test client against the real pages and database, with the fake
provider: postings in each state made by the outbox's own paths."""

from __future__ import annotations

import re
from decimal import Decimal
from html import unescape

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations import outbox, reports
from integrations.admin import dashboard
from integrations.models import Connection, Posting, PostingState, ReconciliationRun, SyncKind
from integrations.providers.fake import FakeProvider
from integrations.reconciliation import reconcile
from integrations.reconciliation_words import sentences
from integrations.services import run_sync
from rentplatform import services
from rentplatform.models import BatchStatus, DepositBatch, PaymentMethod
from tests.factories import PropertyFactory, lease_with_resident, staff_user

pytestmark = pytest.mark.django_db

HOME = reverse("admin:index")
VIEW_ALL = (
    "integrations.view_connection",
    "integrations.view_posting",
    "integrations.view_depositreport",
    "rentplatform.view_depositbatch",
)


def client_for(*perms: str) -> Client:
    client = Client()
    client.force_login(staff_user(*perms))
    return client


def links(html: str) -> dict[str, str]:
    """Each link's text -> its address."""
    found = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html)
    return {unescape(text).strip(): unescape(href) for href, text in found}


def set_failure(connection: Connection, mode: str) -> None:
    connection.settings = {**connection.settings, "fail": {"mode": mode, "count": 1}}
    connection.save()


@pytest.fixture
def world(settings, monkeypatch):
    """A fake connection with one posting in each state, a deposited batch whose report is
    pending, and an initial import."""
    settings.INTEGRATIONS = {**settings.INTEGRATIONS, "DELIVERY": "manual"}
    lease, _ = lease_with_resident()
    connection = Connection.objects.create(property=lease.property, provider=FakeProvider.id)
    run_sync(connection, SyncKind.IMPORT)

    def pay(amount: str, method: str = PaymentMethod.CARD) -> Posting:
        payment = services.accept_payment(lease, Decimal(amount), method)
        return Posting.objects.get(payment=payment)

    posted = pay("10.00")
    outbox.deliver(posted.pk)
    set_failure(connection, "permanent")
    attention = pay("11.00")
    outbox.deliver(attention.pk)
    set_failure(connection, "retryable")
    retrying = pay("12.00")
    outbox.deliver(retrying.pk)
    pay("13.00")  # pending
    in_flight = pay("14.00")
    outbox.claim(in_flight.pk)
    # A provider that cannot check an unknown outcome unattended (as AMSI by default).
    monkeypatch.setattr(FakeProvider, "checks_unknown_outcomes", lambda self, posting=None: False)
    set_failure(connection, "lost_reply")
    unconfirmed = pay("15.00", PaymentMethod.ACH)
    outbox.deliver(unconfirmed.pk)
    states = dict(Posting.objects.values_list("key", "state"))
    assert sorted(states.values()) == sorted(
        [
            PostingState.POSTED,
            PostingState.NEEDS_ATTENTION,
            PostingState.RETRYING,
            PostingState.PENDING,
            PostingState.IN_FLIGHT,
            PostingState.UNCONFIRMED,
        ]
    )
    # Yesterday's deposited batch with its report email pending, and today's ACH batch closed.
    yesterday = timezone.now() - timezone.timedelta(days=1)
    old = services.accept_payment(lease, Decimal("20.00"), PaymentMethod.CARD, now=yesterday)
    outbox.deliver(Posting.objects.get(payment=old).pk)
    services.settle_payment(old)
    services.deposit_batch(old.batch)
    reports.ensure_delivery(old.batch)
    services.close_batch(unconfirmed.payment.batch)
    return connection


def test_the_home_page_counts_each_state_and_links_to_the_filtered_list(world):
    page = client_for(*VIEW_ALL).get(HOME)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="integrations-dashboard"' in html
    assert "Site administration" in html or "app-integrations" in html  # the app list stays
    found = links(html)
    postings = reverse("admin:integrations_posting_changelist")
    for state in (
        PostingState.NEEDS_ATTENTION,
        PostingState.UNCONFIRMED,
        PostingState.RETRYING,
        PostingState.PENDING,
        PostingState.IN_FLIGHT,
    ):
        url = found[f"{state.label}: 1"]
        assert url == f"{postings}?connection__id__exact={world.pk}&state__exact={state.value}"
        listed = client_for(*VIEW_ALL).get(url).content.decode()
        assert "1 posting" in listed, state  # the list behind the number shows the same one
    # Today's batches in the property's own day: the card batch open, the ACH batch closed.
    day = dashboard.today_of(world.property.time_zone)
    assert f"{day:%Y-%m-%d}, America/Chicago" in html
    open_url = found["open: 1"]
    assert f"business_day={day.isoformat()}" in open_url and "status__exact=open" in open_url
    listed = client_for(*VIEW_ALL).get(open_url).content.decode()
    today_open = DepositBatch.objects.get(business_day=day, status=BatchStatus.OPEN)
    assert today_open.batch_id in listed
    assert "closed: 1" in found and "deposited: 0" in found  # yesterday's is not today's
    # The report not yet emailed, and reconciliation: never run yet, with its page.
    reports_url = found["pending: 1"]
    assert "report_email=pending" in reports_url
    assert "1 batch deposit report" in client_for(*VIEW_ALL).get(reports_url).content.decode()
    assert "never run" in html
    assert found["reconcile a month"] == reverse("admin:integrations_depositreport_reconcile")
    # The last sync and its result.
    assert "Initial import" in html and "succeeded" in html


def test_a_connection_page_shows_its_own_panel(world):
    other = Connection.objects.create(property=PropertyFactory(), provider=FakeProvider.id)
    # Change, not only view: the generic connection form fails for a view-only user (its
    # __init__ sets the help text of a field Django leaves out of a read-only form).
    client = client_for(*VIEW_ALL, "integrations.change_connection")
    html = client.get(reverse("admin:integrations_connection_change", args=[world.pk]))
    html = html.content.decode()
    assert f'id="integrations-connection-{world.pk}"' in html
    assert f'id="integrations-connection-{other.pk}"' not in html
    assert "Needs attention: 1" in html
    home = client.get(HOME).content.decode()
    assert f'id="integrations-connection-{other.pk}"' in home and "never" in home


def test_the_dashboard_costs_the_same_queries_for_one_connection_or_many(world):
    reconcile(world, timezone.localdate().replace(day=1))  # (else its lookup is skipped)
    with CaptureQueriesContext(db) as one:
        dashboard.panels()
    for _ in range(5):
        prop = PropertyFactory(time_zone="Europe/Paris")
        Connection.objects.create(property=prop, provider=FakeProvider.id)
    with CaptureQueriesContext(db) as six:
        panels = dashboard.panels()
    assert len(panels) == 6
    assert len(one) == len(six) == 6


def test_a_paused_connection_says_why_and_the_banner_links_to_it(world):
    Connection.objects.filter(pk=world.pk).update(
        paused_at=timezone.now(), paused_reason="the fake remote refused the login"
    )
    html = client_for(*VIEW_ALL).get(HOME).content.decode()
    assert "paused: credentials refused" in html and "refused the login" in html
    found = links(html)
    assert found["1 connection paused: credentials refused"].endswith("?paused_at__isnull=False")


def test_the_banner_is_on_every_admin_page_while_something_needs_a_person(world):
    client = client_for(*VIEW_ALL, "rentplatform.view_payment")
    for url in (HOME, reverse("admin:rentplatform_payment_changelist")):
        html = client.get(url).content.decode()
        assert 'id="integrations-banner"' in html, url
        found = links(html)
        assert found["1 posting needs attention"].endswith("?state__exact=needs_attention")
        assert found["1 posting unconfirmed: look in the accounting system"].endswith(
            "?state__exact=unconfirmed"
        )
    # A report whose email gave up (no manager emails) is a person's too.
    lease, _ = lease_with_resident(unit__building__property__manager_emails="")
    payment = services.accept_payment(lease, Decimal("5.00"), PaymentMethod.CARD)
    services.settle_payment(payment)
    services.deposit_batch(payment.batch)
    reports.ensure_delivery(payment.batch)
    found = links(client.get(HOME).content.decode())
    assert found["1 Batch Deposit Report email failed: send again by hand"].endswith(
        "?report_email=failed"
    )


def test_the_banner_goes_once_nothing_waits_for_a_person(world):
    client = client_for(*VIEW_ALL)
    for posting in Posting.objects.filter(state=PostingState.NEEDS_ATTENTION):
        outbox.abandon(posting, who="ops", note="voided before it reached the ledger")
    for posting in Posting.objects.filter(state=PostingState.UNCONFIRMED):
        outbox.mark_found(posting, receipt="R-1", who="ops")
    html = client.get(HOME).content.decode()
    assert 'id="integrations-banner"' not in html
    assert "Needs attention: 0" in html


def test_the_banner_shows_only_what_the_user_may_see(world):
    html = client_for("rentplatform.view_payment").get(HOME).content.decode()
    assert 'id="integrations-banner"' not in html
    assert 'id="integrations-dashboard"' not in html
    html = client_for("integrations.view_posting").get(HOME).content.decode()
    assert "1 posting needs attention" in html
    assert 'id="integrations-dashboard"' not in html  # needs view_connection


def test_the_last_reconciliation_is_shown_and_its_differences_reach_the_banner(world):
    client = client_for(*VIEW_ALL, "integrations.reconcile")
    assert "never run" in client.get(HOME).content.decode()
    month = timezone.localdate().replace(day=1)
    result = reconcile(world, month, ran_by="olivia")  # the unposted postings differ
    n = len(result.differences)
    assert n > 1
    html = client.get(HOME).content.decode()
    found = links(html)
    run = ReconciliationRun.objects.get()
    assert (run.connection, run.month, run.ran_by, run.differences_count) == (
        world,
        month,
        "olivia",
        n,
    )
    run_url = reverse("admin:integrations_reconciliationrun_change", args=[run.pk])
    assert found[f"{month:%Y-%m}: {n} differences"] == run_url
    assert "by olivia, read from the remote" in html
    banner = "the last reconciliation of 1 connection found differences or could not compare"
    assert found[banner].endswith("?outcome=unsettled")
    assert run_url in client.get(found[banner]).content.decode()  # the list behind it
    recorded = unescape(client.get(run_url).content.decode())
    for _, sentence in sentences(result):
        assert sentence in recorded
    assert "Reconcile " + f"{month:%Y-%m}" + " again now" in recorded
    # A later run that matches (a month with nothing in it) is the last one: the banner goes.
    reconcile(world, month.replace(year=month.year - 1), ran_by="olivia")
    html = client.get(HOME).content.decode()
    assert f"{month.year - 1}-{month:%m}: no differences" in html
    assert banner not in html
