from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tenants.api.views import (
    InvitationViewSet,
    MembershipViewSet,
    TenantAuditViewSet,
    TenantMeViewSet,
    TokenViewSet,
)

router = SimpleRouter()
router.register("members", MembershipViewSet, basename="member")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("tokens", TokenViewSet, basename="token")
router.register("audit", TenantAuditViewSet, basename="audit")

urlpatterns = [
    path("me/", TenantMeViewSet.as_view({"get": "list"}), name="tenant-me"),
    path("", include(router.urls)),
]
