"""Enabling a connection and backfilling the payments taken before it existed.

A disabled connection holds its postings and delivers them once enabled (the admin checkbox or
``services.enable_connection``); a backfill creates the postings a property's earlier payments
and reversals never got, after showing what it would create, and never a second one.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from integrations import services as integration_services
from integrations.models import Connection, FakeRemoteEntry, Posting, PostingState
from rentplatform import services
from tests.factories import lease_with_resident, staff_user

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 3, 2)


def _noon(day: dt.date) -> dt.datetime:
    import zoneinfo

    return dt.datetime.combine(day, dt.time(12), tzinfo=zoneinfo.ZoneInfo("America/Chicago"))


@pytest.fixture
def lease():
    lease, _ = lease_with_resident()
    return lease


@pytest.fixture
def history(lease):
    """Taken before the property had a connection: 3 payments over three days, a refund of
    the last one, and an earlier payment (before DAY) refunded on DAY."""
    early = services.accept_payment(lease, "10.00", "card", now=_noon(DAY - dt.timedelta(days=3)))
    payments = [
        services.accept_payment(lease, amount, "card", now=_noon(DAY + dt.timedelta(days=n)))
        for n, amount in enumerate(["100.00", "200.00", "300.00"])
    ]
    services.settle_payment(payments[2])
    refund = services.refund_payment(payments[2], now=_noon(DAY + dt.timedelta(days=3)))
    services.settle_payment(early)
    early_refund = services.refund_payment(early, now=_noon(DAY))
    assert not Posting.objects.exists()
    return {"early": early, "payments": payments, "refund": refund, "early_refund": early_refund}


def test_backfill_shows_then_creates_the_missing_postings_once(
    lease, history, django_capture_on_commit_callbacks
):
    connection = Connection.objects.create(property=lease.property, provider="fake")
    plan = integration_services.backfill(connection, DAY, dry_run=True)
    assert [p.pk for p in plan.payments] == [p.pk for p in history["payments"]]
    assert [r.pk for r in plan.reversals] == [history["refund"].pk]
    assert [r.pk for r in plan.skipped_reversals] == [history["early_refund"].pk]
    assert plan.count == 4
    assert plan.total == Decimal("300.00")  # 100 + 200 + 300 - 300
    assert (plan.first, plan.last) == (DAY, DAY + dt.timedelta(days=3))
    assert not Posting.objects.exists()  # a dry run writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        done = integration_services.backfill(connection, DAY, dry_run=False)
    assert done.created == 4
    assert Posting.objects.count() == 4
    assert set(Posting.objects.values_list("state", flat=True)) == {PostingState.POSTED}
    assert FakeRemoteEntry.objects.count() == 4

    # Again, or from an earlier day: nothing twice; the early payment now, and its refund.
    again = integration_services.backfill(connection, DAY, dry_run=False)
    assert again.count == 0 and again.created == 0
    earlier = integration_services.backfill(connection, DAY - dt.timedelta(days=3), dry_run=False)
    assert earlier.created == 2
    assert Posting.objects.filter(payment=history["early"]).count() == 2
    assert Posting.objects.count() == 6


def test_a_live_payment_during_a_backfill_gets_one_posting(lease, history):
    connection = Connection.objects.create(property=lease.property, provider="fake")
    plan = integration_services.backfill(connection, DAY, dry_run=True)
    # A payment of the plan got its posting meanwhile (the signal of a live event).
    from integrations import outbox

    outbox.create_payment_posting(history["payments"][0])
    done = integration_services.backfill(connection, DAY, dry_run=False)
    assert done.created == plan.count - 1
    assert Posting.objects.filter(payment=history["payments"][0], kind="payment").count() == 1


def test_a_backfill_on_a_disabled_connection_is_held(lease, history):
    connection = Connection.objects.create(property=lease.property, provider="fake", enabled=False)
    integration_services.backfill(connection, DAY, dry_run=False)
    assert set(Posting.objects.values_list("state", flat=True)) == {PostingState.PENDING}
    assert FakeRemoteEntry.objects.count() == 0


# -- the admin --


def _connection_form(connection, **fields):
    return {
        "property": connection.property_id,
        "provider": "fake",
        "settings": "{}",
        "password": "",
        **fields,
    }


def test_enabling_in_the_admin_delivers_what_waited_and_offers_a_backfill(
    lease, client, django_capture_on_commit_callbacks
):
    connection = Connection.objects.create(property=lease.property, provider="fake", enabled=False)
    payment = services.accept_payment(lease, "75.00", "card")
    posting = Posting.objects.get(payment=payment)
    assert posting.state == PostingState.PENDING
    user = staff_user(
        "integrations.view_connection",
        "integrations.change_connection",
        "integrations.backfill_postings",
    )
    client.force_login(user)
    url = reverse("admin:integrations_connection_change", args=[connection.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, _connection_form(connection, enabled="on"))
    backfill_url = reverse("admin:integrations_connection_backfill", args=[connection.pk])
    assert response.status_code == 302 and response["Location"] == backfill_url
    posting.refresh_from_db()
    assert posting.state == PostingState.POSTED
    assert FakeRemoteEntry.objects.filter(key=posting.key).count() == 1


def test_backfill_page_previews_then_runs_on_confirmation(
    lease, history, client, django_capture_on_commit_callbacks
):
    connection = Connection.objects.create(property=lease.property, provider="fake")
    url = reverse("admin:integrations_connection_backfill", args=[connection.pk])
    user = staff_user("integrations.view_connection", "integrations.backfill_postings")
    client.force_login(user)
    page = client.get(url)
    assert page.status_code == 200 and b"Show what would be posted" in page.content

    preview = client.post(url, {"since": DAY.isoformat(), "preview": "1"})
    text = preview.content.decode()
    assert preview.status_code == 200
    assert "3 payment(s) and 1 reversal(s)" in text and "net 300.00" in text
    assert f"{DAY}" in text and f"{DAY + dt.timedelta(days=3)}" in text
    assert "Create these 4 postings" in text
    assert not Posting.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {"since": DAY.isoformat(), "confirm": "1"})
    assert done.status_code == 302
    assert Posting.objects.count() == 4
    assert FakeRemoteEntry.objects.count() == 4


def test_backfill_needs_its_own_permission(lease, history, client):
    connection = Connection.objects.create(property=lease.property, provider="fake")
    url = reverse("admin:integrations_connection_backfill", args=[connection.pk])
    user = staff_user(
        "integrations.view_connection",
        "integrations.change_connection",
        "integrations.retry_posting",
    )
    client.force_login(user)
    assert client.get(url).status_code == 403
    assert client.post(url, {"since": DAY.isoformat(), "confirm": "1"}).status_code == 403
    assert not Posting.objects.exists()


# -- AMSI: an unlinked lease's payment still gets its posting --


@pytest.mark.django_db(transaction=True)
def test_amsi_backfill_posts_linked_leases_and_flags_an_unlinked_one(tmp_path, client):
    from integrations_amsi.client import clear_clients
    from tests.integrations_amsi.world import AmsiWorld

    clear_clients()
    world = AmsiWorld(tmp_path)
    try:
        world.import_property()
        Connection.objects.filter(pk=world.connection.pk).update(enabled=False)
        linked = world.pay("001-01-101-1", "120.00", "card")
        unlinked_lease, _ = lease_with_resident(unit__building__property=world.property)
        unlinked = services.accept_payment(unlinked_lease, "80.00", "card")
        # As if taken before the connection existed: no posting.
        Posting.objects.all().delete()
        world.connection.refresh_from_db()

        user = staff_user(
            "integrations.view_connection",
            "integrations.change_connection",
            "integrations.backfill_postings",
        )
        client.force_login(user)
        url = reverse("admin:integrations_connection_backfill", args=[world.connection.pk])
        preview = client.post(url, {"since": linked.business_day.isoformat(), "preview": "1"})
        assert "2 payment(s) and 0 reversal(s)" in preview.content.decode()
        client.post(url, {"since": linked.business_day.isoformat(), "confirm": "1"})
        assert Posting.objects.count() == 2
        integration_services.enable_connection(world.connection)
        world.deliver_all()
        assert world.posting(linked).state == PostingState.POSTED
        flagged = world.posting(unlinked)
        assert flagged.state == PostingState.NEEDS_ATTENTION
        assert "not linked" in flagged.last_error
        assert len(world.entries(linked.batch.batch_id)) == 1
    finally:
        world.close()
