from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tenants.api.views import MeView, PlatformAuditViewSet, PlatformTenantViewSet

router = SimpleRouter()
router.register("tenants", PlatformTenantViewSet, basename="tenant")
router.register("audit", PlatformAuditViewSet, basename="audit")

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("", include(router.urls)),
]
