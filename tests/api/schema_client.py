"""A client generated at run time from the API's OpenAPI schema, as a platform developer's
would be: it knows nothing about this API but what GET /api/schema/ says.

Each operation becomes a method named by its ``operationId``; keyword arguments are the
operation's parameters (path, query and header ones, named in Python style:
``Idempotency-Key`` is ``idempotency_key``) plus ``body`` for a request body. An argument the
schema does not name, or a required one left out, is a TypeError before anything is sent. Every
answer is checked against the schema (status code, content type, body, headers); an error answer
raises ``ApiError`` with the one error shape's ``code``, ``detail`` and ``fields``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis


@dataclass
class ApiError(Exception):
    status: int
    code: str
    detail: str
    fields: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    data: Any


class SchemaClient:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, auth=(username, password), timeout=30)
        raw = self.http.get("/api/schema/", params={"format": "json"})
        raw.raise_for_status()
        self.schema = schemathesis.openapi.from_dict(raw.json())
        self.operations: dict[str, tuple[str, str, dict[str, dict]]] = {}
        for path, item in raw.json()["paths"].items():
            for method, operation in item.items():
                params = {_python_name(p["name"]): p for p in operation.get("parameters", [])}
                self.operations[operation["operationId"]] = (method, path, params)

    def close(self) -> None:
        self.http.close()

    def __getattr__(self, operation_id: str):
        if operation_id not in self.operations:
            raise AttributeError(f"the schema has no operation {operation_id!r}")

        def call(*, body: Any = None, **kwargs: Any) -> Answer:
            return self._call(operation_id, body, kwargs)

        call.__name__ = operation_id
        return call

    def _call(self, operation_id: str, body: Any, kwargs: dict[str, Any]) -> Answer:
        method, path, params = self.operations[operation_id]
        unknown = set(kwargs) - set(params)
        if unknown:
            raise TypeError(f"{operation_id} takes no {sorted(unknown)}; it takes {sorted(params)}")
        missing = {n for n, p in params.items() if p.get("required") and n not in kwargs}
        if missing:
            raise TypeError(f"{operation_id} needs {sorted(missing)}")
        query, headers = {}, {}
        for name, value in kwargs.items():
            where, real_name = params[name]["in"], params[name]["name"]
            if where == "path":
                path = path.replace("{" + real_name + "}", str(value))
            elif where == "query":
                query[real_name] = value
            elif where == "header":
                headers[real_name] = str(value)
        response = self.http.request(method, path, params=query, headers=headers, json=body)
        operation = self.schema.find_operation_by_id(operation_id)
        operation.validate_response(response)  # raises when the answer breaks the schema
        data = response.json() if response.content else None
        if response.status_code >= 400:
            raise ApiError(response.status_code, **data)
        return Answer(response.status_code, response.headers, data)


def _python_name(name: str) -> str:
    return name.lower().replace("-", "_")
