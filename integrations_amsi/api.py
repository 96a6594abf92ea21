"""API: link a lease to its AMSI lease by ResiID (same rules as the admin form)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api import run_summary, staff_with
from rentplatform.models import Lease

from .linking import LinkRefused, link_lease


class LinkSerializer(serializers.Serializer):
    resi_id = serializers.CharField(max_length=80)


class LeaseLink(APIView):
    """POST {"resi_id": "21"}: verify with AMSI for the lease's unit, link, sync the lease.

    201 with the link and the lease sync's summary; 400 with a message a person can act on
    (composite for another unit, unknown ResiID, already linked, AMSI unreachable).
    """

    permission_classes = [staff_with("integrations.run_import")]

    def post(self, request: Request, lease_id: int) -> Response:
        lease = get_object_or_404(Lease, pk=lease_id)
        body = LinkSerializer(data=request.data)
        if not body.is_valid():
            return Response(
                {
                    "code": "invalid",
                    "detail": "resi_id: enter the AMSI ResiID",
                    "errors": body.errors,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            result = link_lease(
                lease,
                body.validated_data["resi_id"],
                triggered_by=f"api link:{request.user.get_username()}",
            )
        except LinkRefused as err:
            return Response(
                {"code": "link_refused", "detail": err.message}, status=status.HTTP_400_BAD_REQUEST
            )
        link = result.link
        return Response(
            {
                "lease": lease.pk,
                "composite": link.composite,
                "resi_id": link.resi_id,
                "note": result.note,
                "detail": result.message,
                "sync": run_summary(result.run) if result.run else None,
            },
            status=status.HTTP_201_CREATED,
        )
