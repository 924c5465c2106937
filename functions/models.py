"""Tenant-schema models: environments, functions, drafts, builds, versions, aliases,
triggers, deployments and invocations (DESIGN.md section 5)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# Fission names are DNS-1123 labels; a function name also gets "-v<N>" or "-draft".
dns_label = RegexValidator(
    r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1-40 lowercase letters, digits and '-', starting with a letter and not ending with '-'.",
)
entrypoint_validator = RegexValidator(
    r"^([A-Za-z_][A-Za-z0-9_]*)?(\.[A-Za-z_][A-Za-z0-9_]*)*$",
    "Use '' (main.main), 'func' (main.func) or 'package.module.func'.",
)
DEFAULT_IMAGE = "ghcr.io/fission/python-env:latest"
DEFAULT_BUILDER = "ghcr.io/fission/python-builder:latest"


class Executor(models.TextChoices):
    POOLMGR = "poolmgr", "Pool manager (warm pool)"
    NEWDEPLOY = "newdeploy", "New deployment (dedicated, scales)"


class Environment(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[dns_label])
    image = models.CharField(max_length=255, default=DEFAULT_IMAGE)
    builder_image = models.CharField(max_length=255, blank=True, default=DEFAULT_BUILDER)
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
    name = models.CharField(max_length=40, unique=True, validators=[dns_label])
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="functions")
    entrypoint = models.CharField(
        max_length=200, blank=True, default="main", validators=[entrypoint_validator]
    )
    executor = models.CharField(max_length=16, choices=Executor.choices, default=Executor.POOLMGR)
    min_scale = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    max_scale = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    target_cpu = models.PositiveSmallIntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    concurrency = models.PositiveIntegerField(
        # Fission's own default is 500 pods; a tenant's quota reserves concurrency x memory.
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(5000)],
    )
    requests_per_pod = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    timeout_s = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    idle_timeout_s = models.PositiveIntegerField(
        default=120, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    memory_mb = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(64)])
    cpu_millis = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(10)])
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


class Alias(models.Model):
    """A name for one version, or a split between two (``canary_weight`` % to the canary)."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=30, validators=[dns_label])
    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="+")
    canary_version = models.ForeignKey(
        Version, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    canary_weight = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
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


class Trigger(models.Model):
    """An HTTP trigger, served under ``/<tenant>/`` on the router."""

    function = models.ForeignKey(Function, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=50, unique=True, validators=[dns_label])
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
    request_id = models.CharField(max_length=64)
    logs = models.JSONField(default=list)
    error = models.TextField(blank=True)
    invoked_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"
