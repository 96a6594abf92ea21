"""Project URLs. The host's own pages and API, plus each installed integration's endpoints
(the project, not the host app, wires integrations in). The OpenAPI schema describes all of
/api/ (drf-spectacular); its UI's assets are served locally (drf-spectacular-sidecar), so the
docs page works on a machine without internet access."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/integrations/", include("integrations.urls")),
    path("api/amsi/", include("integrations_amsi.urls")),
    path("api/", include("rentplatform.api.urls")),
    path("", include("rentplatform.portal.urls")),
]
