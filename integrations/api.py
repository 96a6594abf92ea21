"""The framework's API: "sync now" for a property or one lease, and linking a lease by hand.

Staff only, and only with the permission the admin action needs (``integrations.run_sync``,
``integrations.run_import`` to link): a refused request writes nothing (no SyncRun row). A sync's
reply is the SyncRun's summary, the same counts the admin and the command show.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import linking
from integrations.models import Connection, SyncKind, SyncRun, SyncStatus
from integrations.services import run_sync
from rentplatform.models import Lease


def staff_with(perm: str) -> type[BasePermission]:
    """A DRF permission class: an active staff user holding ``perm`` (e.g. "app.codename")."""

    class StaffWithPermission(BasePermission):
        message = f"staff only, with the permission {perm}"

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.is_staff and user.has_perm(perm))

    StaffWithPermission.__name__ = f"StaffWith_{perm.replace('.', '_')}"
    return StaffWithPermission


def run_summary(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        "dry_run": run.dry_run,
        "counts": {
            "created": run.created,
            "updated": run.updated,
            "unchanged": run.unchanged,
            "deactivated": run.deactivated,
            "errors": run.errors,
        },
        "errors": run.error_list[:100],
        "message": run.message,
        "summary": run.summary(),
    }


class SyncRequestSerializer(serializers.Serializer):
    property = serializers.CharField(required=False, max_length=40)
    lease = serializers.IntegerField(required=False, min_value=1)
    full = serializers.BooleanField(required=False, default=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("property" in data) == ("lease" in data):
            raise serializers.ValidationError('give either "property" (a code) or "lease" (an id)')
        if data.get("full") and "lease" in data:
            raise serializers.ValidationError('"full" applies to a property, not a lease')
        return data


class SyncNow(APIView):
    """POST {"property": CODE} or {"lease": ID} (+ "full": true): run the sync, reply its summary.

    200 when the run finished (succeeded, or partial with record errors), 502 when it failed
    (AMSI unreachable, refused, malformed reply: see "message"), 404 for an unknown property or
    lease or one without an enabled connection, 400 for a bad body.
    """

    permission_classes = [staff_with("integrations.run_sync")]

    def post(self, request: Request) -> Response:
        body = SyncRequestSerializer(data=request.data)
        if not body.is_valid():
            return Response(
                {"code": "invalid", "detail": _flatten(body.errors), "errors": body.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        data = body.validated_data
        lease_id = data.get("lease")
        connections = Connection.objects.filter(enabled=True).select_related("property")
        if lease_id is not None:
            lease = (
                Lease.objects.select_related("unit__building__property").filter(pk=lease_id).first()
            )
            if lease is None:
                return _not_found(f"lease {lease_id} does not exist")
            connection = connections.filter(property=lease.property).first()
            kind = SyncKind.LEASE
            what = f"lease {lease_id}'s property {lease.property.code}"
        else:
            connection = connections.filter(property__code=data["property"]).first()
            kind = SyncKind.FULL if data["full"] else SyncKind.DELTA
            what = f"property {data['property']!r}"
        if connection is None:
            return _not_found(f"no enabled accounting connection for {what}")
        run = run_sync(
            connection, kind, lease_id=lease_id, triggered_by=f"api:{request.user.get_username()}"
        )
        code = (
            status.HTTP_502_BAD_GATEWAY if run.status == SyncStatus.FAILED else status.HTTP_200_OK
        )
        return Response(run_summary(run), status=code)


class LeaseLink(APIView):
    """POST {"remote_id": "21"}: verify the id with the lease's accounting system, link the
    lease to that remote lease, sync the lease (``integrations.linking``; the admin's rules).

    201 with the link and the lease sync's summary; 400 with a message a person can act on (an
    id of another unit's lease, unknown to the remote, already linked, remote unreachable, a
    provider that does not link by hand). ``field`` names the body's key: the AMSI provider
    mounts this view at /api/amsi/leases/<id>/link/ with ``field="resi_id"`` (the older URL).
    """

    permission_classes = [staff_with("integrations.run_import")]
    field = "remote_id"

    def post(self, request: Request, lease_id: int) -> Response:
        lease = get_object_or_404(Lease, pk=lease_id)
        body = _link_serializer(self.field)(data=request.data)
        if not body.is_valid():
            try:
                label = linking.connection_for(lease).get_provider().link_label
            except linking.LinkRefused:
                label = "lease id in the accounting system"
            return Response(
                {
                    "code": "invalid",
                    "detail": f"{self.field}: enter the {label}",
                    "errors": body.errors,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            result = linking.link_lease(
                lease,
                body.validated_data[self.field],
                triggered_by=f"api link:{request.user.get_username()}",
            )
        except linking.LinkRefused as err:
            return Response(
                {"code": "link_refused", "detail": err.message}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(
            {
                "lease": lease.pk,
                "remote_id": result.remote_id,
                "note": result.note,
                "detail": result.message,
                "sync": run_summary(result.run) if result.run else None,
            },
            status=status.HTTP_201_CREATED,
        )


def _link_serializer(field: str) -> type[serializers.Serializer]:
    """A serializer whose one field is named ``field`` (so errors name the key that was sent)."""
    return type(
        "LinkSerializer", (serializers.Serializer,), {field: serializers.CharField(max_length=80)}
    )


def _not_found(detail: str) -> Response:
    return Response({"code": "not_found", "detail": detail}, status=status.HTTP_404_NOT_FOUND)


def _flatten(errors: Any) -> str:
    if isinstance(errors, dict):
        return " ".join(
            f"{'' if k == 'non_field_errors' else k + ': '}{'; '.join(map(str, v))}"
            for k, v in errors.items()
        )
    return str(errors)
