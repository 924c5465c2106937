from django.urls import include, path
from rest_framework.routers import SimpleRouter

from releases.api import views

nested = SimpleRouter()
nested.register("rollouts", views.RolloutViewSet, basename="rollout")

urlpatterns = [path("functions/<slug:function_name>/", include(nested.urls))]
