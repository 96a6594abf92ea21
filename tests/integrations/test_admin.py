"""The framework's admin serves every provider: one connection admin (the provider's form and
layout, a chooser first when adding, the same actions) and one set of lease actions on the
host's Lease admin. Here with the fake provider and, without a sandbox, the AMSI form."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from integrations.admin.leases import LeaseAccountingActions
from integrations.models import Connection, FakeLeaseLink, SyncRun
from integrations.providers.fake import FakeProvider
from rentplatform.admin import LeaseAdmin
from rentplatform.models import Lease, LeaseStatus
from tests.factories import PropertyFactory, lease_with_resident, staff_user

pytestmark = pytest.mark.django_db

ADD = reverse("admin:integrations_connection_add")
CHANGELIST = reverse("admin:integrations_connection_changelist")
LEASES = reverse("admin:rentplatform_lease_changelist")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def lease() -> Lease:
    lease, _ = lease_with_resident()
    return lease


@pytest.fixture
def fake(lease) -> Connection:
    """A fake connection whose remote lists the lease's unit as lease L1."""
    unit = lease.unit
    return Connection.objects.create(
        property=lease.property,
        provider="fake",
        settings={"leases": [{"id": "L1", "unit": f"{unit.building.code}-{unit.code}"}]},
    )


# -- adding: the accounting system first ----------------------------------------------------------
def test_add_starts_by_choosing_the_accounting_system(admin_client):
    page = admin_client.get(ADD)
    text = page.content.decode()
    assert page.status_code == 200 and "which accounting system" in text
    assert '<a href="?provider=amsi">AMSI eSite (eDex)</a>' in text
    assert f'<a href="?provider=fake">{FakeProvider.name}</a>' in text
    unknown = admin_client.get(ADD + "?provider=nope")
    assert "which accounting system" in unknown.content.decode()
    assert client_for(staff_user("integrations.view_connection")).get(ADD).status_code == 403


