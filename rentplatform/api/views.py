"""The resident API (DRF): own leases and payments, paying and voiding.

Errors have one shape, ``{"code", "detail", "fields"?}`` (``rentplatform.api.errors``):
``invalid`` (400) for a request that fails validation, with per-field messages in ``fields``;
the service's own code for a refusal (409 when the lease or payment is in a state that forbids
it, 400 for a bad value the service caught, 422 ``idempotency_key_reused`` for a key sent again
with a different request); 401 without (or with wrong) credentials; 404 for another resident's
lease or payment. Lists are paginated (``REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]``).

Paying and voiding take an ``Idempotency-Key`` header (paying also the body's
``idempotency_key``): a retry with the same key answers what the first request answered (the same
payment, status code and body shape, plus ``Idempotent-Replayed: true``) and changes nothing.
Keys are the resident's (voids: the user's) own; another user's key is just a new key.
Every view carries ``extend_schema`` so /api/schema/ describes each body, header and error.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from rentplatform.models import Payment
from rentplatform.portal.queries import (
    get_payment_or_404,
    own_leases,
    own_payments,
    resident_of,
)
from rentplatform.services import (
    IdempotencyConflict,
    ServiceError,
    accept_payment,
    void_payment,
)
from rentplatform.services.idempotency import KEY_MAX_LENGTH, key_problem

from .errors import error_response, error_responses, invalid_response
from .serializers import LeaseSerializer, PaymentCreateSerializer, PaymentSerializer

# Refusals about the request's values rather than the lease's or payment's state.
_BAD_VALUE_CODES = {"amount", "method", "r_code", "idempotency_key"}
IDEMPOTENCY_HEADER = "Idempotency-Key"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    pattern=f"^[!-~]{{1,{KEY_MAX_LENGTH}}}$",
    description=(
        f"1-{KEY_MAX_LENGTH} printable ASCII characters without spaces, e.g. a UUID. A retry "
        "with the same key answers what the first request answered and changes nothing."
    ),
)
REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed",
    str,
    OpenApiParameter.HEADER,
    enum=["true"],
    description="Present when the answer replays an earlier request with the same key.",
    response=[200, 201],
)


def refusal(err: ServiceError) -> Response:
    if isinstance(err, IdempotencyConflict):
        code = status.HTTP_422_UNPROCESSABLE_ENTITY
    elif err.code in _BAD_VALUE_CODES:
        code = status.HTTP_400_BAD_REQUEST
    else:
        code = status.HTTP_409_CONFLICT
    return error_response(err.code, err.message, code)


def request_key(request: Request, body_key: str | None = None) -> str | None | Response:
    """The request's idempotency key (header, or the body's), None, or a 400 Response."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return body_key or None
    problem = key_problem(header)
    if problem:
        return invalid_response({IDEMPOTENCY_HEADER: [problem]})
    if body_key and body_key != header:
        return invalid_response(
            {
                "idempotency_key": [
                    f"The {IDEMPOTENCY_HEADER} header and the body's idempotency_key differ; "
                    "send one key."
                ]
            }
        )
    return header


def answer(data: Any, code: int, *, replayed: bool) -> Response:
    response = Response(data, status=code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


@csrf_exempt  # changes nothing; a POST to a mistyped address gets the 404, not CSRF's page
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any other address under /api/ (an id that is not a number, a mistyped path): a 404 in the
    API's error shape, not the portal's HTML page."""
    return JsonResponse(
        {"code": "not_found", "detail": "no API endpoint at this address"}, status=404
    )


class ApiRoot(APIView):
    """The API's entry point: where each collection, the schema and its browsable docs are."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="api_root",
        responses={200: OpenApiResponse(description="Named links: {name: absolute URL}.")},
    )
    def get(self, request: Request) -> Response:
        def link(name: str) -> str:
            return reverse(name, request=request)

        return Response(
            {
                "leases": link("api:lease-list"),
                "payments": link("api:payment-list"),
                "postings": link("integrations:posting-list"),
                "sync_runs": link("integrations:syncrun-list"),
                "sync_now": link("integrations:sync-now"),
                "schema": link("api-schema"),
                "docs": link("api-docs"),
            }
        )


# A list's 404 is a page number past the end ("Invalid page.").
@extend_schema(tags=["leases"], responses={200: LeaseSerializer, **error_responses(401, 404)})
class LeaseList(generics.ListAPIView):
    """The leases the signed-in resident is on, with whether (and how) they may pay."""

    serializer_class = LeaseSerializer

    def get_queryset(self):
        return own_leases(self.request.user)


