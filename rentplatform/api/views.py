"""The resident API (DRF): own leases and payments, paying and voiding.

Errors share one shape, ``{"code": ..., "detail": ...}``: ``invalid`` (400) for a request that
fails validation (with per-field ``errors``), and the service's own code for a refusal (409 when
the lease or payment is in a state that forbids it, 400 for a bad value the service caught).
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
from rentplatform.services import ServiceError, accept_payment, void_payment

from .serializers import LeaseSerializer, PaymentCreateSerializer, PaymentSerializer

# Refusals about the request's values rather than the lease's or payment's state.
_BAD_VALUE_CODES = {"amount", "method", "r_code"}


def refusal(err: ServiceError) -> Response:
    code = status.HTTP_400_BAD_REQUEST if err.code in _BAD_VALUE_CODES else status.HTTP_409_CONFLICT
    return Response({"code": err.code, "detail": err.message}, status=code)


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
        key = data.get("idempotency_key") or None
        # Only chooses 200 vs 201 for a retried request; the service itself is idempotent.
        replay = bool(key) and Payment.objects.filter(idempotency_key=key, lease=lease).exists()
        try:
            payment = accept_payment(
                lease, data["amount"], data["method"], resident=resident, idempotency_key=key
            )
        except ServiceError as err:
            return refusal(err)
        return Response(
            PaymentSerializer(payment).data,
            status=status.HTTP_200_OK if replay else status.HTTP_201_CREATED,
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
        try:
            void_payment(payment, note=f"voided through the API by {user.get_username()}")
        except ServiceError as err:
            return refusal(err)
        payment.refresh_from_db()
        return Response(PaymentSerializer(payment).data)
