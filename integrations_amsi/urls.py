"""Mounted under /api/amsi/: the older lease-link URL, kept as an alias of the framework's.

``POST /api/amsi/leases/<id>/link/ {"resi_id": "21"}`` is
``POST /api/integrations/leases/<id>/link/ {"remote_id": "21"}`` (integrations.api.LeaseLink)
with the body's key named as before; clients written for it keep working.
"""

from __future__ import annotations

from django.urls import path

from integrations.api import LeaseLink

app_name = "integrations_amsi"
urlpatterns = [
    path(
        "leases/<int:lease_id>/link/",
        LeaseLink.as_view(field="resi_id"),
        name="lease-link",
    ),
]
