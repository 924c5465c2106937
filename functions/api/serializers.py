from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from core.api.fields import StrictCharField
from core.names import name_validator
from functions import config, runtimes, selectors, starters
from functions.models import (
    Alias,
    Build,
    ConfigMap,
    Deployment,
    Environment,
    Function,
    Invocation,
    QueueKind,
    QueueTrigger,
    Secret,
    TargetKind,
    TimeTrigger,
    Trigger,
    Version,
)  # fmt: skip
from functions.services import events, invocations
from functions.services.triggers import METHODS

_IMAGE_HELP = (
    'The runtime image. Left out or "": the image of runtime_version, which then follows the version '
    "when it changes; so does any of the portal's own Python images, even sent back unchanged beside "
    "a new runtime_version. Any other image is your own: it is kept when runtime_version changes (the "
    "version still chooses the Python of the local runtime; on a cluster the image decides)."
)
_BUILDER_HELP = (
    'The Fission builder image, with the same rule as image; "" means no builder (the portal builds '
    "packages itself, so a builder only serves Fission's own builds)."
)


class _VersionField(serializers.ChoiceField):
    """A version is a string: the number 3.1 is not "3.10", so no number passes for one."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


# Read and change (name and usage are read-only); EnvironmentCreateSerializer adds the name.
# (A comment: a docstring would become the OpenAPI description of both.)
class EnvironmentSerializer(serializers.ModelSerializer[Environment]):
    runtime_version = _VersionField(
        choices=runtimes.VERSIONS, required=False,
        help_text=f"The Python version (default {runtimes.DEFAULT_VERSION}, as Fission's image). Changing it "
        "redeploys the functions that use the environment.",
    )  # fmt: skip
    image = StrictCharField(max_length=255, required=False, allow_blank=True, help_text=_IMAGE_HELP)
    builder_image = StrictCharField(max_length=255, required=False, allow_blank=True, help_text=_BUILDER_HELP)
    functions = serializers.SerializerMethodField(
        help_text="The functions that deploy this environment; it cannot be deleted while there are any."
    )

    class Meta:
        model = Environment
        fields = ["name", "runtime_version", "image", "builder_image", "poolsize", "memory_mb", "cpu_millis",
                  "functions", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["name", "created_at", "updated_at"]

    def get_functions(self, environment: Environment) -> list[str]:
        usage = self.context.get("usage")
        if usage is None:  # one object: ask for it alone
            usage = selectors.environment_usage()
        return list(usage.get(environment.name, []))


class EnvironmentCreateSerializer(EnvironmentSerializer):
    name = StrictCharField(max_length=40, validators=[name_validator])


class FunctionSerializer(serializers.ModelSerializer[Function]):
    environment = serializers.SlugRelatedField(
        slug_field="name", queryset=Environment.objects.all(), required=False
    )
    last_deployment_state = serializers.CharField(read_only=True, allow_null=True, default=None)
    environment_variables = config.EnvironmentVariablesField(required=False)

    class Meta:
        model = Function
        fields = ["name", "environment", *config.NAMES, "last_deployment_state", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at", "last_deployment_state"]


def function_rows_shown(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """FunctionSerializer's representation of ``rows`` (selectors.function_rows), written out
    directly: DRF's field-by-field serialization of a long list costs more than the rest of its
    request (bench/pages.py). The database already holds each field as the API shows it (text,
    numbers or null, JSON) but the environment (its name is ``environment_name``) and the times
    (DRF's ISO 8601 in the current time zone, "Z" for UTC). functions/tests/test_list_queries.py
    checks that both say the same of functions that set every setting."""
    zone = timezone.get_current_timezone()
    return [
        {
            "name": row["name"],
            "environment": row["environment_name"],
            **{name: row[name] for name in config.NAMES},
            "last_deployment_state": row["last_deployment_state"],
            "created_at": _iso_8601(row["created_at"], zone),
            "updated_at": _iso_8601(row["updated_at"], zone),
        }
        for row in rows
    ]


def _iso_8601(moment: datetime, zone: tzinfo) -> str:
    """As DRF's DateTimeField shows an aware time (its default ISO 8601 format)."""
    text = moment.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
    starter = serializers.ChoiceField(
        choices=starters.CHOICES, required=False, write_only=True,
        help_text="The code the draft starts from (functions/starters.py); hello by default.",
    )  # fmt: skip


class FunctionUpdateSerializer(FunctionSettingsSerializer):
    environment = serializers.SlugRelatedField(
        slug_field="name", queryset=Environment.objects.all(), required=False
    )


class ProblemSerializer(serializers.Serializer[Any]):
    """A file that does not compile with the environment's Python (functions.compilecheck)."""

    file = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    column = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
    text = serializers.CharField(help_text="Python's report: the file and line, the source line, a caret.")


class CodeSerializer(serializers.Serializer[Any]):
    files = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False))
    revision = serializers.IntegerField(read_only=True)
    archive_name = serializers.CharField(read_only=True)
    problems = ProblemSerializer(
        many=True, read_only=True,
        help_text="Syntax errors of the draft's files with its environment's Python: the build will fail "
        "on them. The draft is saved all the same.",
    )  # fmt: skip


class UploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField()

    def validate_file(self, upload: Any) -> Any:
        """No NUL in a .py file: its text is stored, PostgreSQL stores no NUL in text (the save
        was a 500), and Python refuses such source anyway. A .zip is stored as bytes."""
        if (upload.name or "").endswith(".py") and b"\x00" in upload.read():
            raise serializers.ValidationError("A .py file cannot contain NUL bytes.")
        upload.seek(0)
        return upload


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


class FileDiffSerializer(serializers.Serializer[Any]):
    path = serializers.CharField()
    status = serializers.ChoiceField(choices=["added", "removed", "changed", "unchanged"])
    kind = serializers.ChoiceField(
        choices=["text", "binary", "too_large", "unreadable"],
        help_text="text: the diff shows it; binary (not UTF-8, or a NUL in it), too_large (over 512 KiB, "
        "or past the 8 MiB one comparison reads) and unreadable (a corrupt zip member): whether it changed "
        "is said, its content is not shown.",
    )
    diff = serializers.CharField(help_text="The unified diff; empty when unchanged or not text.")


class CompareSerializer(serializers.Serializer[Any]):
    base = serializers.CharField(help_text='"draft" or the version, as "v3".')
    head = serializers.CharField(help_text='"draft" or the version, as "v3".')
    files = FileDiffSerializer(many=True, help_text="Every file of either side, by path.")
    config = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField(allow_null=True), min_length=2, max_length=2),
        help_text="Each setting that differs (name, environment, the function's settings): [base's, head's].",
    )


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


class _EventTriggerSerializer(serializers.ModelSerializer[Any]):
    alias = serializers.CharField(source="alias.name", allow_null=True, required=False)
    version = serializers.IntegerField(source="version.number", allow_null=True, required=False)
    status = serializers.SerializerMethodField(
        help_text="What the data plane last did for the trigger (the local runtime keeps this record: "
        "fires or messages, the last request id, errors, a broker it cannot reach); null when it has none."
    )

    def get_status(self, trigger: Any) -> dict[str, Any] | None:
        return (self.context.get("statuses") or {}).get(trigger.name)


class TimeTriggerSerializer(_EventTriggerSerializer):
    next_fires = serializers.SerializerMethodField(help_text="The next five fire times (UTC).")

    class Meta:
        model = TimeTrigger
        fields = ["name", "cron", "method", "subpath", "target_kind", "alias", "version", "next_fires",
                  "status", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields

    def get_next_fires(self, trigger: TimeTrigger) -> list[str]:
        return [moment.isoformat() for moment in events.upcoming(trigger.cron)]


class _TargetFields(serializers.Serializer[Any]):
    target_kind = serializers.ChoiceField(
        choices=TargetKind.choices, required=False, default=TargetKind.DRAFT
    )
    alias = StrictCharField(required=False, allow_null=True, default=None)
    version = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)


