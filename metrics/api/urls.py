from django.urls import path

from metrics.api import views

urlpatterns = [
    path("metrics/", views.TenantMetricsViewSet.as_view({"get": "list"}), name="tenant-metrics"),
    path("logs/", views.LogViewSet.as_view({"get": "list"}), name="tenant-logs"),
    path(
        "functions/<slug:function_name>/metrics/",
        views.FunctionMetricsViewSet.as_view({"get": "stats"}),
        name="function-metrics",
    ),
    path(
        "functions/<slug:function_name>/metrics/series/",
        views.FunctionMetricsViewSet.as_view({"get": "series"}),
        name="function-metrics-series",
    ),
    path(
        "functions/<slug:function_name>/coldstarts/",
        views.FunctionColdStartsViewSet.as_view({"get": "retrieve"}),
        name="function-coldstarts",
    ),
]
