"""URLs inside a tenant; django-tenants serves them under ``/t/<tenant>/``."""

from django.urls import include, path

from functions import views as function_views
from metrics import views as metric_views
from releases import views as release_views
from tenants import views

urlpatterns = [
    path("", views.dashboard, name="tenant-dashboard"),
    path("members/", views.members, name="tenant-members"),
    path("tokens/", views.tokens_page, name="tenant-tokens"),
    path("audit/", views.audit_page, name="tenant-audit"),
    path("quota/", function_views.quota_page, name="tenant-quota"),
    path("environments/", function_views.environment_list, name="environment-list"),
    path("configuration/", function_views.configuration_page, name="tenant-configuration"),
    path("environments/<slug:name>/", function_views.environment_edit, name="environment-edit"),
    path("functions/", function_views.function_list, name="function-list"),
    path("functions/<slug:name>/", function_views.function_detail, name="function-detail"),
    path("functions/<slug:name>/test/", function_views.function_test, name="function-test"),
    path("functions/<slug:name>/versions/", function_views.function_versions, name="function-versions"),
    path("functions/<slug:name>/triggers/", function_views.function_triggers, name="function-triggers"),
    path(
        "functions/<slug:name>/configuration/",
        function_views.function_configuration,
        name="function-configuration",
    ),
    path("functions/<slug:name>/logs/", metric_views.function_logs, name="function-logs"),
    path("functions/<slug:name>/invoke/", function_views.function_invoke, name="function-invoke"),
    path("functions/<slug:name>/events/", function_views.function_saved_events, name="function-saved-events"),
    path("functions/<slug:name>/compare/", function_views.function_compare, name="function-compare"),
    path("functions/<slug:name>/metrics/", metric_views.function_metrics, name="function-metrics"),
    path(
        "functions/<slug:name>/metrics/figures/",
        metric_views.function_metrics_figures,
        name="function-metrics-figures",
    ),
    path("functions/<slug:name>/coldstarts/", metric_views.function_coldstarts, name="function-coldstarts"),
    path("functions/<slug:name>/rollouts/", release_views.rollout_panel, name="function-rollouts"),
    path("functions/<slug:name>/captures/", release_views.capture_panel, name="function-captures"),
    path(
        "functions/<slug:name>/rollouts/<int:pk>/<slug:verb>/",
        release_views.rollout_steer,
        name="function-rollout-steer",
    ),
    path("metrics/top/", metric_views.top_functions, name="tenant-top-functions"),
    path("logs/", metric_views.log_list, name="tenant-logs"),
    path("api/v1/", include(("portal.api.urls_tenant", "tenant-api"), namespace="tenant-api")),
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.forbidden"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
