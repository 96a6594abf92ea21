"""Project URLs. The host's own pages and API, plus each installed integration's endpoints
(the project, not the host app, wires integrations in)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/integrations/", include("integrations.urls")),
    path("api/amsi/", include("integrations_amsi.urls")),
    path("api/", include("rentplatform.api.urls")),
    path("", include("rentplatform.portal.urls")),
]
