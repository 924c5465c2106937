"""The tenant API under ``/t/<tenant>/api/v1/``: each app's routes, wired here at the top."""

from django.urls import include, path

from functions.api.views import QuotaViewSet

urlpatterns = [
    path("", include("tenants.api.urls")),
    path("quota/", QuotaViewSet.as_view({"get": "list"}), name="tenant-quota"),
    path("", include("metrics.api.urls")),
    path("", include("functions.api.urls")),
    path("", include("releases.api.urls")),
]
