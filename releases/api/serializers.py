from __future__ import annotations

from typing import Any

from rest_framework import serializers

from releases.models import Replay, ReplayState, Rollout, RolloutState


class FiguresSerializer(serializers.Serializer[Any]):
    calls = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field named like Serializer.errors
    error_rate = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)


class DecisionSerializer(serializers.Serializer[Any]):
    """One entry of a rollout's decision log. ``action``: started, step, serving, wait, pass,
    breach, no_traffic, deployment_failed, paused, resumed, succeeded, rolled_back, aborted."""

    at = serializers.DateTimeField()
    step = serializers.IntegerField(help_text="1-based")
    weight = serializers.IntegerField(help_text="B's % of the alias's calls at that step")
    action = serializers.CharField()
    message = serializers.CharField()
    a = FiguresSerializer(required=False, allow_null=True, help_text="A's calls in the judged window")
    b = FiguresSerializer(required=False, allow_null=True, help_text="B's calls in the judged window")
    window = serializers.ListField(child=serializers.DateTimeField(), required=False)
    notes = serializers.ListField(child=serializers.CharField(), required=False)
    since = serializers.DateTimeField(required=False, help_text="a wait: when it began")


class RolloutSerializer(serializers.ModelSerializer[Rollout]):
    alias = serializers.CharField(source="alias.name")
    from_version = serializers.IntegerField(source="from_version.number")
    to_version = serializers.IntegerField(source="to_version.number")
    weights = serializers.ListField(child=serializers.IntegerField())
    step = serializers.SerializerMethodField(help_text="1-based: the step in progress (or the last reached)")
    weight = serializers.IntegerField(read_only=True, help_text="B's % now")
    step_deployment = serializers.IntegerField(source="step_deployment_id", allow_null=True)
    decisions = DecisionSerializer(many=True)
    state = serializers.ChoiceField(choices=RolloutState.choices)

    class Meta:
        model = Rollout
        fields = ["id", "alias", "from_version", "to_version", "state", "weights", "step", "weight",
                  "interval_s", "min_calls", "traffic_wait_s", "max_error_rate", "max_error_rate_increase",
                  "max_latency_ratio", "replay_first", "replay", "gate_passed_at", "step_deployment",
                  "step_started_at", "next_check_at", "reason",
                  "decisions", "created_by", "created_at", "updated_at", "finished_at"]  # fmt: skip
        read_only_fields = fields

    def get_step(self, rollout: Rollout) -> int:
        return rollout.step + 1


class RolloutStartSerializer(serializers.Serializer[Any]):
    alias = serializers.RegexField(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=30)
    to_version = serializers.IntegerField(min_value=1)
    weights = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        required=False,
        min_length=1,
        max_length=20,
        help_text="B's % at each step, rising, ending at 100 (default 5, 25, 50, 100)",
    )
    increment = serializers.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        help_text="instead of weights: Fission's step (10: 10, 20 ... 100)",
    )
    interval_s = serializers.IntegerField(
        min_value=1, max_value=86400, help_text="how long each step runs before B is judged"
    )
    min_calls = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False)
    traffic_wait_s = serializers.IntegerField(min_value=0, max_value=86400, required=False)
    max_error_rate = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    max_error_rate_increase = serializers.FloatField(
        min_value=0, max_value=1, required=False, allow_null=True
    )
    max_latency_ratio = serializers.FloatField(min_value=1, max_value=1000, required=False, allow_null=True)
    replay_first = serializers.BooleanField(
        required=False, help_text="first replay the captured failed requests against the new version (at 0 %)"
    )


class CaptureSettingsSerializer(serializers.Serializer[Any]):
    codes = serializers.ListField(
        child=serializers.RegexField(r"^([1-5][0-9][0-9]|[1-5]xx)$", max_length=3),
        max_length=50,
        help_text='statuses (500) or classes ("5xx") whose calls are captured; empty: capture is off',
    )
    max_requests = serializers.IntegerField(min_value=1, max_value=1000, help_text="newest kept")
    max_body_bytes = serializers.IntegerField(min_value=0, max_value=1024 * 1024, help_text="of each body")


class CapturedRequestSerializer(serializers.Serializer[Any]):
    """One captured request, redacted before it was stored (secret values read "[redacted]")."""

    id = serializers.CharField()
    time = serializers.FloatField(help_text="epoch seconds")
    version = serializers.CharField(help_text="the version that answered (v2, draft)")
    trigger_path = serializers.CharField()
    method = serializers.CharField()
    path = serializers.CharField()
    headers = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    body = serializers.CharField(help_text="as text (undecodable bytes replaced)")
    body_truncated = serializers.BooleanField()
    status = serializers.IntegerField()
    response_body = serializers.CharField()
    response_truncated = serializers.BooleanField()
    duration_ms = serializers.FloatField()
    request_id = serializers.CharField()


class ReplayResultSerializer(serializers.Serializer[Any]):
    """``state``: sending, done, error (not answered), lost (its worker stopped while sending: not
    sent again), skipped (its body was cut at capture), gone (no longer captured)."""

    capture = serializers.CharField()
    state = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True)
    method = serializers.CharField(required=False)
    path = serializers.CharField(required=False)
    original_status = serializers.IntegerField(required=False)
    original_duration_ms = serializers.FloatField(required=False)
    status = serializers.IntegerField(required=False)
    duration_ms = serializers.FloatField(required=False)
    request_id = serializers.CharField(required=False)
    body_diff = serializers.CharField(required=False, help_text="unified diff of the answers' bodies")
    dropped_headers = serializers.ListField(child=serializers.CharField(), required=False)
    note = serializers.CharField(required=False)


class ReplaySerializer(serializers.ModelSerializer[Replay]):
    version = serializers.IntegerField(source="version.number")
    state = serializers.ChoiceField(choices=ReplayState.choices)
    captures = serializers.ListField(child=serializers.CharField())
    results = ReplayResultSerializer(many=True)

    class Meta:
        model = Replay
        fields = ["id", "version", "state", "passed", "summary", "captures", "results", "created_by",
                  "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class ReplayCreateSerializer(serializers.Serializer[Any]):
    version = serializers.IntegerField(min_value=1)
    captures = serializers.ListField(
        child=serializers.RegexField(r"^[0-9]{1,20}-[0-9]{1,20}$"),
        required=False,
        max_length=1000,
        help_text="ids of captured requests, in order (default: every one)",
    )


class DeletedSerializer(serializers.Serializer[Any]):
    deleted = serializers.IntegerField()
