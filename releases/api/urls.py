from django.urls import include, path
from rest_framework.routers import SimpleRouter

from releases.api import views

nested = SimpleRouter()
nested.register("rollouts", views.RolloutViewSet, basename="rollout")
nested.register("replays", views.ReplayViewSet, basename="replay")

F = "functions/<slug:function_name>/"
settings = views.CaptureSettingsViewSet.as_view({"get": "retrieve", "put": "update"})
captures = views.CaptureViewSet.as_view({"get": "list", "delete": "purge"})
capture = views.CaptureViewSet.as_view({"delete": "destroy"})
urlpatterns = [
    path(F, include(nested.urls)),
    path(f"{F}capture/", settings, name="capture-settings"),
    path(f"{F}captures/", captures, name="capture-list"),
    path(f"{F}captures/<str:capture_id>/", capture, name="capture-detail"),
]
