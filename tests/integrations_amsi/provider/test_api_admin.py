"""Sync-now API and the admin of an AMSI connection (the one connection admin with the AMSI
form): permissions, actions, and the password never shown."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from integrations.models import Connection, SyncRun
from integrations.services import run_sync
from integrations_amsi.models import AmsiLeaseLink
from rentplatform.models import Lease, Property
from tests.factories import UserFactory, staff_user

pytestmark = pytest.mark.django_db

SYNC_URL = "/api/integrations/sync/"
VIEW = "integrations.change_connection"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: dict):
    return client.post(url, body, content_type="application/json")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# -- sync now API -------------------------------------------------------------------------------
def test_sync_api_requires_permission(amsi_connection):
    for user in (UserFactory(), staff_user(), staff_user("integrations.run_import")):
        response = post_json(client_for(user), SYNC_URL, {"property": "maple"})
        assert response.status_code == 403
    assert Client().post(SYNC_URL, {"property": "maple"}).status_code == 401
    assert not SyncRun.objects.exists()


def test_sync_api_property_and_lease(amsi_connection):
    client = client_for(staff_user("integrations.run_sync"))
    response = post_json(client, SYNC_URL, {"property": "maple", "full": True})
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "full" and body["status"] == "succeeded"
    assert body["counts"]["created"] == 24 and body["id"] == SyncRun.objects.get().pk
    lease_id = AmsiLeaseLink.objects.first().lease_id
    body = post_json(client, SYNC_URL, {"lease": lease_id}).json()
    assert body["kind"] == "lease" and body["counts"]["unchanged"] == 1
    body = post_json(client, SYNC_URL, {"property": "maple"}).json()
    assert body["kind"] == "delta" and body["status"] == "succeeded"


def test_sync_api_bad_requests(amsi_connection):
    client = client_for(staff_user("integrations.run_sync"))
    assert post_json(client, SYNC_URL, {}).status_code == 400
    assert post_json(client, SYNC_URL, {"property": "maple", "lease": 1}).status_code == 400
    assert post_json(client, SYNC_URL, {"property": "nowhere"}).status_code == 404
    assert post_json(client, SYNC_URL, {"lease": 999999}).status_code == 404
    assert not SyncRun.objects.exists()


def test_sync_api_failure_is_502_with_message(amsi_connection, control):
    control.add_fault("http500", "GetPropertyUnits", count=1)
    response = post_json(
        client_for(staff_user("integrations.run_sync")),
        SYNC_URL,
        {"property": "maple", "full": True},
    )
    assert response.status_code == 502
    assert response.json()["status"] == "failed" and "HTTP 500" in response.json()["message"]


# -- connection admin -----------------------------------------------------------------------------
def changelist() -> str:
    return reverse("admin:integrations_connection_changelist")


def change_url(connection) -> str:
    return reverse("admin:integrations_connection_change", args=[connection.pk])


def test_password_never_in_admin_pages(amsi_connection, admin_client):
    for url in (
        change_url(amsi_connection),
        changelist(),
        reverse("admin:integrations_connection_add"),
        reverse("admin:integrations_connection_add") + "?provider=amsi",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert b"sandbox-secret" not in response.content
    page = admin_client.get(change_url(amsi_connection)).content.decode()
    # The AMSI form and layout (typed fields, no settings JSON).
    assert "set (encrypted)" in page and "edex_demo" in page
    assert "eDex web services" in page and 'name="settings"' not in page
    # The list names the AMSI property (the provider's describe()).
    assert "PropertyId 001 in DEMO" in admin_client.get(changelist()).content.decode()


def test_admin_form_saves_typed_fields_and_keeps_password(amsi_connection, admin_client):
    url = change_url(amsi_connection)
    data = {
        "property": amsi_connection.property_id,
        "enabled": "on",
        "url": amsi_connection.settings["url"],
        "portfolio": "DEMO",
        "user_id": "edex_demo",
        "password": "",
        "property_id": "001",
        "merchant_id": "7",
        "created_by": "payco",
        "close_cutoff": "21:15",
        "time_zone": "America/Denver",
        "timeout": "4",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = Connection.objects.get()
    assert conn.credentials == {"password": "sandbox-secret"}
    assert conn.settings["merchant_id"] == "7" and conn.settings["close_cutoff"] == "21:15"
    assert Property.objects.get().time_zone == "America/Denver"
    data |= {"close_cutoff": "25:00"}
    assert admin_client.post(url, data).status_code == 200  # refused, form shown again
    # Production clients sent ClientMerchantID as an integer (eSite may read it as one): a
    # letter is refused.
    data |= {"close_cutoff": "21:15", "merchant_id": "M7"}
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "whole number" in response.content.decode()


def run_action(user, action: str, pk: int):
    return client_for(user).post(
        changelist(), {"action": action, "_selected_action": [pk]}, follow=True
    )


def test_admin_test_connection_action(amsi_connection):
    response = run_action(
        staff_user(VIEW, "integrations.test_connection"), "test_connection", amsi_connection.pk
    )
    assert any("connected to" in m for m in messages_of(response))
    amsi_connection.credentials = {"password": "wrong-one"}
    amsi_connection.save()
    response = run_action(
        staff_user(VIEW, "integrations.test_connection"), "test_connection", amsi_connection.pk
    )
    assert any("bad login" in m for m in messages_of(response))
    assert b"wrong-one" not in response.content


def test_admin_test_connection_checks_the_merchant_id(amsi_connection):
    """'Test connection' checks what amsi_connect and the form check: the ClientMerchantID
    against the one eSite lists (the sandbox lists 1001 for property 001)."""
    user = staff_user(VIEW, "integrations.test_connection")
    response = run_action(user, "test_connection", amsi_connection.pk)
    assert any("ClientMerchantID 1001 matches" in m for m in messages_of(response))
    amsi_connection.settings = {**amsi_connection.settings, "merchant_id": "77"}
    amsi_connection.save()
    response = run_action(user, "test_connection", amsi_connection.pk)
    # (not the word "wrong": other tests use it as a password, and passwords are masked)
    expected = "ClientMerchantID: eSite's GetPropertyList shows 1001 for property 001, the "
    assert f"{expected}connection has 77" in " ".join(messages_of(response))
    amsi_connection.refresh_from_db()
    assert amsi_connection.last_test_ok is False
    assert expected in amsi_connection.last_test_message


def test_admin_actions_need_their_permission(amsi_connection):
    user = staff_user(VIEW)
    for action in ("test_connection", "import_property", "sync_now"):
        run_action(user, action, amsi_connection.pk)
    amsi_connection.refresh_from_db()
    assert amsi_connection.last_tested_at is None and not SyncRun.objects.exists()
    page = client_for(user).get(changelist()).content.decode()
    assert "import_property" not in page and "test_connection" not in page


def test_admin_import_and_sync_actions(amsi_connection):
    response = run_action(
        staff_user(VIEW, "integrations.run_import"), "import_property", amsi_connection.pk
    )
    assert any("24 created" in m for m in messages_of(response))
    assert Lease.objects.count() == 24
    response = run_action(staff_user(VIEW, "integrations.run_sync"), "sync_now", amsi_connection.pk)
    assert any("Delta resync" in m for m in messages_of(response))


# -- lease admin ----------------------------------------------------------------------------------
def lease_action(user, action: str, pk: int, **extra):
    return client_for(user).post(
        reverse("admin:rentplatform_lease_changelist"),
        {"action": action, "_selected_action": [pk], **extra},
        follow=True,
    )


def test_lease_admin_sync_action(amsi_connection, control):
    run_sync(amsi_connection, "import")
    link = AmsiLeaseLink.objects.filter(block_payment_access=False).first()
    control.patch_lease(*link.key, BlockPaymentAccess="Y")
    perms = ("rentplatform.view_lease", "rentplatform.change_lease")
    lease_action(staff_user(*perms), "sync_lease_now", link.lease_id)
    assert Lease.objects.get(pk=link.lease_id).accounting_access == "allowed"  # no permission
    response = lease_action(
        staff_user(*perms, "integrations.run_sync"), "sync_lease_now", link.lease_id
    )
    assert any("1 updated" in m for m in messages_of(response))
    assert Lease.objects.get(pk=link.lease_id).accounting_access == "blocked"


def test_lease_admin_link_action(amsi_connection):
    run_sync(amsi_connection, "import")
    link = AmsiLeaseLink.objects.select_related("lease").first()
    key, lease = link.key, link.lease
    link.delete()  # as if the tenant had been added by hand
    user = staff_user(
        "rentplatform.view_lease", "rentplatform.change_lease", "integrations.run_import"
    )
    page = lease_action(user, "link_lease", lease.pk)
    text = page.content.decode()
    assert "Link to AMSI eSite (eDex) lease" in text and "Enter the AMSI ResiID" in text
    assert "Verify with eSite and link" in text
    refused = lease_action(user, "link_lease", lease.pk, apply="1", remote_id="001-99-1-1")
    assert b"Enter only the ResiID of this unit" in refused.content
    done = lease_action(user, "link_lease", lease.pk, apply="1", remote_id="-".join(key))
    assert any("took its last part" in m for m in messages_of(done))
    assert AmsiLeaseLink.objects.get(lease=lease).linked_by_hand


def test_duplicates_refused_confirmation_records_who_when_and_the_code(
    amsi_connection, admin_client, admin_user
):
    url = change_url(amsi_connection)
    data = {
        "property": amsi_connection.property_id,
        "enabled": "on",
        "url": amsi_connection.settings["url"],
        "portfolio": "DEMO",
        "user_id": "edex_demo",
        "password": "",
        "property_id": "001",
        "merchant_id": "1001",
        "close_cutoff": "22:00",
        "time_zone": "America/Chicago",
        "timeout": "4",
        "duplicates_refused": "on",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200  # the refusal's code is required with the box
    assert "Give the ErrorCode" in response.content.decode()
    assert not amsi_connection.get_provider().checks_unknown_outcomes()

    assert admin_client.post(url, data | {"duplicates_refused_code": "206"}).status_code == 302
    conn = Connection.objects.get()
    assert conn.settings["duplicates_refused_by"] == admin_user.get_username()
    assert conn.settings["duplicates_refused_at"]
    assert conn.get_provider().checks_unknown_outcomes()
    page = admin_client.get(url).content.decode()
    assert f"Confirmed by {admin_user.get_username()}" in page

    data.pop("duplicates_refused")
    assert admin_client.post(url, data | {"duplicates_refused_code": "206"}).status_code == 302
    conn = Connection.objects.get()
    assert "duplicates_refused_at" not in conn.settings
    assert not conn.get_provider().checks_unknown_outcomes()
