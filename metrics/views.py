"""Pages: a function's charts, the tenant's top functions, and the logs with filters.

Each renders without Prometheus or the log store: it says plainly that metrics (or logs) are
unavailable, and the rest of the page works.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from core.errors import DomainError
from core.names import NAME_RE, VERSION_RE
from functions.models import Function
from metrics import coldstart_insight, logs, selectors
from metrics.prometheus import MetricsUnavailable
from tenants.pages import tenant_page

LIVE_INTERVAL_S = 5
RANGES = [r.value for r in selectors.TimeRange]


# The charts' views: the function's totals, or one line per version or per alias.
VIEWS = ["total", *(b.value for b in selectors.SERIES_BREAKDOWNS)]


def _range(request: HttpRequest) -> selectors.TimeRange:
    raw = request.GET.get("range", selectors.TimeRange.H1.value)
    return selectors.TimeRange(raw) if raw in RANGES else selectors.TimeRange.H1


def _view(request: HttpRequest) -> str:
    raw = request.GET.get("view", VIEWS[0])
    return raw if raw in VIEWS else VIEWS[0]


@tenant_page()
def function_metrics(request: HttpRequest, name: str) -> HttpResponse:
    function = get_object_or_404(Function, name=name)
    time_range, view = _range(request), _view(request)
    context: dict[str, Any] = {
        "function": function, "range": time_range.value, "ranges": RANGES, "view": view, "views": VIEWS,
        "interval": max(LIVE_INTERVAL_S, time_range.min_live_interval_s),
        "series": None, "stats": None, "unavailable": None,
    }  # fmt: skip
    try:
        context["stats"] = selectors.function_stats(
            function, time_range=time_range, by=selectors.Breakdown.VERSION
        )
        context["series"] = _chart_series(function, time_range, view)
    except MetricsUnavailable as exc:
        context["unavailable"] = exc.message
    return render(request, "metrics/function.html", context)


def _chart_series(function: Function, time_range: selectors.TimeRange, view: str) -> dict[str, Any]:
    """What static/src/metrics.js draws first: the totals' series, or the lines of ``view``."""
    if view == VIEWS[0]:
        series = selectors.function_series(function, time_range=time_range)
        return {"view": view, "step_s": series.step_s, "series": series.series}
    found = selectors.function_series_breakdown(function, time_range=time_range, by=selectors.Breakdown(view))
    return {"view": view, "step_s": found.step_s, "lines": [line.as_dict() for line in found.lines]}


@tenant_page()
def top_functions(request: HttpRequest) -> HttpResponse:
    """The overview's "top functions" panel (loaded by htmx, so the page never waits for it)."""
    time_range = _range(request)
    context: dict[str, Any] = {"range": time_range.value, "ranges": RANGES, "overview": None}
    try:
        context["overview"] = selectors.tenant_overview(time_range=time_range)
    except MetricsUnavailable as exc:
        context["unavailable"] = exc.message
    return render(request, "metrics/_top.html", context)


class LogFilterForm(forms.Form):
    function = forms.RegexField(NAME_RE, required=False)
    version = forms.RegexField(VERSION_RE, required=False,
                               help_text="v3 or draft (with a function)")  # fmt: skip
    request_id = forms.CharField(max_length=128, required=False, label="Request id")
    stream = forms.ChoiceField(
        choices=[("", "any"), *((name, name) for name in logs.STREAMS)], required=False
    )
    q = forms.CharField(max_length=200, required=False, label="Text")
    since = forms.DateTimeField(required=False, help_text="e.g. 2026-12-01 10:00 (UTC)")
    until = forms.DateTimeField(required=False)
    cursor = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        errors = logs.filter_errors(**{k: data.get(k) for k in ("function", "version", "since", "until")})
        for field, messages in errors.items():
            self.add_error(field, messages)
        return data


@tenant_page()
def log_list(request: HttpRequest) -> HttpResponse:
    form = LogFilterForm(request.GET or None)
    context: dict[str, Any] = {
        "form": form, "functions": Function.objects.values_list("name", flat=True), "results": None,
    }  # fmt: skip
    if form.is_bound and not form.is_valid():
        return render(request, "metrics/logs.html", context, status=400)
    filters = {k: v for k, v in (form.cleaned_data if form.is_bound else {}).items() if v not in (None, "")}
    try:
        context["results"] = logs.log_search(limit=100, **filters)
    except DomainError as exc:  # the log store is away (503), or a cursor we never gave (400)
        context["unavailable"] = exc.message
    if context["results"] is not None and context["results"].cursor:
        params = request.GET.copy()
        params["cursor"] = context["results"].cursor
        context["next_query"] = params.urlencode()
    context["live"] = {k: filters.get(k, "") for k in ("function", "version", "stream")}
    return render(request, "metrics/logs.html", context)


@tenant_page()
def function_coldstarts(request: HttpRequest, name: str) -> HttpResponse:
    """The cold-start panel of a function (a partial, beside its settings): per version the
    measured cold-start rate and latency, and the what-if of ``?value=`` (min scale or pool size)
    and ``?idle_timeout_s=`` replayed on the last 24 hours' calls (metrics/coldstart_insight.py)."""
    function = get_object_or_404(Function.objects.select_related("environment"), name=name)
    context: dict[str, Any] = {"function": function, "insight": None, "unavailable": None, "invalid": None}
    status = 200
    try:
        value, idle = coldstart_insight.whatif_params(request.GET)
        context["insight"] = coldstart_insight.cold_start_insight(function, value=value, idle_timeout_s=idle)
    except coldstart_insight.ColdStartsUnavailable as exc:
        context["unavailable"] = exc.message
    except DomainError as exc:  # a what-if value out of range
        context["invalid"], status = exc.message, 400
    return render(request, "metrics/_coldstarts.html", context, status=status)