def test_add_a_fake_connection_with_the_generic_form(admin_client):
    prop = PropertyFactory()
    page = admin_client.get(ADD + "?provider=fake").content.decode()
    assert f"Add {FakeProvider.name} connection" in page and 'name="settings"' in page
    response = admin_client.post(
        ADD + "?provider=fake",
        {"property": prop.pk, "settings": '{"unreachable": false}', "password": "pw-1"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get(property=prop)
    assert connection.provider == "fake" and connection.credentials == {"password": "pw-1"}
    assert connection.settings == {"unreachable": False} and not connection.enabled


def test_add_an_amsi_connection_with_its_typed_form(admin_client):
    prop = PropertyFactory()
    url = ADD + "?provider=amsi"
    page = admin_client.get(url).content.decode()
    assert "eDex web services" in page and 'name="settings"' not in page
    data = {
        "property": prop.pk,
        "url": "http://127.0.0.1:9/edexweb/esite",
        "portfolio": "DEMO",
        "user_id": "u",
        "password": "pw-123456",
        "property_id": "001",
        "merchant_id": "1",
        "close_cutoff": "22:00",
        "time_zone": "America/Chicago",
        "timeout": "10",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get(property=prop)
    assert connection.provider == "amsi" and connection.settings["property_id"] == "001"
    assert connection.credentials == {"password": "pw-123456"}
    listed = admin_client.get(CHANGELIST).content.decode()
    assert "AMSI eSite (eDex)" in listed and "PropertyId 001 in DEMO" in listed


# -- changing: the provider's layout; the same actions ---------------------------------------------
def test_change_page_of_a_fake_connection_shows_the_generic_layout(admin_client, fake):
    page = admin_client.get(reverse("admin:integrations_connection_change", args=[fake.pk]))
    text = page.content.decode()
    assert page.status_code == 200 and 'name="settings"' in text
    assert "eDex web services" not in text and FakeProvider.name in text
    filtered = admin_client.get(CHANGELIST + "?provider=fake").content.decode()
    assert fake.property.code in filtered


def test_a_view_only_user_sees_a_connection_read_only(fake):
    client = client_for(staff_user("integrations.view_connection"))
    page = client.get(reverse("admin:integrations_connection_change", args=[fake.pk]))
    assert page.status_code == 200
    assert fake.property.code in page.content.decode()
    assert 'name="settings"' not in page.content.decode()  # nothing to edit


def test_actions_dispatch_to_the_connection_provider(fake):
    def run(action: str, *perms: str):
        client = client_for(staff_user("integrations.view_connection", *perms))
        data = {"action": action, "_selected_action": [fake.pk]}
        return messages_of(client.post(CHANGELIST, data, follow=True))

    assert not any("fake remote answers" in m for m in run("test_connection"))  # no permission
    fake.refresh_from_db()
    assert fake.last_tested_at is None
    assert any(
        "fake remote answers" in m for m in run("test_connection", "integrations.test_connection")
    )
    assert any("Initial import" in m for m in run("import_property", "integrations.run_import"))
    assert any("Delta resync" in m for m in run("sync_now", "integrations.run_sync"))
    assert any("Full resync" in m for m in run("full_sync", "integrations.run_sync"))
    assert list(SyncRun.objects.order_by("pk").values_list("kind", flat=True)) == [
        "import",
        "delta",
        "full",
    ]


# -- the lease actions -----------------------------------------------------------------------------
LEASE_PERMS = ("rentplatform.view_lease", "rentplatform.change_lease")


def lease_action(user, action: str, pk: int, **extra):
    data = {"action": action, "_selected_action": [pk], **extra}
    return client_for(user).post(LEASES, data, follow=True)


def test_lease_actions_extend_the_host_admin_once():
    model_admin = admin.site.get_model_admin(Lease)
    assert isinstance(model_admin, LeaseAdmin) and isinstance(model_admin, LeaseAccountingActions)
    assert model_admin.actions == [*LeaseAdmin.actions, "sync_lease_now", "link_lease"]


def test_link_and_sync_a_lease_of_a_fake_connection(lease, fake):
    user = staff_user(*LEASE_PERMS, "integrations.run_import", "integrations.run_sync")
    page = lease_action(user, "link_lease", lease.pk).content.decode()
    assert "Enter the Fake remote lease id" in page and "Verify with the fake remote" in page
    refused = lease_action(user, "link_lease", lease.pk, apply="1", remote_id="L9")
    assert "the fake remote has no lease L9" in refused.content.decode()
    assert not FakeLeaseLink.objects.exists()
    done = lease_action(user, "link_lease", lease.pk, apply="1", remote_id="L1")
    assert any(
        m.startswith(f"lease #{lease.pk} linked to the fake remote lease L1")
        for m in messages_of(done)
    )
    assert FakeLeaseLink.objects.get(lease=lease).linked_by_hand
    synced = lease_action(user, "sync_lease_now", lease.pk)
    assert any("One lease" in m for m in messages_of(synced))
    assert SyncRun.objects.filter(kind="lease").count() == 2  # after the link, and this one


def test_lease_actions_refuse_without_a_linking_connection(lease, fake, monkeypatch):
    user = staff_user(*LEASE_PERMS, "integrations.run_import", "integrations.run_sync")
    monkeypatch.setattr(FakeProvider, "links_leases", False)
    response = lease_action(user, "link_lease", lease.pk)
    assert any("leases are not linked by hand" in m for m in messages_of(response))
    other, _ = lease_with_resident()
    response = lease_action(user, "link_lease", other.pk)
    assert any("has no accounting connection" in m for m in messages_of(response))
    response = lease_action(user, "sync_lease_now", other.pk)
    assert any("no enabled connection" in m for m in messages_of(response))
    assert not SyncRun.objects.exists() and not FakeLeaseLink.objects.exists()


def test_link_api_with_a_fake_connection(lease, fake):
    url = f"/api/integrations/leases/{lease.pk}/link/"
    client = client_for(staff_user("integrations.run_import"))
    refused = client.post(url, {"remote_id": "L9"}, content_type="application/json")
    assert refused.status_code == 400 and refused.json()["code"] == "link_refused"
    response = client.post(url, {"remote_id": "L1"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["remote_id"] == "L1" and response.json()["sync"]["kind"] == "lease"
    twin = Lease.objects.create(unit=lease.unit, status=LeaseStatus.PENDING)
    again = client.post(
        f"/api/integrations/leases/{twin.pk}/link/",
        {"remote_id": "L1"},
        content_type="application/json",
    )
    assert again.status_code == 400 and "already linked" in again.json()["detail"]
