"""The resident API (DRF): own leases and payments, paying and voiding.

Errors share one shape, ``{"code": ..., "detail": ...}``: ``invalid`` (400) for a request that
fails validation (with per-field ``errors``), and the service's own code for a refusal (409 when
the lease or payment is in a state that forbids it, 400 for a bad value the service caught, 422
``idempotency_key_reused`` for a key sent again with a different request).

Paying and voiding take an ``Idempotency-Key`` header (paying also the body's
``idempotency_key``): a retry with the same key answers what the first request answered (the same
payment, status code and body shape, plus ``Idempotent-Replayed: true``) and changes nothing.
Keys are the resident's (voids: the user's) own; another user's key is just a new key.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
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
from rentplatform.services.idempotency import key_problem

from .serializers import LeaseSerializer, PaymentCreateSerializer, PaymentSerializer

# Refusals about the request's values rather than the lease's or payment's state.
_BAD_VALUE_CODES = {"amount", "method", "r_code", "idempotency_key"}
IDEMPOTENCY_HEADER = "Idempotency-Key"


def refusal(err: ServiceError) -> Response:
    if isinstance(err, IdempotencyConflict):
        code = status.HTTP_422_UNPROCESSABLE_ENTITY
    elif err.code in _BAD_VALUE_CODES:
        code = status.HTTP_400_BAD_REQUEST
    else:
        code = status.HTTP_409_CONFLICT
    return Response({"code": err.code, "detail": err.message}, status=code)


def request_key(request: Request, body_key: str | None = None) -> str | None | Response:
    """The request's idempotency key (header, or the body's), None, or a 400 Response."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return body_key or None
    problem = key_problem(header)
    if problem:
        return invalid({IDEMPOTENCY_HEADER: [problem]})
    if body_key and body_key != header:
        return invalid(
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


def invalid(errors: Any) -> Response:
    """400 with a one-line summary a person can read, and the per-field errors."""
    parts = []
    if isinstance(errors, dict):
        for field, messages in errors.items():
            text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else messages
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    else:
        parts.append(str(errors))
    return Response(
        {"code": "invalid", "detail": " ".join(parts), "errors": errors},
        status=status.HTTP_400_BAD_REQUEST,
    )


class LeaseList(generics.ListAPIView):
    serializer_class = LeaseSerializer

    def get_queryset(self):
        return own_leases(self.request.user)


class LeaseDetail(generics.RetrieveAPIView):
    serializer_class = LeaseSerializer

    def get_queryset(self):
        return own_leases(self.request.user)


class LeasePayments(APIView):
    """GET: the lease's payments. POST: pay; the service checks access at this moment."""

    def get(self, request: Request, pk: int) -> Response:
        lease = get_object_or_404(own_leases(request.user), pk=pk)
        payments = own_payments(request.user).filter(lease=lease)
        return Response(PaymentSerializer(payments, many=True).data)

    def post(self, request: Request, pk: int) -> Response:
        lease = get_object_or_404(own_leases(request.user), pk=pk)
        resident = resident_of(request.user)
        if resident is None:  # unreachable: own_leases is empty without a Resident
            return Response({"code": "no_resident", "detail": "no resident profile"}, status=403)
        serializer = PaymentCreateSerializer(data=request.data)
        if not serializer.is_valid():
            return invalid(serializer.errors)
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


class PaymentList(generics.ListAPIView):
    serializer_class = PaymentSerializer

    def get_queryset(self):
        return own_payments(self.request.user)


class PaymentDetail(APIView):
    def get(self, request: Request, public_id: str) -> Response:
        payment = get_payment_or_404(own_payments(request.user), public_id)
        return Response(PaymentSerializer(payment).data)


class PaymentVoid(APIView):
    """Void a processing payment on the property's day it was made (rule 7).

    A resident voids payments they made; staff holding ``rentplatform.void_payment`` may void
    any payment. Everyone else gets a 404 for payments that are not theirs to see.
    """

    def post(self, request: Request, public_id: str) -> Response:
        user = request.user
        if user.is_staff and user.has_perm("rentplatform.void_payment"):
            queryset = Payment.objects.select_related("batch__property", "lease")
            payment = get_payment_or_404(queryset, public_id)
        else:
            payment = get_payment_or_404(own_payments(user), public_id)
            resident = resident_of(user)
            if resident is None or payment.resident_id != resident.pk:
                return Response(
                    {
                        "code": "not_payer",
                        "detail": "only the resident who made this payment can void it",
                    },
                    status=status.HTTP_403_FORBIDDEN,
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
