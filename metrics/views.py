"""Pages: a function's charts, the tenant's top functions, and the logs with filters.

Each renders without Prometheus or the log store: it says plainly that metrics (or logs) are
unavailable, and the rest of the page works.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from core.errors import DomainError
from core.names import NAME_RE, VERSION_RE
from functions import workspace
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
    """The Monitor tab: its range and view pickers at once, and its figures (Prometheus' answers)
    loaded by htmx after it (``function_metrics_figures``), so that the tab never waits for
    Prometheus. Without JavaScript, a link leads to the tab with its figures."""
    function = get_object_or_404(Function.objects.select_related("environment"), name=name)
    context = _monitor_context(request, function)
    return workspace.render_tab(request, function, "monitor", "metrics/function.html", context)


@tenant_page()
def function_metrics_figures(request: HttpRequest, name: str) -> HttpResponse:
    """The Monitor tab's figures: the totals, charts and tables of the range and view asked for.
    To htmx (the tab's loader), those alone; otherwise the whole tab with them in place."""
    function = get_object_or_404(Function.objects.select_related("environment"), name=name)
    context = {**_monitor_context(request, function), **_figures(function, _range(request), _view(request))}
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target == "metrics-figures":  # the tab's loader (templates/metrics/function.html)
        response = render(request, "metrics/_figures.html", context)
        patch_vary_headers(response, ["HX-Request", "HX-Target"])  # two answers to one URL
        return response
    return workspace.render_tab(request, function, "monitor", "metrics/function.html", context)


def _monitor_context(request: HttpRequest, function: Function) -> dict[str, Any]:
    time_range, view = _range(request), _view(request)
    figures = reverse("function-metrics-figures", kwargs={"name": function.name})
    return {
        "function": function, "range": time_range.value, "ranges": RANGES, "view": view, "views": VIEWS,
        "interval": max(LIVE_INTERVAL_S, time_range.min_live_interval_s),
        "figures_url": f"{figures}?{urlencode({'range': time_range.value, 'view': view})}",
    }  # fmt: skip


def _figures(function: Function, time_range: selectors.TimeRange, view: str) -> dict[str, Any]:
    """What Prometheus says of ``function`` for the tab (two requests), or why it cannot."""
    figures: dict[str, Any] = {"figures": True, "series": None, "stats": None, "unavailable": None}
    try:
        by_version = selectors.Breakdown.VERSION
        figures["stats"] = selectors.function_stats(function, time_range=time_range, by=by_version)
        figures["series"] = _chart_series(function, time_range, view)
    except MetricsUnavailable as exc:
        figures["unavailable"] = exc.message
    return figures


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


# The quick ranges of the logs page: a "since" that far before now (and no "until").
QUICK_RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
_MOMENT_HELP = "a date and time, e.g. 2026-12-01T10:00 (UTC), or with its offset: 2026-12-01T10:00+02:00"


class MomentField(forms.DateTimeField):
    """A "since" or "until": the page's picker sends ISO 8601 in UTC (static/src/logs.js turns
    the browser's local time into it); a value without an offset is UTC. A moment that has no
    UTC date (year 9999 behind UTC) is refused like any other bad value."""

    def __init__(self, label: str) -> None:
        invalid = f"{label} must be {_MOMENT_HELP}."
        super().__init__(required=False, label=label, error_messages={"invalid": invalid})

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        try:
            return moment.astimezone(UTC) if moment is not None else None
        except OverflowError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class LogFilterForm(forms.Form):
    function = forms.RegexField(NAME_RE, required=False)
    version = forms.RegexField(VERSION_RE, required=False,
                               help_text="v3 or draft (with a function)")  # fmt: skip
    request = forms.CharField(max_length=logs.REQUEST_ID_MAX, required=False, label="Request id",
                              help_text="the whole id, or its first characters")  # fmt: skip
    stream = forms.ChoiceField(
        choices=[("", "any"), *((name, name) for name in logs.STREAMS)], required=False
    )
    q = forms.CharField(max_length=200, required=False, label="Text")
    since = MomentField("Since")
    until = MomentField("Until")
    last = forms.ChoiceField(choices=[(k, k) for k in QUICK_RANGES], required=False)
    cursor = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("last"):  # a quick range: from that long ago until now
            data["since"], data["until"] = timezone.now() - QUICK_RANGES[data["last"]], None
        errors = logs.filter_errors(**{k: data.get(k) for k in ("function", "version", "since", "until")})
        for field, messages in errors.items():
            self.add_error(field, messages)
        return data


def _log_params(request: HttpRequest) -> QueryDict | None:
    """The query string as the form reads it. ``request_id`` is the older name of ``request``:
    links such as the dead letters' (templates/functions/tabs/triggers.html) still use it."""
    if not request.GET:
        return None
    params = request.GET.copy()
    older = request.GET.get("request_id", "")
    if older and not params.get("request"):
        params["request"] = str(older)
    return params


def _query_args(data: dict[str, Any]) -> dict[str, Any]:
    """The form's values as ``logs.log_query``'s arguments (a request id typed is a prefix)."""
    given = {k: v for k, v in data.items() if v not in (None, "") and k != "last"}
    if "request" in given:
        given["request_prefix"] = given.pop("request")
    return given


@tenant_page()
def log_list(request: HttpRequest) -> HttpResponse:
    """The tenant's log lines grouped by request (metrics/logs.py: ``log_groups``), with the
    live tail of the same filters."""
    context, status = _log_context(request)
    context["functions"] = Function.objects.values_list("name", flat=True)
    return render(request, "metrics/logs.html", context, status=status)


@tenant_page()
def function_logs(request: HttpRequest, name: str) -> HttpResponse:
    """The workspace's Logs tab: the tenant's logs page with the function fixed."""
    function = get_object_or_404(Function.objects.select_related("environment"), name=name)
    context, status = _log_context(request, function=function.name)
    return workspace.render_tab(
        request, function, "logs", "metrics/function_logs.html", context, status=status
    )


def _log_context(request: HttpRequest, function: str | None = None) -> tuple[dict[str, Any], int]:
    """The filters as sent (``function`` fixed when given), the matching groups and the live
    tail's filters; 400 with the form's problems under its fields."""
    params = _log_params(request)
    if function is not None:
        params = params if params is not None else QueryDict(mutable=True)
        params = params.copy()
        params["function"] = function
    form = LogFilterForm(params)
    context: dict[str, Any] = {"form": form, "results": None, "quick_ranges": list(QUICK_RANGES)}
    if form.is_bound and not form.is_valid():
        context["moments"] = _moments(form)
        return context, 400
    data = form.cleaned_data if form.is_bound else {}
    try:
        context["results"] = logs.log_groups(logs.log_query(limit=100, **_query_args(data)))
    except DomainError as exc:  # the log store is away (503), or a cursor we never gave (400)
        context["unavailable"] = exc.message
    if context["results"] is not None and context["results"].cursor:
        query = request.GET.copy()
        query["cursor"] = context["results"].cursor
        context["next_query"] = query.urlencode()
    context["live"] = {k: data.get(k) or "" for k in ("function", "version", "stream", "request")}
    context["moments"] = _moments(form)
    context["last"] = data.get("last") or ""
    return context, 200


def _moments(form: LogFilterForm) -> list[dict[str, Any]]:
    """The "since" and "until" pickers: the value in UTC (what the picker shows without a
    script: the form reads a value without an offset as UTC), and their errors."""
    data = getattr(form, "cleaned_data", {})
    moments: list[dict[str, Any]] = []
    for name in ("since", "until"):
        moment = data.get(name) if name not in form.errors else None  # MomentField: in UTC
        utc = moment.replace(microsecond=0) if moment else None  # a picker shows seconds
        moments.append({
            "name": name, "label": form.fields[name].label, "errors": form.errors.get(name, []),
            "value": utc.strftime("%Y-%m-%dT%H:%M:%S") if utc else "",
            "utc": utc.isoformat().replace("+00:00", "Z") if utc else "",
        })  # fmt: skip
    return moments


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
