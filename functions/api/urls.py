from django.urls import include, path
from rest_framework.routers import SimpleRouter

from functions.api import views

router = SimpleRouter()
router.register("environments", views.EnvironmentViewSet, basename="environment")
router.register("functions", views.FunctionViewSet, basename="function")
router.register("secrets", views.SecretViewSet, basename="secret")
router.register("configmaps", views.ConfigMapViewSet, basename="configmap")
router.register("spec", views.SpecViewSet, basename="spec")

nested = SimpleRouter()
nested.register("builds", views.BuildViewSet, basename="build")
nested.register("versions", views.VersionViewSet, basename="version")
nested.register("aliases", views.AliasViewSet, basename="alias")
nested.register("triggers", views.TriggerViewSet, basename="trigger")
nested.register("time-triggers", views.TimeTriggerViewSet, basename="time-trigger")
nested.register("queue-triggers", views.QueueTriggerViewSet, basename="queue-trigger")
nested.register("deployments", views.DeploymentViewSet, basename="deployment")
nested.register("invocations", views.InvocationViewSet, basename="invocation")

urlpatterns = [
    path("", include(router.urls)),
    path("functions/<slug:function_name>/", include(nested.urls)),
]
