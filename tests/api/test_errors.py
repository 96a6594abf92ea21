"""One error shape everywhere, and the status codes a platform's client relies on: 401 for
missing or wrong credentials, 403 for lacking permission, 404 for another resident's objects;
and pagination on the lists."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.pagination import PageNumberPagination

from rentplatform.services import accept_payment

from .conftest import basic_auth

SHAPE = {"code", "detail"}


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) in (SHAPE, SHAPE | {"fields"}), body
    assert body["code"] == code and body["detail"], body
    return body


def post_json(client: Client, url: str, body, **headers) -> object:
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/leases/"),
        ("get", "/api/payments/"),
        ("post", "/api/integrations/sync/"),
        ("get", "/api/integrations/postings/"),
        ("get", "/api/integrations/sync-runs/"),
        ("post", "/api/integrations/leases/1/link/"),
    ],
)
def test_missing_and_wrong_credentials_are_401(api_world, method, url):
    response = getattr(Client(), method)(url)
    error_of(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Basic realm="api"'
    wrong = Client(HTTP_AUTHORIZATION=basic_auth(api_world.resident.user.username, "nope"))
    error_of(getattr(wrong, method)(url), 401, "authentication_failed")


def test_lacking_permission_is_403(api_world):
    resident = api_world.client(api_world.resident_auth)
    for url in ("/api/integrations/postings/", "/api/integrations/sync-runs/"):
        body = error_of(resident.get(url), 403, "permission_denied")
        assert "integrations.view_" in body["detail"]
    error_of(post_json(resident, "/api/integrations/sync/", {}), 403, "permission_denied")


def test_another_residents_objects_are_404(api_world):
    me = api_world.client(api_world.resident_auth)
    theirs = api_world.other_payment.public_id
    lease = api_world.other_lease.pk
    error_of(me.get(f"/api/leases/{lease}/"), 404, "not_found")
    error_of(me.get(f"/api/leases/{lease}/payments/"), 404, "not_found")
    body = {"amount": "10.00", "method": "card"}
    error_of(post_json(me, f"/api/leases/{lease}/payments/", body), 404, "not_found")
    error_of(me.get(f"/api/payments/{theirs}/"), 404, "not_found")
    error_of(me.post(f"/api/payments/{theirs}/void/"), 404, "not_found")
    error_of(me.get("/api/payments/not-a-payment-id/"), 404, "not_found")


def test_validation_errors_name_their_fields(api_world):
    me = api_world.client(api_world.resident_auth)
    url = f"/api/leases/{api_world.lease.pk}/payments/"
    body = error_of(post_json(me, url, {"amount": 1.5, "method": "cash"}), 400, "invalid")
    assert set(body["fields"]) == {"amount", "method"}
    assert all(isinstance(m, str) for ms in body["fields"].values() for m in ms)
    assert body["detail"].startswith("amount: ")
    # Malformed JSON is DRF's ParseError, in the same shape.
    response = me.post(url, "{", content_type="application/json")
    assert error_of(response, 400, "parse_error")["detail"].startswith("JSON parse error")
    # A header's problem is named by the header.
    good = {"amount": "5.00", "method": "card"}
    response = post_json(me, url, good, HTTP_IDEMPOTENCY_KEY="has space")
    assert "Idempotency-Key" in error_of(response, 400, "invalid")["fields"]
    staff = api_world.client(api_world.staff_auth)
    response = staff.get("/api/integrations/postings/", {"state": "lost", "payment": "x"})
    assert set(error_of(response, 400, "invalid")["fields"]) == {"state", "payment"}


def test_refusals_keep_their_codes_in_the_shape(api_world):
    me = api_world.client(api_world.resident_auth)
    pay = f"/api/leases/{api_world.lease.pk}/payments/"
    first = me.post(pay, {"amount": "5.00", "method": "card"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    again = me.post(pay, {"amount": "6.00", "method": "card"}, HTTP_IDEMPOTENCY_KEY="k-1")
    error_of(again, 422, "idempotency_key_reused")
    staff = api_world.client(api_world.staff_auth)
    error_of(post_json(staff, "/api/integrations/sync/", {}), 400, "invalid")
    body = {"property": "nowhere"}
    error_of(post_json(staff, "/api/integrations/sync/", body), 404, "not_found")
    link = f"/api/integrations/leases/{api_world.lease.pk}/link/"
    assert "remote_id" in error_of(post_json(staff, link, {}), 400, "invalid")["fields"]


def test_lists_are_paginated(api_world, monkeypatch):
    # The class reads PAGE_SIZE when imported, so a settings override would not reach it.
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    lease, resident = api_world.lease, api_world.resident
    for amount in ("1.00", "2.00"):
        accept_payment(lease, amount, "card", resident=resident)
    me = api_world.client(api_world.resident_auth)
    first = me.get("/api/payments/").json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["previous"] is None
    second = me.get(first["next"]).json()
    assert [p["amount"] for p in second["results"]] == ["40.00"]
    error_of(me.get("/api/payments/", {"page": 9}), 404, "not_found")
    staff = api_world.client(api_world.staff_auth)
    postings = staff.get("/api/integrations/postings/").json()
    # The other lease's property has no accounting connection: its payment has no posting.
    assert postings["count"] == 3 and len(postings["results"]) == 2
