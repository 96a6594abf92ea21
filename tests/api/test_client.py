"""A platform developer's client, generated from /api/schema/ of a running server, pays, voids
and lists postings: over real HTTP (pytest-django's live server), signed in with HTTP Basic as
a resident and as staff, each answer checked against the schema by the client itself."""

from __future__ import annotations

import uuid

import pytest

from integrations.models import PostingKind, PostingState
from rentplatform.models import PaymentState
from tests.factories import PASSWORD

from .schema_client import ApiError, SchemaClient


@pytest.fixture
def clients(live_server, api_world):
    resident = SchemaClient(live_server.url, api_world.resident.user.username, PASSWORD)
    staff = SchemaClient(live_server.url, api_world.staff.username, PASSWORD)
    yield resident, staff
    resident.close()
    staff.close()


def test_generated_client_pays_voids_and_lists_postings(api_world, clients):
    resident, staff = clients
    leases = resident.leases_list().data
    assert leases["count"] == 1
    lease = leases["results"][0]
    assert lease["can_pay_card"] is True

    key = str(uuid.uuid4())
    body = {"amount": "125.00", "method": "card"}
    paid = resident.leases_payments_create(id=lease["id"], idempotency_key=key, body=body)
    assert paid.status == 201 and paid.data["state"] == PaymentState.PROCESSING
    payment_id = paid.data["id"]
    again = resident.leases_payments_create(id=lease["id"], idempotency_key=key, body=body)
    assert again.data == paid.data and again.headers["Idempotent-Replayed"] == "true"

    voided = resident.payments_void(public_id=payment_id, idempotency_key=str(uuid.uuid4()))
    assert voided.status == 200 and voided.data["state"] == PaymentState.VOIDED
    history = resident.leases_payments_list(id=lease["id"]).data["results"]
    assert {p["id"]: p["state"] for p in history}[payment_id] == PaymentState.VOIDED

    postings = staff.integrations_postings_list(payment=payment_id).data
    assert postings["count"] == 2
    # The short reference people see is the id's first 10 digits, and is taken too.
    assert paid.data["reference"] == payment_id[:10]
    by_reference = staff.integrations_postings_list(payment=paid.data["reference"]).data
    assert by_reference == postings
    by_kind = {p["kind"]: p for p in postings["results"]}
    assert set(by_kind) == {PostingKind.PAYMENT, PostingKind.REVERSAL}
    assert all(p["state"] == PostingState.POSTED for p in by_kind.values())
    assert by_kind[PostingKind.PAYMENT]["provider"] == "fake"
    posted = staff.integrations_postings_list(state=PostingState.POSTED, kind=PostingKind.REVERSAL)
    assert [p["payment"] for p in posted.data["results"]] == [payment_id]


def test_generated_client_raises_the_error_shape(api_world, clients):
    resident, staff = clients
    with pytest.raises(ApiError) as refused:
        resident.payments_void(public_id=api_world.other_payment.public_id)
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as invalid:
        resident.leases_payments_create(id=api_world.lease.pk, body={"amount": 12.5})
    assert invalid.value.code == "invalid" and set(invalid.value.fields) == {"amount", "method"}
    with pytest.raises(ApiError) as forbidden:
        resident.integrations_postings_list()
    assert (forbidden.value.status, forbidden.value.code) == (403, "permission_denied")
    with pytest.raises(TypeError, match="takes no"):
        staff.integrations_postings_list(status="posted")
