"""URLs outside any tenant: login, platform admin, health, the platform API and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from functions import views_internal
from portal import views
from tenants import views as tenant_views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("account/password/", views.password_change, name="password_change"),
    path("platform/tenants/", tenant_views.platform_tenants, name="platform-tenants"),
    path("platform/tenants/<slug:slug>/", tenant_views.platform_tenant, name="platform-tenant"),
    path("platform/audit/", tenant_views.platform_audit, name="platform-audit"),
    path("invitations/<str:secret>/", tenant_views.invitation, name="invitation"),
    path(
        "internal/packages/<str:schema>/<int:build_id>/<str:sha256>.zip",
        views_internal.package_archive,
        name="internal-package",
    ),
    path("api/v1/", include(("portal.api.urls", "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script from its own URL (?script): the Content-Security-Policy
    # (portal/settings.py) refuses the inline one of SpectacularSwaggerView. No Redoc beside it:
    # it needs inline styles, blob: workers and an image from Redocly's CDN.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.forbidden"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
