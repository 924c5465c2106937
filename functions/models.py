"""Tenant-schema models: environments, functions, drafts, builds, versions, aliases,
triggers, deployments and invocations (DESIGN.md section 5)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from core.crypto import Keyring
from core.names import name_validator
from functions import config, runtimes


class Environment(models.Model):
    """A Python runtime of the tenant: Fission's Environment of the same name. ``image`` and
    ``builder_image`` follow ``runtime_version`` unless the tenant set its own (runtimes.follow);
    ``builder_image`` "" means no builder."""

    name = models.CharField(max_length=40, unique=True, validators=[name_validator])
    runtime_version = models.CharField(
        max_length=8, choices=runtimes.CHOICES, default=runtimes.DEFAULT_VERSION
    )
    image = models.CharField(
        max_length=255, default=runtimes.default_image, validators=[runtimes.image_validator]
    )
    builder_image = models.CharField(
        max_length=255, blank=True, default=runtimes.default_builder_image,
        validators=[runtimes.image_validator],
    )  # fmt: skip
    poolsize = models.PositiveSmallIntegerField(default=3, validators=[MaxValueValidator(50)])
    memory_mb = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(64)])
    cpu_millis = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(10)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Function(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[name_validator])
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="functions")
    entrypoint = config.model_field("entrypoint")
    executor = config.model_field("executor")
    min_scale = config.model_field("min_scale")
    max_scale = config.model_field("max_scale")
    target_cpu = config.model_field("target_cpu")
    concurrency = config.model_field("concurrency")
    requests_per_pod = config.model_field("requests_per_pod")
    timeout_s = config.model_field("timeout_s")
    idle_timeout_s = config.model_field("idle_timeout_s")
    memory_mb = config.model_field("memory_mb")
    cpu_millis = config.model_field("cpu_millis")
    async_retries = config.model_field("async_retries")
    async_max_event_age_s = config.model_field("async_max_event_age_s")
    environment_variables = config.model_field("environment_variables")
    secrets = config.model_field("secrets")
    configmaps = config.model_field("configmaps")
    # Replay's capture of failed calls (releases/, dataplane.manifests.CapturePolicy): the statuses
    # captured (500, or a class such as "5xx"; none: off), how many are kept and how much of each
    # body. Not part of a version: it is how the function's routes are watched, whatever serves them.
    capture_codes = models.JSONField(default=list, blank=True)
    capture_max_requests = models.PositiveSmallIntegerField(
        default=50, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    capture_max_body_bytes = models.PositiveIntegerField(
        default=65536, validators=[MaxValueValidator(1024 * 1024)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_scale__gte=models.F("min_scale")), name="function_max_scale_gte_min"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.max_scale is not None and self.min_scale is not None and self.max_scale < self.min_scale:
            raise ValidationError({"max_scale": "MaxScale must be at least MinScale."})


class Draft(models.Model):
    """The editable code of a function: inline files, or an uploaded zip."""

    function = models.OneToOneField(Function, on_delete=models.CASCADE, related_name="draft")
    files = models.JSONField(default=dict, blank=True)  # path -> text (editor or single .py)
    archive = models.BinaryField(null=True, blank=True)  # an uploaded zip, already checked
    archive_name = models.CharField(max_length=255, blank=True)
    revision = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"draft of {self.function_id} r{self.revision}"


class BuildState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Build(models.Model):
    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="builds")
    draft_revision = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=BuildState.choices, default=BuildState.QUEUED)
    reason = models.TextField(blank=True)
    log = models.TextField(blank=True)
    archive = models.FileField(upload_to="packages/", null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    # The environment's Python it was built for (checked and pip-installed with): a draft built
    # for another version is built again (wheels are per interpreter). "" for builds before this.
    python_version = models.CharField(max_length=8, blank=True)
    # The draft it was built from, as it was (what a version's diff and restore read): its
    # inline files, or its uploaded zip. Empty for builds made before the draft was kept.
    source_files = models.JSONField(default=dict, blank=True)
    source_archive = models.BinaryField(null=True, blank=True)
    source_archive_name = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"build {self.pk} ({self.state})"


class Version(models.Model):
    """Version N of a function: an immutable build plus its frozen configuration."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    build = models.ForeignKey(Build, on_delete=models.PROTECT, related_name="versions")
    config = models.JSONField()
    description = models.CharField(max_length=200, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["function", "number"], name="version_unique_number")]

    def __str__(self) -> str:
        return f"{self.function.name} v{self.number}"

    @property
    def settings(self) -> dict[str, Any]:
        """The frozen configuration, read as today's settings (functions/config.py: thawed)."""
        return config.thawed(self.config)