@extend_schema(tags=["leases"], responses={200: LeaseSerializer, **error_responses(401, 404)})
class LeaseDetail(generics.RetrieveAPIView):
    serializer_class = LeaseSerializer

    def get_queryset(self):
        return own_leases(self.request.user)


class LeasePayments(generics.ListAPIView):
    """GET: the lease's payments. POST: pay; the service checks access at this moment."""

    serializer_class = PaymentSerializer

    def get_queryset(self):
        lease = get_object_or_404(own_leases(self.request.user), pk=self.kwargs["pk"])
        return own_payments(self.request.user).filter(lease=lease)

    @extend_schema(
        operation_id="leases_payments_list",
        description="The lease's payments, newest first.",
        tags=["payments"],
        responses={200: PaymentSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="leases_payments_create",
        tags=["payments"],
        summary="Pay on a lease",
        description="Pay; the service checks the lease's payment access at this moment.",
        request=PaymentCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER, REPLAYED_HEADER],
        responses={
            201: PaymentSerializer,
            **error_responses(
                400,
                401,
                404,
                extra={
                    409: (
                        "Refused by the lease: blocked, cards_only, lease_inactive, "
                        "not_responsible (detail says why, for the resident)."
                    ),
                    422: "idempotency_key_reused: the key came with a different request.",
                },
            ),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        lease = get_object_or_404(own_leases(request.user), pk=pk)
        resident = resident_of(request.user)
        if resident is None:  # unreachable: own_leases is empty without a Resident
            return error_response("no_resident", "no resident profile", 403)
        serializer = PaymentCreateSerializer(data=request.data)
        if not serializer.is_valid():
            return invalid_response(serializer.errors)
        data = serializer.validated_data
        key = request_key(request, data.get("idempotency_key"))
        if isinstance(key, Response):
            return key
        try:
            payment = accept_payment(
                lease, data["amount"], data["method"], resident=resident, idempotency_key=key
            )
        except ServiceError as err:
            return refusal(err)
        # A retry (same key) answers as the first request did: 201 and the payment.
        return answer(
            PaymentSerializer(payment).data, status.HTTP_201_CREATED, replayed=payment.replayed
        )


@extend_schema(tags=["payments"], responses={200: PaymentSerializer, **error_responses(401, 404)})
class PaymentList(generics.ListAPIView):
    """Payments on the signed-in resident's leases (a roommate's included), newest first."""

    serializer_class = PaymentSerializer

    def get_queryset(self):
        return own_payments(self.request.user)


class PaymentDetail(APIView):
    @extend_schema(
        operation_id="payments_retrieve",
        tags=["payments"],
        responses={200: PaymentSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, public_id: str) -> Response:
        payment = get_payment_or_404(own_payments(request.user), public_id)
        return Response(PaymentSerializer(payment).data)


class PaymentVoid(APIView):
    """Void a processing payment on the property's day it was made (rule 7).

    A resident voids payments they made; staff holding ``rentplatform.void_payment`` may void
    any payment. Everyone else gets a 404 for payments that are not theirs to see.
    """

    @extend_schema(
        operation_id="payments_void",
        tags=["payments"],
        summary="Void a payment",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER, REPLAYED_HEADER],
        responses={
            200: PaymentSerializer,
            **error_responses(
                400,
                401,
                404,
                extra={
                    403: "not_payer: a roommate's payment (only its payer may void it).",
                    409: "Refused: state (not processing) or void_window (not its day).",
                    422: "idempotency_key_reused: the key came with a different request.",
                },
            ),
        },
    )
    def post(self, request: Request, public_id: str) -> Response:
        user = request.user
        if user.is_staff and user.has_perm("rentplatform.void_payment"):
            queryset = Payment.objects.select_related("batch__property", "lease")
            payment = get_payment_or_404(queryset, public_id)
        else:
            payment = get_payment_or_404(own_payments(user), public_id)
            resident = resident_of(user)
            if resident is None or payment.resident_id != resident.pk:
                return error_response(
                    "not_payer",
                    "only the resident who made this payment can void it",
                    status.HTTP_403_FORBIDDEN,
                )
        key = request_key(request)
        if isinstance(key, Response):
            return key
        try:
            reversal = void_payment(
                payment,
                note=f"voided through the API by {user.get_username()}",
                idempotency_key=key,
                requested_by=user,
            )
        except ServiceError as err:
            return refusal(err)
        payment.refresh_from_db()
        return answer(
            PaymentSerializer(payment).data, status.HTTP_200_OK, replayed=reversal.replayed
        )
