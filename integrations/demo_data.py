"""Demo data for the fake-provider demo: one property, a few leases, residents with logins."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from rentplatform.models import Building, Lease, LeaseResident, Property, Resident, Unit
from rentplatform.services import block_lease, set_accounting_access

DEMO_PASSWORD = "demo-resident-pass"

RESIDENTS = [
    ("101", "Ana", "Lopez", "allowed"),
    ("102", "Ben", "Okafor", "allowed"),
    ("103", "Chloe", "Nguyen", "allowed"),
    ("104", "Dev", "Patel", "blocked"),
    ("105", "Erin", "Walsh", "cards_only"),
    ("106", "Farid", "Haddad", "allowed"),
]


def load_demo_property(code: str = "maple") -> Property:
    prop, _ = Property.objects.get_or_create(
        code=code,
        defaults={
            "name": "Maple Court",
            "time_zone": "America/Chicago",
            "manager_emails": "manager@maplecourt.example",
        },
    )
    building, _ = Building.objects.get_or_create(property=prop, code="01", defaults={"name": "A"})
    User = get_user_model()
    for unit_code, first, last, access in RESIDENTS:
        unit, _ = Unit.objects.get_or_create(building=building, code=unit_code)
        username = first.lower()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username, f"{username}@example.test", DEMO_PASSWORD)
        resident, _ = Resident.objects.get_or_create(
            user=user, defaults={"first_name": first, "last_name": last, "email": user.email}
        )
        lease = Lease.objects.filter(unit=unit).first() or Lease.objects.create(unit=unit)
        LeaseResident.objects.get_or_create(lease=lease, resident=resident)
        if access == "blocked":
            block_lease(lease, "Eviction in progress")
        elif access == "cards_only":
            set_accounting_access(lease, "cards_only", "No Checks (returned payments)")
    return prop
