"""The framework's API endpoints (sync now, link a lease), mounted under /api/integrations/."""

from __future__ import annotations

from django.urls import path

from . import api

app_name = "integrations"
urlpatterns = [
    path("sync/", api.SyncNow.as_view(), name="sync-now"),
    path("leases/<int:lease_id>/link/", api.LeaseLink.as_view(), name="lease-link"),
]