class TenantObject(models.Model):
    """What a Secret and a ConfigMap of the tenant share: a name functions refer to, who made it."""

    name = models.CharField(max_length=63, unique=True, validators=[config.object_name_validator])
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Secret(TenantObject):
    """A Secret of the tenant: named values that functions naming it read as files
    (/secrets/<namespace>/<name>/<key>). The values are stored encrypted (``ciphertext``: the
    JSON object of keys to values under core.crypto's keyring) and never shown: ``keys`` are."""

    ciphertext = models.BinaryField()
    keys = models.JSONField(default=list)

    def set_values(self, values: dict[str, str]) -> None:
        """Encrypt ``values`` into ``ciphertext`` (under the keyring's first key); ``keys`` follow."""
        self.ciphertext = Keyring.from_settings().encrypt(json.dumps(values, sort_keys=True).encode())
        self.keys = sorted(values)

    def values(self) -> dict[str, str]:
        """The values, for the data plane only (never an answer, a page or a log)."""
        values: dict[str, str] = json.loads(Keyring.from_settings().decrypt(bytes(self.ciphertext)))
        return values


class ConfigMap(TenantObject):
    """A ConfigMap of the tenant: named values, not secret, that functions naming it read as
    files (/configs/<namespace>/<name>/<key>)."""

    data = models.JSONField(default=dict)


class Alias(models.Model):
    """A name for one version, or a split between two (``canary_weight`` % to the canary)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=30, validators=[name_validator])
    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="+")
    canary_version = models.ForeignKey(
        Version, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    canary_weight = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    # The id of the rollout (releases.Rollout) moving this alias, None when none is: only that
    # rollout changes or deletes it meanwhile. An id, not a key: releases sits above functions.
    held_by_rollout = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="alias_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight if self.canary_version_id else 100

    def weights(self) -> dict[int, int]:
        """Version number -> weight, summing to 100."""
        if self.canary_version_id is None or self.canary_weight == 0:
            return {self.version.number: 100}
        assert self.canary_version is not None
        return {self.version.number: 100 - self.canary_weight, self.canary_version.number: self.canary_weight}


class TargetKind(models.TextChoices):
    ALIAS = "alias"
    VERSION = "version"
    DRAFT = "draft"


class Targeted(models.Model):
    """What a trigger calls: an alias, a version or the draft (``TargetKind``)."""

    target_kind = models.CharField(max_length=16, choices=TargetKind.choices, default=TargetKind.DRAFT)
    alias = models.ForeignKey(
        Alias, on_delete=models.PROTECT, null=True, blank=True, related_name="%(class)ss"
    )
    version = models.ForeignKey(
        Version, on_delete=models.PROTECT, null=True, blank=True, related_name="%(class)ss"
    )

    class Meta:
        abstract = True


class Trigger(models.Model):
    """An HTTP trigger, served under ``/<tenant>/`` on the router."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=50, unique=True, validators=[name_validator])
    methods = models.JSONField(default=list)
    path = models.CharField(max_length=200)
    is_prefix = models.BooleanField(default=False)
    keep_prefix = models.BooleanField(default=False)
    target_kind = models.CharField(max_length=16, choices=TargetKind.choices, default=TargetKind.DRAFT)
    alias = models.ForeignKey(Alias, on_delete=models.PROTECT, null=True, blank=True, related_name="triggers")
    version = models.ForeignKey(
        Version, on_delete=models.PROTECT, null=True, blank=True, related_name="triggers"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["path", "is_prefix"], name="trigger_unique_path")]

    def __str__(self) -> str:
        return self.name


