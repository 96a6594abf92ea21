"""The framework's API endpoints (sync now, link a lease, postings, sync runs), mounted under
/api/integrations/."""

from __future__ import annotations

from django.urls import path

from . import api

app_name = "integrations"
urlpatterns = [
    path("sync/", api.SyncNow.as_view(), name="sync-now"),
    path("sync-runs/", api.SyncRunList.as_view(), name="syncrun-list"),
    path("postings/", api.PostingList.as_view(), name="posting-list"),
    path("leases/<int:lease_id>/link/", api.LeaseLink.as_view(), name="lease-link"),
]
