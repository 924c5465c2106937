"""Only for the OpenAPI document: the platform API and the tenant API side by side.

At run time the tenant API is routed by django-tenants under ``/t/<tenant>/``; here the
same patterns appear with a ``{tenant}`` path parameter.
"""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include(("portal.api.urls", "api"), namespace="api")),
    path(
        "t/<slug:tenant>/api/v1/", include(("portal.api.urls_tenant", "tenant-api"), namespace="tenant-api")
    ),
]
