from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.api.fields import StrictCharField
from core.names import name_validator
from functions import config
from functions.models import (
    Alias,
    Build,
    Deployment,
    Environment,
    Function,
    Invocation,
    TargetKind,
    Trigger,
    Version,
)  # fmt: skip
from functions.services.triggers import METHODS


class EnvironmentSerializer(serializers.ModelSerializer[Environment]):
    class Meta:
        model = Environment
        fields = ["name", "image", "builder_image", "poolsize", "memory_mb", "cpu_millis", "updated_at"]
        read_only_fields = ["name", "updated_at"]


class FunctionSerializer(serializers.ModelSerializer[Function]):
    environment = serializers.SlugRelatedField(
        slug_field="name", queryset=Environment.objects.all(), required=False
    )
    last_deployment_state = serializers.CharField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Function
        fields = [
            "name", "environment", "entrypoint", "executor", "min_scale", "max_scale", "target_cpu",
            "concurrency", "requests_per_pod", "timeout_s", "idle_timeout_s", "memory_mb", "cpu_millis",
            "last_deployment_state", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at", "last_deployment_state"]


# The settings of functions/config.py, each optional (a comment: a docstring would become the
# OpenAPI description of every serializer below).
class FunctionSettingsSerializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        return {**super().get_fields(), **config.serializer_fields()}


class FunctionCreateSerializer(FunctionSettingsSerializer):
    name = StrictCharField(max_length=40, validators=[name_validator])
    environment = serializers.SlugRelatedField(
        slug_field="name", queryset=Environment.objects.all(), required=False
    )


class FunctionUpdateSerializer(FunctionSettingsSerializer):
    environment = serializers.SlugRelatedField(
        slug_field="name", queryset=Environment.objects.all(), required=False
    )


class CodeSerializer(serializers.Serializer[Any]):
    files = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False))
    revision = serializers.IntegerField(read_only=True)
    archive_name = serializers.CharField(read_only=True)


class UploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField()


class BuildSerializer(serializers.ModelSerializer[Build]):
    class Meta:
        model = Build
        fields = ["id", "draft_revision", "state", "reason", "sha256", "size", "created_at", "started_at",
                  "finished_at"]  # fmt: skip
        read_only_fields = fields


class BuildDetailSerializer(BuildSerializer):
    class Meta(BuildSerializer.Meta):
        fields = [*BuildSerializer.Meta.fields, "log"]
        read_only_fields = fields


class VersionSerializer(serializers.ModelSerializer[Version]):
    sha256 = serializers.CharField(source="build.sha256", read_only=True)
    config = serializers.JSONField(
        source="settings",
        read_only=True,
        help_text="The settings as published; a setting added since shows its default",
    )

    class Meta:
        model = Version
        fields = ["number", "description", "config", "sha256", "created_by", "created_at"]
        read_only_fields = fields


class PublishSerializer(serializers.Serializer[Any]):
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class AliasSerializer(serializers.ModelSerializer[Alias]):
    version = serializers.IntegerField(source="version.number")
    canary_version = serializers.IntegerField(source="canary_version.number", allow_null=True, required=False)

    class Meta:
        model = Alias
        fields = ["name", "version", "canary_version", "canary_weight", "updated_at"]
        read_only_fields = ["updated_at"]


class AliasWriteSerializer(serializers.Serializer[Any]):
    name = StrictCharField(max_length=30)
    version = serializers.IntegerField(min_value=1)
    canary_version = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    canary_weight = serializers.IntegerField(min_value=0, max_value=100, required=False, default=0)


class TriggerSerializer(serializers.ModelSerializer[Trigger]):
    alias = serializers.CharField(source="alias.name", allow_null=True, required=False)
    version = serializers.IntegerField(source="version.number", allow_null=True, required=False)

    class Meta:
        model = Trigger
        fields = ["name", "methods", "path", "is_prefix", "keep_prefix", "target_kind", "alias", "version",
                  "created_at"]  # fmt: skip
        read_only_fields = ["created_at"]


class TriggerWriteSerializer(serializers.Serializer[Any]):
    name = StrictCharField(max_length=50)
    methods = serializers.ListField(child=serializers.ChoiceField(choices=METHODS), min_length=1)
    path = StrictCharField(max_length=200)
    is_prefix = serializers.BooleanField(required=False, default=False)
    keep_prefix = serializers.BooleanField(required=False, default=False)
    target_kind = serializers.ChoiceField(
        choices=TargetKind.choices, required=False, default=TargetKind.DRAFT
    )
    alias = StrictCharField(required=False, allow_null=True, default=None)
    version = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    class Meta:
        model = Deployment
        fields = ["id", "state", "reason", "cause", "steps", "requested_by", "attempts", "created_at",
                  "updated_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class InvokeSerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(choices=METHODS, default="GET")
    path = StrictCharField(max_length=500, default="/")
    headers = serializers.DictField(child=StrictCharField(allow_blank=True), required=False, default=dict)
    body = StrictCharField(required=False, allow_blank=True, default="", trim_whitespace=False)


class InvocationSerializer(serializers.ModelSerializer[Invocation]):
    class Meta:
        model = Invocation
        fields = [
            "id", "method", "path", "request_headers", "request_body", "status", "response_headers",
            "response_body", "duration_ms", "request_id", "logs", "error", "invoked_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class QuotaItemSerializer(serializers.Serializer[Any]):
    quota = serializers.CharField(help_text="The quota's field name, as in error details.")
    used = serializers.IntegerField()
    limit = serializers.IntegerField()
    unit = serializers.ChoiceField(choices=["count", "bytes", "millicores"])


class QuotaUsageSerializer(serializers.Serializer[Any]):
    suspended = serializers.BooleanField()
    items = QuotaItemSerializer(many=True)
