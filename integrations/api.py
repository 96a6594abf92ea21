"""The framework's API: "sync now" for a property or one lease, linking a lease by hand, and
reading postings and sync runs.

Staff only, and only with the permission the admin needs (``integrations.run_sync``,
``integrations.run_import`` to link, ``view_posting`` / ``view_syncrun`` to read): a refused
request writes nothing (no SyncRun row). A sync's reply is the SyncRun's summary, the same counts
the admin and the command show. Errors have the host API's one shape
(``rentplatform.api.errors``: ``{"code", "detail", "fields"?}``); lists are paginated.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import linking
from integrations.models import (
    Connection,
    Posting,
    PostingKind,
    PostingState,
    SyncKind,
    SyncRun,
    SyncStatus,
)
from integrations.services import run_sync
from rentplatform.api.errors import error_response, error_responses, invalid_response
from rentplatform.models import Lease
from rentplatform.models.payment import reference_q


def staff_with(perm: str) -> type[BasePermission]:
    """A DRF permission class: an active staff user holding ``perm`` (e.g. "app.codename")."""

    class StaffWithPermission(BasePermission):
        message = f"staff only, with the permission {perm}"

        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.is_staff and user.has_perm(perm))

    StaffWithPermission.__name__ = f"StaffWith_{perm.replace('.', '_')}"
    return StaffWithPermission


class SyncCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    deactivated = serializers.IntegerField()
    errors = serializers.IntegerField()


class RecordErrorSerializer(serializers.Serializer):
    record = serializers.CharField()
    message = serializers.CharField()


class SyncRunSerializer(serializers.ModelSerializer):
    """A sync run's summary: the same counts the admin and the sync command show."""

    property = serializers.CharField(source="connection.property.code")
    counts = SyncCountsSerializer(source="*")
    errors = serializers.SerializerMethodField(help_text="The first 100 record errors.")
    summary = serializers.CharField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "property",
            "kind",
            "status",
            "dry_run",
            "counts",
            "errors",
            "message",
            "summary",
            "started_at",
            "finished_at",
            "triggered_by",
        ]
        read_only_fields = fields

    @extend_schema_field(RecordErrorSerializer(many=True))
    def get_errors(self, run: SyncRun) -> list[dict[str, str]]:
        return run.error_list[:100]


def run_summary(run: SyncRun) -> dict[str, Any]:
    return SyncRunSerializer(run).data


class PostingSerializer(serializers.ModelSerializer):
    """A posting: one write of a payment (or of its void, refund or return) to the accounting
    system, and where it stands."""

    payment = serializers.CharField(source="payment.public_id", help_text="The payment's id.")
    reversal = serializers.CharField(
        source="reversal.public_id", allow_null=True, help_text="Set on a reversal posting."
    )
    property = serializers.CharField(source="connection.property.code")
    provider = serializers.CharField(source="connection.provider")

    class Meta:
        model = Posting
        fields = [
            "id",
            "kind",
            "state",
            "payment",
            "reversal",
            "property",
            "provider",
            "attempts",
            "outcome_unknown",
            "error_code",
            "last_error",
            "remote_reference",
            "created_at",
            "posted_at",
            "next_attempt_at",
        ]
        read_only_fields = fields


class PostingFilterSerializer(serializers.Serializer):
    """The posting list's query parameters (each optional; given ones must all match)."""

    state = serializers.ChoiceField(choices=PostingState.choices, required=False)
    kind = serializers.ChoiceField(choices=PostingKind.choices, required=False)
    payment = serializers.RegexField(
        r"^[0-9a-fA-F]{10,32}$",
        required=False,
        help_text="A payment's id (32 hex digits) or its reference (the first 10).",
    )
    property = serializers.CharField(required=False, max_length=40, help_text="A property code.")


class SyncRunFilterSerializer(serializers.Serializer):
    property = serializers.CharField(required=False, max_length=40, help_text="A property code.")
    status = serializers.ChoiceField(choices=SyncStatus.choices, required=False)


