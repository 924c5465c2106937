from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tenants.api.views import MembershipViewSet, QuotaViewSet, TenantMeViewSet, TokenViewSet

router = SimpleRouter()
router.register("members", MembershipViewSet, basename="member")
router.register("tokens", TokenViewSet, basename="token")

urlpatterns = [
    path("me/", TenantMeViewSet.as_view({"get": "list"}), name="tenant-me"),
    path("quota/", QuotaViewSet.as_view({"get": "list"}), name="tenant-quota"),
    path("", include(router.urls)),
    path("", include("metrics.api.urls")),
    path("", include("functions.api.urls")),
]
