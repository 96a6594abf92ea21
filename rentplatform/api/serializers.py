"""Serializers for the resident API.

Input is validated strictly and before any service call, so a bad request writes nothing:
amounts follow ``rentplatform.money.parse_amount`` (decimal strings, or whole numbers, in plain
ASCII digits with at most two places); JSON floats are refused because they have already lost
the cents the client meant to send.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from rentplatform.models import AccessSource, Lease, Payment, PaymentAccess, PaymentMethod
from rentplatform.money import MAX_PAYMENT, MoneyError, parse_amount
from rentplatform.portal.queries import lease_facts
from rentplatform.services.idempotency import KEY_MAX_LENGTH, validate_key


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": r"^[0-9]*\.?[0-9]{0,2}$", "example": "125.00"},
            {"type": "integer", "minimum": 1, "maximum": 99999},
        ],
        "description": f"Dollars and cents, greater than zero, at most {MAX_PAYMENT}; "
        'a decimal string such as "125.00" (or a whole number), never a float.',
    }
)
class MoneyStringField(serializers.Field):
    """A positive amount given as "125.00" (or a JSON integer), never a float.

    The rules and their words are ``rentplatform.money.parse_amount``'s, the same as the portal's
    and the processor command's.
    """

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            return parse_amount(data)
        except MoneyError as err:
            raise serializers.ValidationError(str(err)) from None

    def to_representation(self, value: Decimal) -> str:
        return str(value)


class PaymentCreateSerializer(serializers.Serializer):
    amount = MoneyStringField()
    method = serializers.ChoiceField(
        choices=PaymentMethod.choices,
        error_messages={"invalid_choice": '"{input}" is not a payment method; use "card" or "ach"'},
    )
    # Also taken as the Idempotency-Key header (the view checks that the two agree).
    idempotency_key = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=False,
        max_length=KEY_MAX_LENGTH,
        validators=[validate_key],
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: ["unknown field; expected amount, method, idempotency_key"]
                    for name in unknown
                }
            )
        return attrs


class PaymentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(
        source="public_id",
        read_only=True,
        help_text="The payment's id: 32 hex digits. Every endpoint also takes its reference.",
    )
    reference = serializers.CharField(
        source="short_id",
        read_only=True,
        help_text="The short form people see (the portal, the admin, emails, eSite's "
        "Description): the id's first 10 hex digits.",
    )
    lease = serializers.IntegerField(source="lease_id", read_only=True)
    amount = serializers.CharField(read_only=True, help_text='Two places, e.g. "125.00".')
    batch_id = serializers.CharField(source="batch.batch_id", read_only=True)
    return_code = serializers.CharField(read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "reference",
            "lease",
            "amount",
            "method",
            "state",
            "batch_id",
            "business_day",
            "accepted_at",
            "return_code",
        ]
        read_only_fields = fields


class UnitRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    building = serializers.CharField(help_text="The building's code.")


class PropertyRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    time_zone = serializers.CharField()


class PaymentAccessSerializer(serializers.Serializer):
    access = serializers.ChoiceField(choices=PaymentAccess.choices)
    reason = serializers.CharField(allow_blank=True)
    source = serializers.ChoiceField(choices=AccessSource.choices, allow_blank=True)
    since = serializers.DateTimeField(allow_null=True)


class LeaseSerializer(serializers.ModelSerializer):
    """A lease from ``own_leases`` (which annotates whether the user may pay)."""

    unit = serializers.SerializerMethodField()
    property = serializers.SerializerMethodField()
    balance = serializers.SerializerMethodField()
    payment_access = serializers.SerializerMethodField()
    can_pay_card = serializers.SerializerMethodField()
    can_pay_ach = serializers.SerializerMethodField()

    class Meta:
        model = Lease
        fields = [
            "id",
            "unit",
            "property",
            "status",
            "balance",
            "payment_access",
            "can_pay_card",
            "can_pay_ach",
        ]
        read_only_fields = fields

    @extend_schema_field(UnitRefSerializer)
    def get_unit(self, lease: Lease) -> dict[str, Any]:
        unit = lease.unit
        return {"id": unit.pk, "code": unit.code, "building": unit.building.code}

    @extend_schema_field(PropertyRefSerializer)
    def get_property(self, lease: Lease) -> dict[str, Any]:
        prop = lease.property
        return {"id": prop.pk, "code": prop.code, "name": prop.name, "time_zone": prop.time_zone}

    @extend_schema_field(serializers.CharField(allow_null=True, help_text='e.g. "1250.00"'))
    def get_balance(self, lease: Lease) -> str | None:
        return None if lease.balance is None else str(lease.balance)

    @extend_schema_field(PaymentAccessSerializer)
    def get_payment_access(self, lease: Lease) -> dict[str, Any]:
        access = lease.effective_access
        return {
            "access": access.access,
            "reason": access.reason,
            "source": access.source,
            "since": access.since.isoformat() if access.since else None,
        }

    def get_can_pay_card(self, lease: Lease) -> bool:
        return lease_facts(lease).can_pay_card

    def get_can_pay_ach(self, lease: Lease) -> bool:
        return lease_facts(lease).can_pay_ach