class TimeTriggerWriteSerializer(_TargetFields):
    name = StrictCharField(max_length=50, validators=[name_validator])
    cron = StrictCharField(
        max_length=120,
        help_text="Fission's cron syntax: 5 fields, or 6 with leading seconds; @hourly, @daily, ...; "
        "@every 90s. Times are UTC.",
    )
    method = serializers.ChoiceField(choices=METHODS, required=False, default="POST")
    subpath = StrictCharField(max_length=200, required=False, default="/")


class QueueTriggerSerializer(_EventTriggerSerializer):
    connection_keys = serializers.SerializerMethodField(
        help_text="The names of the broker connection's keys; their values are never returned."
    )

    class Meta:
        model = QueueTrigger
        fields = ["name", "mq_type", "topic", "resp_topic", "error_topic", "max_retries", "content_type",
                  "polling_interval", "cooldown_period", "min_replicas", "max_replicas", "metadata",
                  "connection_keys", "target_kind", "alias", "version", "status", "created_at",
                  "updated_at"]  # fmt: skip
        read_only_fields = fields

    def get_connection_keys(self, trigger: QueueTrigger) -> list[str]:
        return sorted(trigger.connection)


_CONNECTION_HELP = (
    "The broker connection, as the keys of the Secret the trigger names (write-only): rabbitmq "
    "{host: amqp://user:pass@host:5672/vhost}, redis {address: host:port, password}, nats-jetstream "
    "{natsServer: nats://host:4222}, kafka KEDA's Kafka keys. Left out on an update: kept."
)


class QueueTriggerWriteSerializer(_TargetFields):
    name = StrictCharField(max_length=50, validators=[name_validator])
    mq_type = serializers.ChoiceField(choices=QueueKind.choices)
    topic = StrictCharField(max_length=200)
    resp_topic = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    error_topic = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    max_retries = serializers.IntegerField(required=False, default=3, min_value=0, max_value=10)
    content_type = StrictCharField(max_length=100, required=False, default="application/json")
    polling_interval = serializers.IntegerField(required=False, default=30, min_value=1, max_value=3600)
    cooldown_period = serializers.IntegerField(required=False, default=300, min_value=0, max_value=86400)
    min_replicas = serializers.IntegerField(required=False, default=0, min_value=0, max_value=100)
    max_replicas = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)
    metadata = serializers.DictField(
        child=StrictCharField(max_length=4096, allow_blank=True),
        required=False,
        default=dict,
        help_text="KEDA's scaler metadata for this broker.",
    )
    connection = serializers.DictField(
        child=StrictCharField(max_length=4096, allow_blank=True), required=False, allow_null=True,
        default=None, write_only=True, help_text=_CONNECTION_HELP,
    )  # fmt: skip


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    class Meta:
        model = Deployment
        fields = ["id", "state", "reason", "cause", "steps", "requested_by", "attempts", "created_at",
                  "updated_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class InvokeSerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(choices=METHODS, default="GET")
    # The pattern documents the service's rule; the detail names the path, as the service's does.
    path = StrictCharField(
        max_length=500, default="/", validators=[RegexValidator(invocations.PATH_RE, message="%(value)s")]
    )
    headers = serializers.DictField(
        child=StrictCharField(allow_blank=True, validators=[RegexValidator(invocations.HEADER_VALUE_RE)]),
        required=False, default=dict,
        help_text="Names are HTTP tokens (letters, digits, !#$%&'*+-.^_`|~); values printable ASCII.",
    )  # fmt: skip
    body = StrictCharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    invocation_type = serializers.ChoiceField(
        choices=invocations.INVOCATION_TYPES, default="RequestResponse", required=False,
        help_text="Event: queued and answered 202 with the request id at once (Lambda's InvocationType: "
        "Event); retried on failure up to the function's async_retries, then kept as a dead letter.",
    )  # fmt: skip


class DeadLetterSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="<target>/<data-plane id>: what redrive and purge take.")
    target = serializers.CharField(help_text='"draft" or the version number the invocation was for.')
    requestId = serializers.CharField()
    request = serializers.DictField(help_text="method, path (with the query), headers, body (text or null), "
                                    "bodyBase64")  # fmt: skip
    condition = serializers.ChoiceField(choices=["RetriesExhausted", "EventAgeExceeded"])
    attempts = serializers.IntegerField()
    error = serializers.DictField(
        allow_null=True, help_text="status and the first 4 KB of the last answer's body"
    )
    acceptedAt = serializers.DateTimeField()
    failedAt = serializers.DateTimeField()
    redriveOf = serializers.CharField(allow_null=True)


