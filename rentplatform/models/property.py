"""Properties, buildings, units and residents: the host platform's real-estate tree."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{value!r} is not a known time zone (e.g. America/Chicago)"
        ) from None


def validate_email_list(value: str) -> None:
    for email in split_emails(value):
        validate_email(email)


def split_emails(value: str) -> list[str]:
    return [e.strip() for e in value.replace(";", ",").replace("\n", ",").split(",") if e.strip()]


class Property(models.Model):
    code = models.SlugField(max_length=40, unique=True, help_text="Short code used in commands.")
    name = models.CharField(max_length=200)
    time_zone = models.CharField(
        max_length=64, default="America/New_York", validators=[validate_time_zone]
    )
    manager_emails = models.TextField(
        blank=True,
        validators=[validate_email_list],
        help_text="Who receives batch deposit reports and is named when a lease is blocked; "
        "comma separated.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "properties"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def manager_email_list(self) -> list[str]:
        return split_emails(self.manager_emails)

    def local_day(self, when: dt.datetime | None = None) -> dt.date:
        """The property's business day for an aware moment (now by default)."""
        when = when or timezone.now()
        if timezone.is_naive(when):
            raise ValueError("local_day() needs an aware datetime")
        return when.astimezone(self.tz).date()


class Building(models.Model):
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="buildings")
    code = models.CharField(max_length=20)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["property", "code"]
        constraints = [
            models.UniqueConstraint(fields=["property", "code"], name="building_code_per_property")
        ]

    def __str__(self) -> str:
        return f"{self.property.code}/{self.code}"


class Unit(models.Model):
    building = models.ForeignKey(Building, on_delete=models.CASCADE, related_name="units")
    code = models.CharField(max_length=20)
    unit_type = models.CharField(max_length=40, blank=True)
    address = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["building", "code"]
        constraints = [
            models.UniqueConstraint(fields=["building", "code"], name="unit_code_per_building")
        ]

    def __str__(self) -> str:
        return f"{self.building}/{self.code}"

    @property
    def property(self) -> Property:
        return self.building.property


class Resident(models.Model):
    """A person on a lease. ``user`` is set once they have a portal login."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resident",
    )
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["last_name", "first_name"]

    def __str__(self) -> str:
        return self.full_name or f"resident #{self.pk}"

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)
