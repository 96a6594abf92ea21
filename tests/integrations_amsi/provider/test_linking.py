"""Lease link by hand: ResiID only, a matching composite accepted, a mismatching composite or
an unknown ResiID refused, a ResiID shared by two units resolved by the lease's unit (the
framework's link sequence, integrations.linking, with the AMSI hooks), and the link API with
its older AMSI URL."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.test import Client

from integrations.linking import LinkRefused, link_lease
from integrations.models import SyncRun
from integrations_amsi.client import get_client
from integrations_amsi.conf import settings_for
from integrations_amsi.models import AmsiLeaseLink
from integrations_amsi.xmldocs import edex
from rentplatform.models import Building, Lease, LeaseStatus, Unit
from tests.factories import staff_user

pytestmark = pytest.mark.django_db


def sandbox_keys(conn) -> list[tuple[str, str, str, str]]:
    client = get_client(settings_for(conn), key=conn.pk)
    query = edex(
        propertyid="001",
        leasestatus="C",
        includeprimaryaddress=0,
        includecontactdetails=0,
        includerecurringcharges=0,
    )
    return [
        tuple(el.get(n) for n in ("PropertyId", "BldgID", "UnitID", "ResiID"))
        for el in client.stream_leases("GetPropertyResidents", query)
    ]


def pending_lease(conn, bldg: str, unit: str) -> Lease:
    """A tenant added by hand on the platform: a pending lease, no AMSI link yet."""
    building, _ = Building.objects.get_or_create(property=conn.property, code=bldg)
    u, _ = Unit.objects.get_or_create(building=building, code=unit)
    return Lease.objects.create(unit=u, status=LeaseStatus.PENDING)


@pytest.fixture
def first_key(amsi_connection):
    return sandbox_keys(amsi_connection)[0]


def test_resi_id_links_and_syncs(amsi_connection, first_key):
    _pid, bldg, unit, resi = first_key
    lease = pending_lease(amsi_connection, bldg, unit)
    result = link_lease(lease, resi)
    assert result.note == ""
    link = AmsiLeaseLink.objects.get(lease=lease)
    assert link.key == first_key and link.linked_by_hand
    lease.refresh_from_db()
    assert lease.status == LeaseStatus.ACTIVE  # the lease sync brought AMSI's status in
    assert lease.residents.exists() and link.occupants.exists()
    assert result.run.status == "succeeded"


def test_matching_composite_is_accepted_as_its_last_part(amsi_connection, first_key):
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    composite = "-".join(first_key)
    result = link_lease(lease, composite)
    assert f"took its last part, ResiID {first_key[3]}" in result.note
    assert AmsiLeaseLink.objects.get(lease=lease).resi_id == first_key[3]
    assert result.remote_id == composite


def test_mismatching_composite_is_refused(amsi_connection, first_key):
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    wrong = f"001-{first_key[1]}-999-{first_key[3]}"
    with pytest.raises(LinkRefused, match=f"unit {first_key[1]}-999.*unit {first_key[1]}-"):
        link_lease(lease, wrong)
    with pytest.raises(LinkRefused, match="not a ResiID"):
        link_lease(lease, f"{first_key[2]}-{first_key[3]}")
    assert not AmsiLeaseLink.objects.exists() and not SyncRun.objects.exists()


def test_unknown_resi_id_is_refused(amsi_connection, first_key):
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    with pytest.raises(
        LinkRefused,
        match=f"eSite has no lease with ResiID 9999 on unit {first_key[1]}-{first_key[2]}",
    ):
        link_lease(lease, "9999")
    assert not AmsiLeaseLink.objects.exists()


def test_shared_resi_id_resolved_by_unit(amsi_connection):
    by_resi = defaultdict(list)
    for key in sandbox_keys(amsi_connection):
        by_resi[key[3]].append(key)
    resi, keys = next((r, k) for r, k in by_resi.items() if len(k) > 1)
    leases = [pending_lease(amsi_connection, k[1], k[2]) for k in keys[:2]]
    for lease, key in zip(leases, keys, strict=False):
        assert link_lease(lease, resi).remote_id == "-".join(key)
        assert AmsiLeaseLink.objects.get(lease=lease).key == key
    # and the same ResiID on a unit that does not have it is refused
    other = next(k for k in sandbox_keys(amsi_connection) if k[3] != resi)
    lease = pending_lease(amsi_connection, other[1], other[2])
    with pytest.raises(LinkRefused, match=f"no lease with ResiID {resi} on unit"):
        link_lease(lease, resi)


def test_already_linked_is_refused(amsi_connection, first_key):
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    link_lease(lease, first_key[3], sync=False)
    twin = Lease.objects.create(unit=lease.unit, status=LeaseStatus.PENDING)
    with pytest.raises(LinkRefused, match=f"already linked to lease #{lease.pk}"):
        link_lease(twin, first_key[3])


def test_link_api(amsi_connection, first_key):
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    url = f"/api/integrations/leases/{lease.pk}/link/"
    client = Client()
    client.force_login(staff_user("integrations.run_sync"))
    assert (
        client.post(url, {"remote_id": first_key[3]}, content_type="application/json").status_code
        == 403
    )
    client.force_login(staff_user("integrations.run_import"))
    response = client.post(url, {"remote_id": "9999"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("eSite has no lease with ResiID 9999")
    response = client.post(url, {"resi_id": "21"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"] == "remote_id: enter the AMSI ResiID"
    response = client.post(url, {"remote_id": "-".join(first_key)}, content_type="application/json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["remote_id"] == "-".join(first_key) and "took its last part" in body["note"]
    assert body["sync"]["status"] == "succeeded"
    assert (
        client.post(
            "/api/integrations/leases/999999/link/",
            {"remote_id": "1"},
            content_type="application/json",
        ).status_code
        == 404
    )


def test_link_api_older_amsi_url(amsi_connection, first_key):
    """/api/amsi/leases/<id>/link/ {"resi_id"}: the same view, the body's key named as before."""
    lease = pending_lease(amsi_connection, first_key[1], first_key[2])
    url = f"/api/amsi/leases/{lease.pk}/link/"
    client = Client()
    client.force_login(staff_user("integrations.run_sync"))
    assert client.post(url, {"resi_id": "1"}, content_type="application/json").status_code == 403
    client.force_login(staff_user("integrations.run_import"))
    response = client.post(url, {"remote_id": first_key[3]}, content_type="application/json")
    assert response.status_code == 400 and "resi_id" in response.json()["fields"]
    response = client.post(url, {"resi_id": first_key[3]}, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["remote_id"] == "-".join(first_key)
    assert AmsiLeaseLink.objects.get(lease=lease).linked_by_hand


def test_tenant_added_by_hand_is_adopted_not_duplicated(amsi_connection, first_key):
    """The person who was added by hand (with a portal login) is matched to AMSI's occupant by
    email, so the lease does not list them twice after the link's sync."""
    from rentplatform.models import LeaseResident, Resident
    from tests.factories import UserFactory

    _pid, bldg, unit, resi = first_key
    p, b, u, r = first_key
    client = get_client(settings_for(amsi_connection), key=amsi_connection.pk)
    query = edex(
        propertyid="001",
        leasestatus="C",
        includeprimaryaddress=0,
        includecontactdetails=0,
        includerecurringcharges=0,
    )
    occupant = next(
        (o.get("OccuFirstName"), o.get("OccuLastName"), o.get("Email", ""))
        for el in client.stream_leases("GetPropertyResidents", query)
        if (el.get("BldgID"), el.get("UnitID"), el.get("ResiID")) == (b, u, r)
        for o in el
        if o.tag == "Occupant"
    )
    first, last, email = occupant
    lease = pending_lease(amsi_connection, bldg, unit)
    user = UserFactory()
    tenant = Resident.objects.create(
        user=user, first_name=first.upper(), last_name=last, email=email.upper()
    )
    LeaseResident.objects.create(lease=lease, resident=tenant)
    link_lease(lease, resi)
    link = AmsiLeaseLink.objects.get(lease=lease)
    occupant_link = link.occupants.get(resident=tenant)
    assert occupant_link.resident.user == user
    names = [(m.resident.first_name.lower(), m.resident.last_name) for m in lease.memberships.all()]
    assert names.count((first.lower(), last)) == 1
