"""Metrics and logs under ``/t/<tenant>/api/v1/``: any member may read them.

Prometheus or the log store being away is a 503 in the error shape, never a 500.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.schema import ERRORS, error_responses
from functions.models import Function
from metrics import logs, selectors
from metrics.api import serializers as s
from tenants.api.base import TenantViewSet

READ_ERRORS = {**ERRORS, **error_responses(503)}


def _query(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class FunctionMetricsViewSet(TenantViewSet):
    def _function(self) -> Function:
        return get_object_or_404(Function, name=self.kwargs["function_name"])

    @extend_schema(
        summary="A function's calls, errors, latency percentiles and cold starts",
        description="Of the whole function, or one version, alias or trigger path; optionally broken "
        "down. Counts are exact for the window (no extrapolation).",
        parameters=[s.StatsQuery], responses={200: s.FunctionStatsSerializer, **READ_ERRORS},
    )  # fmt: skip
    def stats(self, request: Request, function_name: str) -> Response:
        query = _query(s.StatsQuery, request)
        stats = selectors.function_stats(
            self._function(), time_range=selectors.TimeRange(query.pop("range")),
            by=selectors.Breakdown(query["by"]) if query.get("by") else None,
            version=query.get("version"), alias=query.get("alias"), path=query.get("path"),
        )  # fmt: skip
        body = {
            "function": stats.function, "range": stats.range.value, "at": stats.at,
            "totals": stats.totals.as_dict(), "by": stats.by.value if stats.by else None,
            "breakdown": [_row(row) for row in stats.breakdown],
            "events": [asdict(row) for row in stats.events],
        }  # fmt: skip
        return Response(s.FunctionStatsSerializer(body).data)

    @extend_schema(
        summary="A function's metrics over time, for charts",
        description="The whole function's series, and with `by` one line per version or per alias "
        "(calls, errors, error rate and p95 latency per step), to watch a canary.",
        parameters=[s.SeriesQuery], responses={200: s.FunctionSeriesSerializer, **READ_ERRORS},
    )  # fmt: skip
    def series(self, request: Request, function_name: str) -> Response:
        query = _query(s.SeriesQuery, request)
        function, time_range = self._function(), selectors.TimeRange(query.pop("range"))
        by = selectors.Breakdown(query.pop("by")) if query.get("by") else None
        found = selectors.function_series(function, time_range=time_range, **query)
        body: dict[str, Any] = {
            "function": found.function, "range": found.range.value, "start": found.start,
            "end": found.end, "step_s": found.step_s, "series": found.series, "by": None, "lines": [],
        }  # fmt: skip
        if by is not None:
            lines = selectors.function_series_breakdown(function, time_range=time_range, by=by, **query)
            body["by"], body["lines"] = by.value, [line.as_dict() for line in lines.lines]
        return Response(body)


class TenantMetricsViewSet(TenantViewSet):
    pagination_class = None  # one object (TenantOverviewSerializer), not a page

    @extend_schema(
        summary="The tenant's totals and its top functions by calls and by errors",
        parameters=[s.RangeQuery], responses={200: s.TenantOverviewSerializer, **READ_ERRORS},
    )  # fmt: skip
    def list(self, request: Request) -> Response:
        query = _query(s.RangeQuery, request)
        overview = selectors.tenant_overview(time_range=selectors.TimeRange(query["range"]))
        body = {
            "range": overview.range.value, "at": overview.at, "totals": overview.totals.as_dict(),
            "top_by_calls": [_row(r) for r in overview.top_by_calls],
            "top_by_errors": [_row(r) for r in overview.top_by_errors],
        }  # fmt: skip
        return Response(s.TenantOverviewSerializer(body).data)


class LogViewSet(TenantViewSet):
    pagination_class = None  # pages by `cursor` (LogPageSerializer), not by offset

    @extend_schema(
        summary="Search the tenant's function logs, newest first",
        description="Filter by function, version, request id, stream, time range and text; pass "
        "`cursor` back for the next page. On Kubernetes, lines carry no request id or stream.",
        parameters=[s.LogsQuery], responses={200: s.LogPageSerializer, **READ_ERRORS},
    )  # fmt: skip
    def list(self, request: Request) -> Response:
        results = logs.log_search(**_query(s.LogsQuery, request))
        following = None
        if results.cursor is not None:
            params = request.query_params.copy()
            params["cursor"] = results.cursor
            following = request.build_absolute_uri(request.path + "?" + params.urlencode())
        body = {"results": results.records, "cursor": results.cursor, "next": following}
        return Response(s.LogPageSerializer(body).data)


def _row(row: selectors.Row) -> dict[str, Any]:
    return {"key": row.key, "calls": row.calls, "errors": row.errors, "error_rate": row.error_rate}


# Appended (this file's head is shared with other work): the cold-start insight's answer.
from metrics.api.coldstart_serializers import ColdStartInsightSerializer, ColdStartQuery  # noqa: E402
from metrics.coldstart_insight import cold_start_insight  # noqa: E402


class FunctionColdStartsViewSet(TenantViewSet):
    pagination_class = None  # one object

    @extend_schema(
        summary="A function's cold starts per version, and what-ifs of min scale or pool size",
        description="Over the last 24 hours, from the calls the data plane recorded: per version the "
        "cold-start rate (cold calls / calls) and latency (the wait for a worker), and the what-if of "
        "`value` (min scale for newdeploy, pool size for poolmgr) and `idle_timeout_s` replayed on "
        "those calls (docs/coldstarts.md). On Kubernetes no call times are recorded: `recorded` is "
        "false and `note` says so.",
        parameters=[ColdStartQuery], responses={200: ColdStartInsightSerializer, **READ_ERRORS},
    )  # fmt: skip
    def retrieve(self, request: Request, function_name: str) -> Response:
        query = _query(ColdStartQuery, request)
        function = get_object_or_404(Function.objects.select_related("environment"), name=function_name)
        insight = cold_start_insight(
            function, value=query.get("value"), idle_timeout_s=query.get("idle_timeout_s")
        )
        return Response(ColdStartInsightSerializer(insight.as_dict()).data)
