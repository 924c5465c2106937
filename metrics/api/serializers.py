"""Query parameters and answers of the metrics and logs API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from core.names import NAME_RE, VERSION_RE
from metrics.logs import STREAMS, filter_errors
from metrics.selectors import SERIES_BREAKDOWNS, Breakdown, TimeRange

RANGE_HELP = "The window: " + ", ".join(r.value for r in TimeRange)


class RangeQuery(serializers.Serializer[dict[str, Any]]):
    range = serializers.ChoiceField(
        choices=[r.value for r in TimeRange], default=TimeRange.H1.value, help_text=RANGE_HELP
    )


class ScopeQuery(RangeQuery):
    version = serializers.RegexField(VERSION_RE, required=False, help_text="`v3`, or `draft`")
    alias = serializers.RegexField(
        NAME_RE, required=False, help_text="An alias: the calls its triggers served"
    )
    path = serializers.CharField(
        max_length=200, required=False, help_text="One of the function's trigger paths"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if sum(1 for name in ("version", "alias", "path") if name in attrs) > 1:
            raise serializers.ValidationError("Give at most one of version, alias and path.")
        return attrs


class SeriesQuery(ScopeQuery):
    by = serializers.ChoiceField(
        choices=[b.value for b in SERIES_BREAKDOWNS], required=False,
        help_text="Also draw one line per version (`v2`, `draft`) or per alias (the calls on its "
        "triggers' paths; an alias no trigger serves has none)",
    )  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs.get("by") == Breakdown.ALIAS.value and ("alias" in attrs or "path" in attrs):
            raise serializers.ValidationError(
                {"by": ["by=alias covers the whole function: no alias or path."]}
            )
        return attrs


class StatsQuery(ScopeQuery):
    by = serializers.ChoiceField(
        choices=[b.value for b in Breakdown], required=False,
        help_text="Break the calls and errors down by version, alias or path",
    )  # fmt: skip


class LatencySerializer(serializers.Serializer[Any]):
    p50 = serializers.FloatField(allow_null=True, help_text="Milliseconds; null without calls")
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class TotalsSerializer(serializers.Serializer[Any]):
    calls = serializers.IntegerField()
    # DRF moves declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.IntegerField(help_text="Calls answered with a status >= 400")  # type: ignore[assignment]
    error_rate = serializers.FloatField(allow_null=True, help_text="errors / calls; null without calls")
    cold_starts = serializers.IntegerField()
    latency_ms = LatencySerializer()


class RowSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="A version (`v2`, `draft`), an alias, a path or a function")
    calls = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # see TotalsSerializer
    error_rate = serializers.FloatField(allow_null=True)


class EventRowSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=["timer", "mq", "async"])
    trigger = serializers.CharField(help_text='The time or queue trigger; "" for asynchronous invocations')
    outcome = serializers.CharField(
        help_text="timer: fired, failed, skipped_overlap, missed; mq: delivered, failed, retried, "
        "error_topic, unreachable; async: accepted, refused, succeeded, retried, throttled, dead_lettered, "
        "expired, redriven"
    )
    count = serializers.IntegerField()


class FunctionStatsSerializer(serializers.Serializer[Any]):
    function = serializers.CharField()
    range = serializers.CharField()
    at = serializers.FloatField(help_text="Evaluated at (epoch seconds)")
    totals = TotalsSerializer()
    by = serializers.CharField(allow_null=True)
    breakdown = RowSerializer(many=True)
    events = EventRowSerializer(many=True, help_text="What the event sources did in the window")


class LinePointsSerializer(serializers.Serializer[Any]):
    calls = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Calls per step: [[time, count], ...]",
    )
    errors = serializers.ListField(  # type: ignore[assignment]  # see TotalsSerializer
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Calls answered with a status >= 400, per step",
    )
    error_rate = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="errors / calls per step; null in a step without calls",
    )
    p95 = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="95th percentile latency (ms) per step; null in a step without calls",
    )


class LineSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="A version (`v2`, `draft`) or an alias")
    series = LinePointsSerializer()


class FunctionSeriesSerializer(serializers.Serializer[Any]):
    function = serializers.CharField()
    range = serializers.CharField()
    start = serializers.FloatField()
    end = serializers.FloatField()
    step_s = serializers.IntegerField(help_text="Each point covers the step before its time")
    series = serializers.DictField(
        child=serializers.ListField(
            child=serializers.ListField(child=serializers.FloatField(allow_null=True))
        ),
        help_text="calls, errors, cold_starts (counts per step), p50, p95, p99 (ms): [[time, value], ...]",
    )
    by = serializers.ChoiceField(
        choices=[b.value for b in SERIES_BREAKDOWNS], allow_null=True, help_text="As asked; null for none"
    )
    lines = LineSerializer(many=True, help_text="One per version or alias when `by` is given, else empty")


@extend_schema_serializer(many=False)  # the answer of a viewset's `list`, yet one object
class TenantOverviewSerializer(serializers.Serializer[Any]):
    range = serializers.CharField()
    at = serializers.FloatField()
    totals = TotalsSerializer()
    top_by_calls = RowSerializer(many=True)
    top_by_errors = RowSerializer(many=True)


class LogsQuery(serializers.Serializer[dict[str, Any]]):
    function = serializers.RegexField(NAME_RE, required=False)
    version = serializers.RegexField(VERSION_RE, required=False, help_text="`v3` or `draft`; needs function")
    request_id = serializers.CharField(max_length=128, required=False)
    stream = serializers.ChoiceField(choices=STREAMS, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    q = serializers.CharField(max_length=200, required=False, help_text="Text the line contains (any case)")
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)
    cursor = serializers.CharField(
        max_length=64, required=False, help_text="From the previous page's `cursor`"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = filter_errors(**{k: attrs.get(k) for k in ("function", "version", "since", "until")})
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class LogRecordSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    time = serializers.FloatField(help_text="Epoch seconds")
    function = serializers.CharField()
    version = serializers.CharField(help_text="`v3`, `draft`, or empty")
    request_id = serializers.CharField()
    stream = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(many=False)  # the answer of a viewset's `list`: a page of its own kind
class LogPageSerializer(serializers.Serializer[Any]):
    results = LogRecordSerializer(many=True)
    cursor = serializers.CharField(allow_null=True, help_text="Pass it back for the next, older page")
    next = serializers.CharField(allow_null=True, help_text="The URL of the next page")
