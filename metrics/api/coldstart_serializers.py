"""Query and answer of the cold-start insight API (metrics/coldstart_insight.py)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from metrics.coldstart_insight import MAX_IDLE_TIMEOUT_S, MAX_VALUE


class ColdStartQuery(serializers.Serializer[dict[str, Any]]):
    value = serializers.IntegerField(
        min_value=0, max_value=MAX_VALUE, required=False,
        help_text="The what-if's min scale (newdeploy) or pool size (poolmgr); "
        "the function's current one by default",
    )  # fmt: skip
    idle_timeout_s = serializers.IntegerField(
        min_value=1, max_value=MAX_IDLE_TIMEOUT_S, required=False,
        help_text="The what-if's idle timeout in seconds; the function's current one by default",
    )  # fmt: skip


class OutcomeSerializer(serializers.Serializer[dict[str, Any]]):
    calls = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    cold_start_rate = serializers.FloatField(allow_null=True)
    from_empty_pool = serializers.IntegerField(
        help_text="poolmgr: cold starts finding no pooled worker ready"
    )
    queued = serializers.IntegerField(help_text="newdeploy: calls that would have waited at MaxScale")
    refused = serializers.IntegerField(help_text="poolmgr: calls that would have been refused (429)")


class TableRowSerializer(OutcomeSerializer):
    value = serializers.IntegerField()
    current = serializers.BooleanField()


class WhatIfSerializer(serializers.Serializer[dict[str, Any]]):
    value = serializers.IntegerField()
    idle_timeout_s = serializers.IntegerField()
    pool_refill_s = serializers.FloatField(
        help_text="poolmgr: when a taken pooled worker is assumed replaced"
    )
    total = OutcomeSerializer(allow_null=True)
    table = TableRowSerializer(many=True)


class VersionColdStartsSerializer(serializers.Serializer[dict[str, Any]]):
    version = serializers.CharField(help_text="`v3`, or `draft`")
    calls = serializers.IntegerField()
    cold_starts = serializers.IntegerField()
    cold_start_rate = serializers.FloatField(allow_null=True, help_text="cold calls / calls, recorded")
    from_pool = serializers.IntegerField()
    new_workers = serializers.IntegerField()
    cold_start_ms = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="p50, p95, max of the wait for a worker"
    )
    warm_ms = serializers.DictField(child=serializers.FloatField(allow_null=True), help_text="p50, p95")
    whatif = OutcomeSerializer()


class ColdStartInsightSerializer(serializers.Serializer[dict[str, Any]]):
    function = serializers.CharField()
    since = serializers.FloatField(help_text="Epoch seconds: the window's start")
    at = serializers.FloatField()
    recorded = serializers.BooleanField(
        help_text="False: the data plane records no call times (`note` says why)"
    )
    note = serializers.CharField(allow_blank=True)
    executor = serializers.CharField()
    knob = serializers.ChoiceField(choices=["min_scale", "pool_size"])
    current = serializers.DictField(child=serializers.IntegerField(), help_text="The function's settings")
    whatif = WhatIfSerializer()
    versions = VersionColdStartsSerializer(many=True)