class DeadLetterPageSerializer(serializers.Serializer[Any]):
    items = DeadLetterSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="The cursor of the next page; null on the last.")
    total = serializers.IntegerField()


class DeadLetterSelectionSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(
        child=StrictCharField(max_length=200), required=False, allow_null=True, default=None,
        max_length=10000, help_text="The dead letters to act on; left out: all of the function's.",
    )  # fmt: skip


class RedriveSerializer(DeadLetterSelectionSerializer):
    to = StrictCharField(
        required=False, allow_null=True, default=None, max_length=20,
        help_text='"draft" or a version number: queue them for that code (their own target if left out).',
    )  # fmt: skip


class RedriveResultSerializer(serializers.Serializer[Any]):
    request_ids = serializers.ListField(child=serializers.CharField())


class PurgeResultSerializer(serializers.Serializer[Any]):
    purged = serializers.IntegerField()


class InvocationSerializer(serializers.ModelSerializer[Invocation]):
    class Meta:
        model = Invocation
        fields = [
            "id", "method", "path", "request_headers", "request_body", "status", "response_headers",
            "response_body", "duration_ms", "router_ms", "function_ms", "request_id", "logs", "error",
            "invoked_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class QuotaItemSerializer(serializers.Serializer[Any]):
    quota = serializers.CharField(help_text="The quota's field name, as in error details.")
    used = serializers.IntegerField()
    limit = serializers.IntegerField()
    unit = serializers.ChoiceField(choices=["count", "bytes", "millicores"])


@extend_schema_serializer(many=False)  # the answer of a viewset's `list`, yet one object
class QuotaUsageSerializer(serializers.Serializer[Any]):
    suspended = serializers.BooleanField()
    items = QuotaItemSerializer(many=True)


class SecretSerializer(serializers.ModelSerializer[Secret]):
    """A Secret as shown: its keys, never its values."""

    class Meta:
        model = Secret
        fields = ["name", "keys", "created_by", "created_at", "updated_at"]
        read_only_fields = fields


def _object_data(help_text: str) -> serializers.DictField:
    return serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), help_text=help_text
    )


class SecretCreateSerializer(serializers.Serializer[Any]):
    name = StrictCharField(max_length=63, validators=[config.object_name_validator])
    data = _object_data("Keys to values; written only: no answer ever holds a value.")  # type: ignore[assignment]  # a field (DRF pops it), not .data


class SecretUpdateSerializer(serializers.Serializer[Any]):
    data = _object_data("Every key and value (replaces them all); written only.")  # type: ignore[assignment]  # a field (DRF pops it), not .data


class ConfigMapSerializer(serializers.ModelSerializer[ConfigMap]):
    class Meta:
        model = ConfigMap
        fields = ["name", "data", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by", "created_at", "updated_at"]


class ConfigMapCreateSerializer(serializers.Serializer[Any]):
    name = StrictCharField(max_length=63, validators=[config.object_name_validator])
    data = _object_data("Keys to values.")  # type: ignore[assignment]  # a field (DRF pops it), not .data


class ConfigMapUpdateSerializer(serializers.Serializer[Any]):
    data = _object_data("Every key and value (replaces them all).")  # type: ignore[assignment]  # a field (DRF pops it), not .data
