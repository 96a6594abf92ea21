"""One error shape for every API answer that is not a success.

``{"code": str, "detail": str, "fields"?: {name: [message, ...]}}``: ``code`` is stable and meant
for programs (``invalid``, ``not_authenticated``, ``permission_denied``, ``not_found``, or a
service's own refusal code such as ``lease_blocked``); ``detail`` is one line a person can read;
``fields`` appears only with ``invalid`` and names each offending body field, header or query
parameter. DRF's own exceptions (authentication, permission, 404, parse errors, validation) are
reshaped by ``exception_handler`` (set as ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``); views that
answer a refusal themselves build it with ``error_response`` so both paths give the same body.

Status codes: 400 invalid request, 401 missing or wrong credentials (with ``WWW-Authenticate``:
the first authentication class is HTTP Basic, whose header DRF sends; session authentication
alone would make DRF answer 403), 403 authenticated but lacking a permission, 404 for objects
that do not exist or are another resident's (their existence is not revealed), 409 for a state
that forbids the action, 422 for an idempotency key reused with a different request.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

INVALID = "invalid"


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (documentation only: never used to parse input)."""

    code = serializers.CharField(help_text="Stable, for programs: invalid, not_found, ...")
    detail = serializers.CharField(help_text="One line a person can read.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text='Only with code "invalid": the messages for each offending field.',
    )

    class Meta:
        ref_name = "Error"


def error_response(
    code: str, detail: str, status: int, *, fields: dict[str, list[str]] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if fields is not None:
        body["fields"] = fields
    return Response(body, status=status)


def invalid_response(errors: Any, *, detail: str | None = None) -> Response:
    """400 ``invalid`` for a serializer's (or a hand-made) ``{field: [messages]}``."""
    fields = as_fields(errors)
    return error_response(INVALID, detail or summary(fields), 400, fields=fields)


def as_fields(errors: Any) -> dict[str, list[str]]:
    """DRF's error structure as ``{field: [message, ...]}`` (nested errors flattened into
    "sub: message" strings, so every client reads one level)."""
    if not isinstance(errors, dict):
        return {"non_field_errors": _messages(errors)}
    return {str(name): _messages(value) for name, value in errors.items()}


def summary(fields: dict[str, list[str]]) -> str:
    """One line: "amount: Enter an amount. method: ..." (non-field messages unprefixed)."""
    parts = []
    for name, messages in fields.items():
        text = "; ".join(messages)
        parts.append(text if name == "non_field_errors" else f"{name}: {text}")
    return " ".join(parts)


def _messages(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    if isinstance(value, list | tuple):
        return [m for item in value for m in _messages(item)]
    return [str(value)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (which also maps Django's Http404 and PermissionDenied), reshaped."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django answers 500 and logs it
    if isinstance(exc, exceptions.ValidationError):
        fields = as_fields(exc.detail)
        response.data = {"code": INVALID, "detail": summary(fields), "fields": fields}
        return response
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
    code = getattr(detail, "code", None) or _CODE_BY_STATUS.get(response.status_code, "error")
    response.data = {"code": str(code), "detail": str(detail)}
    return response


_CODE_BY_STATUS = {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}


def error_responses(*statuses: int, extra: dict[int, str] | None = None) -> dict[int, Any]:
    """Schema entries for error answers: ``error_responses(401, 404, extra={409: "why"})``."""
    table = {status: _COMMON[status] for status in statuses}
    table.update(extra or {})
    return {
        status: OpenApiResponse(ErrorSerializer, description=text) for status, text in table.items()
    }


_COMMON = {
    400: 'Invalid request (code "invalid", with the messages for each field in "fields").',
    401: "Missing or wrong credentials.",
    403: "Authenticated, but lacking the permission.",
    404: "No such object, or not yours to see.",
}
