"""factory-boy factories for the host platform's models.

Factories build plain rows only; anything that changes payment state goes through
``rentplatform.services`` in the tests themselves, as it does in the product.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from factory.django import DjangoModelFactory

from rentplatform.models import (
    Building,
    Lease,
    LeaseResident,
    LeaseStatus,
    Property,
    Resident,
    Unit,
)

PASSWORD = "correct-horse-battery"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.django.Password(PASSWORD)


class PropertyFactory(DjangoModelFactory):
    class Meta:
        model = Property

    code = factory.Sequence(lambda n: f"prop{n}")
    name = factory.Sequence(lambda n: f"Maple Court {n}")
    time_zone = "America/Chicago"
    manager_emails = "manager@example.test, office@example.test"


class BuildingFactory(DjangoModelFactory):
    class Meta:
        model = Building

    property = factory.SubFactory(PropertyFactory)
    code = factory.Sequence(lambda n: f"B{n}")
    name = factory.LazyAttribute(lambda o: f"Building {o.code}")


class UnitFactory(DjangoModelFactory):
    class Meta:
        model = Unit

    building = factory.SubFactory(BuildingFactory)
    code = factory.Sequence(lambda n: f"{100 + n}")
    unit_type = "2BR"


class ResidentFactory(DjangoModelFactory):
    class Meta:
        model = Resident

    user = factory.SubFactory(UserFactory)
    first_name = factory.Sequence(lambda n: f"Alex{n}")
    last_name = "Resident"
    email = factory.LazyAttribute(lambda o: f"{o.first_name.lower()}@example.test")


class LeaseFactory(DjangoModelFactory):
    class Meta:
        model = Lease

    unit = factory.SubFactory(UnitFactory)
    status = LeaseStatus.ACTIVE
    balance = Decimal("1250.00")


class LeaseResidentFactory(DjangoModelFactory):
    class Meta:
        model = LeaseResident

    lease = factory.SubFactory(LeaseFactory)
    resident = factory.SubFactory(ResidentFactory)
    responsible = True


def lease_with_resident(
    *, resident: Resident | None = None, responsible: bool = True, **lease_kwargs: Any
) -> tuple[Lease, Resident]:
    """A lease with one resident who has a portal login (the common test setup)."""
    lease = LeaseFactory(**lease_kwargs)
    resident = resident or ResidentFactory()
    LeaseResidentFactory(lease=lease, resident=resident, responsible=responsible)
    return lease, resident


def grant(user: Any, *perms: str) -> Any:
    """Give ``user`` permissions like "rentplatform.void_payment"; returns a fresh instance
    (Django caches permissions on the user object)."""
    for perm in perms:
        app_label, codename = perm.split(".", 1)
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)


def staff_user(*perms: str, **kwargs: Any) -> Any:
    """A staff user (admin login) holding exactly ``perms``."""
    return grant(UserFactory(is_staff=True, **kwargs), *perms)