class DeploymentState(models.TextChoices):
    QUEUED = "queued"
    BUILDING = "building"
    APPLYING = "applying"
    WAITING = "waiting"
    LIVE = "live"
    FAILED = "failed"


# A deployment in one of these states is over: nothing runs it again.
FINAL_DEPLOYMENT_STATES = (DeploymentState.LIVE, DeploymentState.FAILED)


class Deployment(models.Model):
    """Applying a function's manifests after a change; every step is recorded."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="deployments")
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.QUEUED)
    reason = models.TextField(blank=True)
    cause = models.CharField(max_length=200, blank=True)
    steps = models.JSONField(default=list)
    build = models.ForeignKey(Build, on_delete=models.SET_NULL, null=True, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"deployment {self.pk} ({self.state})"


class SavedEvent(models.Model):
    """A named test call of a function, saved from its test panel and shared by the tenant's
    members (as Lambda's shareable test events): what to send, never an answer."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="saved_events")
    name = models.CharField(max_length=40, validators=[name_validator])
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True)
    saved_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["function", "name"], name="saved_event_unique_name")]

    def __str__(self) -> str:
        return f"{self.name}: {self.method} {self.path}"


class Invocation(models.Model):
    """A test call from the portal, and what came back (status, body, logs)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="invocations")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField(blank=True)
    status = models.PositiveSmallIntegerField(null=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True)
    duration_ms = models.FloatField(null=True)
    # What the local runtime's router measured (its Server-Timing header, runtime/timing.py); null
    # when it said nothing (Fission's router never does) or when there was no answer.
    router_ms = models.FloatField(
        null=True, help_text="The router's whole time for the call, in ms; null when not said."
    )
    function_ms = models.FloatField(
        null=True, help_text="The function's time, in ms, as the router measured it; null when not said."
    )
    request_id = models.CharField(max_length=64)
    logs = models.JSONField(default=list)
    error = models.TextField(blank=True)
    invoked_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


class TimeTrigger(Targeted):
    """A schedule (Fission's cron syntax, runtime/events/schedule.py) calling the function."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="time_triggers")
    name = models.CharField(max_length=50, unique=True, validators=[name_validator])
    cron = models.CharField(max_length=120)
    method = models.CharField(max_length=10, default="POST")
    subpath = models.CharField(max_length=200, default="/")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class QueueKind(models.TextChoices):
    NATS = "nats-jetstream", "NATS JetStream"
    RABBITMQ = "rabbitmq", "RabbitMQ"
    REDIS = "redis", "Redis"
    KAFKA = "kafka", "Kafka (Kubernetes only)"


class QueueTrigger(Targeted):
    """A message-queue consumer (Fission's MessageQueueTrigger, ``mqtkind: keda``). ``connection``
    holds the broker's secret keys (KEDA's names per broker); it is written, never read back."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="queue_triggers")
    name = models.CharField(max_length=50, unique=True, validators=[name_validator])
    mq_type = models.CharField(max_length=20, choices=QueueKind.choices)
    topic = models.CharField(max_length=200)
    resp_topic = models.CharField(max_length=200, blank=True)
    error_topic = models.CharField(max_length=200, blank=True)
    max_retries = models.PositiveSmallIntegerField(default=3, validators=[MaxValueValidator(10)])
    content_type = models.CharField(max_length=100, default="application/json")
    polling_interval = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    cooldown_period = models.PositiveIntegerField(default=300, validators=[MaxValueValidator(86400)])
    min_replicas = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    max_replicas = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    metadata = models.JSONField(default=dict, blank=True)
    connection = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_replicas__gte=models.F("min_replicas")), name="queuetrigger_replicas"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SpecObject(models.Model):
    """An object a Fission spec folder created (functions/fission_spec): its kind and name, and
    the folder's deployment-config uid, which is how Fission's ``spec apply`` tracks what a folder
    owns. ``delete`` removes only those; a row whose object is gone by other means is ignored."""

    spec_uid = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=32)
    name = models.CharField(max_length=63)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="spec_object_unique")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} of spec {self.spec_uid}"
