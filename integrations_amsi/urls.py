"""The AMSI provider's API endpoints (lease link by ResiID), mounted under /api/amsi/."""

from __future__ import annotations

from django.urls import path

from . import api

app_name = "integrations_amsi"
urlpatterns = [
    path("leases/<int:lease_id>/link/", api.LeaseLink.as_view(), name="lease-link"),
]