def _filters(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The valid query parameters, or a ValidationError (400 ``invalid`` naming them)."""
    query = request.query_params
    params = serializer_class(data={k: query[k] for k in serializer_class().fields if k in query})
    if not params.is_valid():
        raise ValidationError(params.errors)
    return params.validated_data


@extend_schema(
    tags=["integrations"],
    parameters=[PostingFilterSerializer],
    responses={200: PostingSerializer(many=True), **error_responses(400, 401, 403, 404)},
)
class PostingList(generics.ListAPIView):
    """Postings, newest first: filter by state (e.g. needs_attention), kind, payment, property."""

    permission_classes = [staff_with("integrations.view_posting")]
    serializer_class = PostingSerializer

    def get_queryset(self):
        found = _filters(PostingFilterSerializer, self.request)
        postings = Posting.objects.select_related("connection__property", "payment", "reversal")
        if "state" in found:
            postings = postings.filter(state=found["state"])
        if "kind" in found:
            postings = postings.filter(kind=found["kind"])
        if "payment" in found:
            postings = postings.filter(reference_q(found["payment"], "payment__reference"))
        if "property" in found:
            postings = postings.filter(connection__property__code=found["property"])
        return postings


@extend_schema(
    tags=["integrations"],
    parameters=[SyncRunFilterSerializer],
    responses={200: SyncRunSerializer(many=True), **error_responses(400, 401, 403, 404)},
)
class SyncRunList(generics.ListAPIView):
    """Sync runs, newest first (imports, deltas, lease syncs), with their counts and errors."""

    permission_classes = [staff_with("integrations.view_syncrun")]
    serializer_class = SyncRunSerializer

    def get_queryset(self):
        found = _filters(SyncRunFilterSerializer, self.request)
        runs = SyncRun.objects.select_related("connection__property")
        if "property" in found:
            runs = runs.filter(connection__property__code=found["property"])
        if "status" in found:
            runs = runs.filter(status=found["status"])
        return runs


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


class LinkResultSerializer(serializers.Serializer):
    lease = serializers.IntegerField()
    remote_id = serializers.CharField()
    note = serializers.CharField(allow_blank=True)
    detail = serializers.CharField()
    sync = SyncRunSerializer(allow_null=True, help_text="The lease sync that followed the link.")


class SyncNow(APIView):
    """POST {"property": CODE} or {"lease": ID} (+ "full": true): run the sync, reply its summary.

    200 when the run finished (succeeded, or partial with record errors), 502 when it failed
    (AMSI unreachable, refused, malformed reply: see "message"), 404 for an unknown property or
    lease or one without an enabled connection, 400 for a bad body.
    """

    permission_classes = [staff_with("integrations.run_sync")]

    @extend_schema(
        operation_id="integrations_sync_now",
        tags=["integrations"],
        request=SyncRequestSerializer,
        responses={
            200: SyncRunSerializer,
            502: SyncRunSerializer,
            **error_responses(400, 401, 403, 404),
        },
    )
    def post(self, request: Request) -> Response:
        body = SyncRequestSerializer(data=request.data)
        if not body.is_valid():
            return invalid_response(body.errors)
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

    def get_serializer(self, *args: Any, **kwargs: Any) -> serializers.Serializer:
        # Also how drf-spectacular finds the request body, named after this mount's field.
        return _link_serializer(self.field)(*args, **kwargs)

    @extend_schema(
        tags=["integrations"],
        responses={
            201: LinkResultSerializer,
            **error_responses(
                401,
                403,
                404,
                extra={400: "invalid (a bad body) or link_refused (detail says why)."},
            ),
        },
    )
    def post(self, request: Request, lease_id: int) -> Response:
        lease = get_object_or_404(Lease, pk=lease_id)
        body = self.get_serializer(data=request.data)
        if not body.is_valid():
            try:
                label = linking.connection_for(lease).get_provider().link_label
            except linking.LinkRefused:
                label = "lease id in the accounting system"
            return invalid_response(body.errors, detail=f"{self.field}: enter the {label}")
        try:
            result = linking.link_lease(
                lease,
                body.validated_data[self.field],
                triggered_by=f"api link:{request.user.get_username()}",
            )
        except linking.LinkRefused as err:
            return error_response("link_refused", err.message, status.HTTP_400_BAD_REQUEST)
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


@cache
def _link_serializer(field: str) -> type[serializers.Serializer]:
    """A serializer whose one field is named ``field`` (so errors name the key that was sent);
    one class per name, so the schema has one component each (RemoteIdLink, ResiIdLink)."""
    name = "".join(part.title() for part in field.split("_")) + "LinkSerializer"
    return type(name, (serializers.Serializer,), {field: serializers.CharField(max_length=80)})


def _not_found(detail: str) -> Response:
    return error_response("not_found", detail, status.HTTP_404_NOT_FOUND)
