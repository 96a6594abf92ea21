"""The OpenAPI schema: committed and current, served, browsable offline, and complete (every
operation documents its errors; the idempotent operations their key)."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from tests.conftest import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "docs" / "openapi.yaml"
REGENERATE = ".venv/bin/python manage.py spectacular --file docs/openapi.yaml"


def generated() -> str:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def test_committed_schema_is_current():
    assert SCHEMA_FILE.read_text() == generated(), (
        f"docs/openapi.yaml is out of date with the views; regenerate it: {REGENERATE}"
    )


def test_schema_is_served_to_anyone(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    served = response.json()
    assert served["openapi"].startswith("3.")
    assert "/api/leases/{id}/payments/" in served["paths"]


def test_docs_page_uses_local_assets(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower(), "the docs page must work without internet access"


def test_api_root_lists_the_endpoints(db):
    body = Client().get("/api/").json()
    assert body["leases"].endswith("/api/leases/")
    assert body["postings"].endswith("/api/integrations/postings/")
    assert body["schema"].endswith("/api/schema/") and body["docs"].endswith("/api/docs/")
    for url in body.values():
        assert url.startswith("http://testserver/api/")


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_documents_its_errors(schema):
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        if path == "/api/":
            continue  # open to anyone: no authentication error to document
        assert "401" in responses, (method, path)
        for code, response in responses.items():
            if code.startswith(("4", "5")) and code != "502":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, code)
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "detail"]
    assert set(error["properties"]) == {"code", "detail", "fields"}


def test_lists_are_paginated(schema):
    lists = [
        (path, op)
        for path, method, op in _operations(schema)
        if method == "get" and op["operationId"].endswith("_list")
    ]
    assert len(lists) == 5
    for path, operation in lists:
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.split("/")[-1].startswith("Paginated"), path
        assert any(p["name"] == "page" for p in operation["parameters"]), path


def test_pay_and_void_take_an_idempotency_key(schema):
    for path in ("/api/leases/{id}/payments/", "/api/payments/{public_id}/void/"):
        operation = schema["paths"][path]["post"]
        names = {p["name"]: p for p in operation["parameters"]}
        assert names["Idempotency-Key"]["in"] == "header"
        success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
        assert "Idempotent-Replayed" in success["headers"]
        assert {"400", "401", "404", "409", "422"} <= set(operation["responses"])
