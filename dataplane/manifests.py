"""Fission objects (fission.io/v1) for a tenant, built as plain dicts by pure functions.

No Django, no I/O: the services layer turns models into the frozen specs below and hands the
resulting dicts to either backend (a real Fission cluster or ``runtime/``). Every builder returns
an object that validates against ``shared/fission-crds`` (Fission v1.27.0) and parses with
``runtime.objects.PARSERS``; inputs that would break FISSION.md section 1's rules raise
``InvalidManifest`` (a ValueError) here, before anything reaches a data plane.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runtime import captures
from runtime.captures import CAPTURE_ANNOTATION as CAPTURE_ANNOTATION  # its home; the portal's name
from runtime.objects import ENVIRONMENT_VARIABLES_ANNOTATION
from runtime.schedule import InvalidSchedule, Schedule

API_VERSION = "fission.io/v1"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "faas-portal"
TENANT_LABEL = "faas-portal/tenant"
FUNCTION_LABEL = "faas-portal/function"
# The Python version an Environment runs ("3.12"): the local runtime picks its interpreter by it;
# on a cluster the image decides and the annotation records what the portal chose.
PYTHON_VERSION_ANNOTATION = "faas-portal.io/python-version"
# A Function's asynchronous-invocation settings, read by whatever drives its async queue (the local
# runtime's runtime/events/asynchronous.py); Fission itself ignores them.
ASYNC_RETRIES_ANNOTATION = "faas-portal.io/async-retries"
ASYNC_MAX_EVENT_AGE_ANNOTATION = "faas-portal.io/async-max-event-age"
# A ConfigMap so marked (runtime.objects, its home) holds its Function's environment variables
# (environment_variables_manifest); the Function carries their digest, so that it changes with them.
ENVIRONMENT_VARIABLES_SHA256_ANNOTATION = "faas-portal.io/environment-variables-sha256"
_PYTHON_VERSION = re.compile(r"3\.[0-9]{1,2}")

# Set explicitly: an Environment created through the API without it gets 0 in Fission 1.27
# (FISSION.md section 1), which kills workers mid-request; 30 s lets in-flight calls finish.
TERMINATION_GRACE_PERIOD_S = 30
SPECIALIZATION_TIMEOUT_S = 120
BUILD_COMMAND = "build"  # the Python builder image has no /build, Fission's default
# Methods both Fission's CRD enum and the local router accept.
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_RESERVED_PATHS = ("/router-healthz", "/readyz", "/_version", "/auth/login")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FISSION_NAME = re.compile(r"(?P<function>.+)-(v\d+|draft)")
# The one rule for a trigger path: the API checks it (functions/services/triggers.py) and the
# manifests rely on it. URL characters ({name} for a path parameter), starting with '/', and no
# '..' anywhere: not as a segment, nor hidden in one ("..;", "..%2f").
_TRIGGER_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%{}/-]*")
# A path variable (``{id}``) as routers read it: one name may appear once in a path.
_PATH_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class InvalidManifest(ValueError):
    """An input no Fission object may hold: refused here, before anything reaches a data plane."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """A tenant's runtime: Fission Environment ``name`` (a DNS label) running Python
    ``python_version`` ("3.12"; None: whatever the image has)."""

    name: str
    image: str
    builder_image: str | None
    poolsize: int
    memory_mb: int | None
    cpu_millis: int | None
    python_version: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """A function's configuration as frozen into a version (or the draft)."""

    name: str
    environment: str
    entrypoint: str
    executor: Literal["poolmgr", "newdeploy"]
    min_scale: int
    max_scale: int
    target_cpu: int
    concurrency: int
    requests_per_pod: int
    timeout_s: int
    idle_timeout_s: int
    memory_mb: int | None
    cpu_millis: int | None
    async_retries: int = 2
    async_max_event_age_s: int = 21600
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    secrets: Sequence[str] = ()  # the tenant's Secrets and ConfigMaps it mounts, by name
    configmaps: Sequence[str] = ()


@dataclass(frozen=True)
class ArchiveRef:
    """Where the portal serves a built package archive, and its sha256 (lowercase hex)."""

    url: str
    sha256: str


@dataclass(frozen=True)
class TriggerSpec:
    """An HTTP route; ``path`` is relative to the tenant's ``/<slug>`` and ``target`` maps
    Fission function names to weights that sum to 100."""

    name: str
    methods: tuple[str, ...]
    path: str
    is_prefix: bool
    keep_prefix: bool
    target: dict[str, int]


# --- names and labels ---------------------------------------------------------------------------


def dns_label(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a DNS-1123 label (lowercase, digits, '-', <= 63); else ValueError."""
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidManifest(f"{what} {value!r} must be a DNS-1123 label (lowercase, digits, '-', <= 63)")
    return value


def fission_name(function: str, version: int | None) -> str:
    """Fission name of version N (``f-vN``) or of the draft (``f-draft``).

    Raises ValueError when the result is not a DNS-1123 label, e.g. a name too long for the suffix.
    """
    if version is not None and version < 0:
        raise InvalidManifest(f"version must be >= 0, got {version}")
    suffix = "draft" if version is None else f"v{version}"
    return dns_label(f"{function}-{suffix}", "Fission name")


def portal_function(fission_function: str) -> str:
    """Inverse of ``fission_name``: the portal function behind ``f-vN`` or ``f-draft``.

    Raises ValueError for a name ``fission_name`` cannot have produced.
    """
    match = _FISSION_NAME.fullmatch(fission_function)
    if match is None:
        raise InvalidManifest(f"{fission_function!r} is not a version or draft name")
    return match.group("function")


def labels(*, tenant: str | None, function: str | None = None) -> dict[str, str]:
    """The labels every generated object carries; ``None`` values are left out.

    Raises ValueError for a value Kubernetes would refuse (> 63 chars, or not [A-Za-z0-9._-]
    with alphanumeric ends).
    """
    result = {MANAGED_BY_LABEL: MANAGED_BY}
    for key, value in ((TENANT_LABEL, tenant), (FUNCTION_LABEL, function)):
        if value is not None:
            if not value or not _LABEL_VALUE.fullmatch(value):
                raise InvalidManifest(f"label {key}={value!r} is not a valid Kubernetes label value")
            result[key] = value
    return result


def _metadata(namespace: str, name: str, object_labels: dict[str, str]) -> dict[str, Any]:
    dns_label(namespace, "namespace")
    return {"name": dns_label(name), "namespace": namespace, "labels": object_labels}


def _object(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _ref(namespace: str, name: str) -> dict[str, str]:
    # Every reference stays in the object's own namespace (FISSION.md section 6).
    return {"namespace": namespace, "name": dns_label(name, "reference")}


def _tenant(namespace: str, tenant: str | None) -> str:
    # Without the slug, the namespace itself identifies the tenant (it is a valid label value).
    return tenant if tenant is not None else namespace


# --- resources -----------------------------------------------------------------------------------


def _positive(value: int, what: str) -> int:
    if value <= 0:
        raise InvalidManifest(f"{what} must be > 0, got {value}")
    return value


def resources(memory_mb: int | None, cpu_millis: int | None) -> dict[str, Any]:
    """Kubernetes requests and limits (equal, so quota accounting is exact), e.g. ``128Mi``/``250m``;
    ``{}`` when neither is set."""
    amounts: dict[str, str] = {}
    if memory_mb is not None:
        amounts["memory"] = f"{_positive(memory_mb, 'memory_mb')}Mi"
    if cpu_millis is not None:
        amounts["cpu"] = f"{_positive(cpu_millis, 'cpu_millis')}m"
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


# --- Environment, Package, Function ----------------------------------------------------------------


RUN_AS_USER = 10001  # any non-root uid: images that default to root still pass PSA ``restricted``


def restricted_podspec(container: str) -> dict[str, Any]:
    """What Pod Security ``restricted`` demands of a pod (tenant namespaces enforce it): non-root,
    RuntimeDefault seccomp, and for the runtime container (Fission names it after the Environment
    and merges this podspec into the pods it creates) no privilege escalation and no capabilities.
    Fission's own ``fetcher`` container gets the same through its Helm values (docs/kubernetes.md)."""
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": container,
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }


def environment_manifest(
    namespace: str, env: EnvironmentSpec, *, tenant: str | None = None
) -> dict[str, Any]:
    """Environment (spec.version 3, one function per container) for ``env``, annotated with its
    Python version (PYTHON_VERSION_ANNOTATION) when it has one."""
    if not env.image:
        raise InvalidManifest("environment image is required")
    if env.python_version is not None and not _PYTHON_VERSION.fullmatch(env.python_version):
        raise InvalidManifest(f"python version must look like 3.12, got {env.python_version!r}")
    if env.poolsize < 0:
        raise InvalidManifest(f"poolsize must be >= 0, got {env.poolsize}")
    spec: dict[str, Any] = {
        "version": 3,
        "runtime": {"image": env.image, "podspec": restricted_podspec(env.name)},
        "poolsize": env.poolsize,
        "terminationGracePeriod": TERMINATION_GRACE_PERIOD_S,
        "allowedFunctionsPerContainer": "single",
        "keeparchive": False,
    }
    if env.builder_image:
        spec["builder"] = {"image": env.builder_image, "command": BUILD_COMMAND}
    if limits := resources(env.memory_mb, env.cpu_millis):
        spec["resources"] = limits
    metadata = _metadata(namespace, env.name, labels(tenant=_tenant(namespace, tenant)))
    if env.python_version is not None:
        metadata["annotations"] = {PYTHON_VERSION_ANNOTATION: env.python_version}
    return _object("Environment", metadata, spec)


def package_manifest(
    namespace: str,
    name: str,
    environment: str,
    archive: ArchiveRef,
    *,
    tenant: str | None = None,
    function: str | None = None,
) -> dict[str, Any]:
    """Package with a prebuilt ``url`` deployment archive and no source, so nothing is built.

    No ``status``: the CRD enables the status subresource, and the API server drops status on
    create, so ``buildstatus: none`` there would be a no-op on a cluster.
    """
    if not archive.url:
        raise InvalidManifest("archive url is required")
    if not _SHA256.fullmatch(archive.sha256):
        raise InvalidManifest("archive sha256 must be 64 lowercase hex digits")
    deployment = {"type": "url", "url": archive.url, "checksum": {"type": "sha256", "sum": archive.sha256}}
    spec = {"environment": _ref(namespace, environment), "deployment": deployment}
    metadata = _metadata(namespace, name, labels(tenant=_tenant(namespace, tenant), function=function))
    return _object("Package", metadata, spec)


def _check_function(fn: FunctionSpec) -> None:
    if fn.executor not in ("poolmgr", "newdeploy"):
        raise InvalidManifest(f"executor must be poolmgr or newdeploy, got {fn.executor!r}")
    if fn.min_scale < 0 or fn.max_scale <= 0 or fn.max_scale < fn.min_scale:
        raise InvalidManifest(
            f"need 0 <= min_scale <= max_scale, max_scale > 0: {fn.min_scale}, {fn.max_scale}"
        )
    if not 0 <= fn.target_cpu <= 100:
        raise InvalidManifest(f"target_cpu must be between 0 and 100, got {fn.target_cpu}")
    for what in ("concurrency", "requests_per_pod", "timeout_s", "idle_timeout_s"):
        if getattr(fn, what) < 0:
            raise InvalidManifest(f"{what} must be >= 0")


def _strategy(fn: FunctionSpec) -> dict[str, Any]:
    # Both fields explicit: nothing on the server defaults ExecutorType (FISSION.md section 1).
    return {
        "StrategyType": "execution",
        "ExecutionStrategy": {
            "ExecutorType": fn.executor,
            "MinScale": fn.min_scale,
            "MaxScale": fn.max_scale,
            "TargetCPUPercent": fn.target_cpu,
            "SpecializationTimeout": SPECIALIZATION_TIMEOUT_S,
        },
    }


def function_manifest(
    namespace: str,
    name: str,
    fn: FunctionSpec,
    package: str,
    package_resource_version: str,
    *,
    tenant: str | None = None,
    function: str | None = None,
) -> dict[str, Any]:
    """Function ``name`` running ``fn`` from Package ``package``.

    ``package_resource_version`` must change whenever the package's archive does: running
    workers re-specialize only when it changes. Labelled with the portal function ``function``
    (default ``fn.name``).
    """
    _check_function(fn)
    spec: dict[str, Any] = {
        "environment": _ref(namespace, fn.environment),
        "package": {
            "packageref": {**_ref(namespace, package), "resourceversion": package_resource_version},
            "functionName": fn.entrypoint,
        },
        "InvokeStrategy": _strategy(fn),
        "functionTimeout": fn.timeout_s,
        "idletimeout": fn.idle_timeout_s,
        "concurrency": fn.concurrency,
        "requestsPerPod": fn.requests_per_pod,
        "secrets": [_ref(namespace, secret) for secret in fn.secrets],
        "configmaps": [
            *(_ref(namespace, configmap) for configmap in fn.configmaps),
            *([_ref(namespace, environment_variables_name(name))] if fn.environment_variables else []),
        ],
    }
    if limits := resources(fn.memory_mb, fn.cpu_millis):
        spec["resources"] = limits
    owner = function if function is not None else fn.name
    metadata = _metadata(namespace, name, labels(tenant=_tenant(namespace, tenant), function=owner))
    metadata["annotations"] = {
        ASYNC_RETRIES_ANNOTATION: str(fn.async_retries),
        ASYNC_MAX_EVENT_AGE_ANNOTATION: str(fn.async_max_event_age_s),
    }
    if fn.environment_variables:  # the Function changes with its variables: workers re-specialize
        digest = hashlib.sha256(json.dumps(dict(fn.environment_variables), sort_keys=True).encode())
        metadata["annotations"][ENVIRONMENT_VARIABLES_SHA256_ANNOTATION] = digest.hexdigest()
    return _object("Function", metadata, spec)


def version_manifests(
    namespace: str,
    function: str,
    version: int | None,
    fn: FunctionSpec,
    archive: ArchiveRef,
    *,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """[Package, Function], both named ``fission_name(function, version)`` and labelled with
    the portal function ``function``.

    The Function's package resourceversion is ``archive.sha256[:12]``: a new archive (a rebuilt
    draft) changes it, so workers specialized on the old code are replaced; the same archive
    yields the same objects, so applying twice changes nothing.
    """
    name = fission_name(function, version)
    package = package_manifest(namespace, name, fn.environment, archive, tenant=tenant, function=function)
    func = function_manifest(namespace, name, fn, name, archive.sha256[:12], tenant=tenant, function=function)
    if not fn.environment_variables:
        return [package, func]
    variables = environment_variables_manifest(namespace, name, fn.environment_variables, tenant=tenant,
                                               function=function)  # fmt: skip
    return [package, variables, func]


def environment_variables_name(function_object: str) -> str:
    """The ConfigMap holding Function ``function_object``'s environment variables."""
    return f"{function_object}-env"


def environment_variables_manifest(namespace: str, function_object: str, variables: Mapping[str, str], *,
                                   tenant: str | None = None, function: str) -> dict[str, Any]:  # fmt: skip
    """The ConfigMap of Function ``function_object``'s environment variables, marked
    ``ENVIRONMENT_VARIABLES_ANNOTATION``: the local runtime puts its data in the function's
    process environment; Fission mounts it as files (/configs/<namespace>/<name>/<NAME>)."""
    name = environment_variables_name(function_object)
    metadata = _metadata(namespace, name, labels(tenant=_tenant(namespace, tenant), function=function))
    metadata["annotations"] = {ENVIRONMENT_VARIABLES_ANNOTATION: "true"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(variables)}


# --- HTTPTrigger -----------------------------------------------------------------------------------


def tenant_route(tenant_slug: str, path: str) -> str:
    """``/<tenant_slug><path>``: every route of a tenant lives under its own first segment.

    Raises InvalidManifest for a path outside the rule of _TRIGGER_PATH (or with '//'), or one
    that lands on a path the router reserves.
    """
    dns_label(tenant_slug, "tenant slug")
    if not _TRIGGER_PATH.fullmatch(path) or ".." in path or "//" in path:
        raise InvalidManifest(
            f"trigger path {path!r} must start with '/', use URL characters and contain no '..' or '//'"
        )
    names = _PATH_VARIABLE.findall(path)
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise InvalidManifest(f"trigger path {path!r} names the variable {{{twice[0]}}} more than once")
    route = f"/{tenant_slug}{path}"
    if route.startswith("/fission-function/") or route.rstrip("/") in _RESERVED_PATHS:
        raise InvalidManifest(f"route {route!r} is reserved by the router")
    return route


def _methods(methods: Iterable[str]) -> list[str]:
    # The CRD declares methods a set: duplicates would be refused, so keep the first of each.
    result = list(dict.fromkeys(method.upper() for method in methods))
    if not result:
        raise InvalidManifest("a trigger needs at least one method: an empty set matches nothing")
    if unknown := [method for method in result if method not in HTTP_METHODS]:
        raise InvalidManifest(f"unsupported methods {unknown}; allowed: {list(HTTP_METHODS)}")
    return result


def function_ref(target: Mapping[str, int]) -> dict[str, Any]:
    """``{type: name}`` for a single target at 100, else ``{type: function-weights}``.

    Raises ValueError unless the weights are integers >= 0 summing to 100 over DNS-label names.
    """
    if not target:
        raise InvalidManifest("a trigger needs a target function")
    for name, weight in target.items():
        dns_label(name, "target function")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise InvalidManifest(f"weight of {name!r} must be an integer >= 0, got {weight!r}")
    if sum(target.values()) != 100:
        raise InvalidManifest(f"weights must sum to 100, got {sum(target.values())}")
    if len(target) == 1:
        return {"type": "name", "name": next(iter(target))}
    # The CRD requires ``name`` for both types; Fission itself writes "" for weighted refs.
    return {"type": "function-weights", "name": "", "functionweights": dict(target)}


def _trigger_function(target: Mapping[str, int]) -> str | None:
    """The portal function all targets belong to, or None when they differ or are not ours."""
    try:
        owners = {portal_function(name) for name in target}
    except ValueError:
        return None
    return owners.pop() if len(owners) == 1 else None


class CapturePolicy(captures.CapturePolicy):
    """Which failed calls of a trigger the local runtime captures for replay (runtime/captures.py
    reads it back from ``CAPTURE_ANNOTATION``): ``function`` (the portal function whose capture
    stream they go to), ``codes`` (statuses such as 500, or classes "1xx".."5xx"; default 5xx),
    ``max_requests`` (1-1000, newest kept), ``max_body_bytes`` (0-1 MiB per body) and
    ``retention_s`` (60 s to 30 days). A frozen dataclass; out-of-bounds values raise
    InvalidManifest naming the field. ``to_annotation()`` is the annotation's value."""

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ValueError as exc:
            raise InvalidManifest(f"capture policy: {exc}") from None


def httptrigger_manifest(
    namespace: str, tenant_slug: str, trigger: TriggerSpec, *, function: str | None = None,
    capture: CapturePolicy | None = None,
) -> dict[str, Any]:  # fmt: skip
    """HTTPTrigger routing ``/<tenant_slug><trigger.path>`` to ``trigger.target``.

    ``function`` labels the trigger (defaults to the portal function behind the targets). When
    the route is a prefix, ``relativeurl`` is still written, empty, as Fission itself does: the
    CRD's validation rules read it without checking that it is present. ``capture`` (None: no
    capture) becomes the ``CAPTURE_ANNOTATION``; Fission ignores it, the local runtime captures
    the failed calls it names.
    """
    route = tenant_route(tenant_slug, trigger.path)
    spec: dict[str, Any] = {
        "relativeurl": "" if trigger.is_prefix else route,
        "methods": _methods(trigger.methods),
        "keepPrefix": trigger.keep_prefix,
        "functionref": function_ref(trigger.target),
    }
    if trigger.is_prefix:
        spec["prefix"] = route
    owner = function if function is not None else _trigger_function(trigger.target)
    metadata = _metadata(namespace, trigger.name, labels(tenant=tenant_slug, function=owner))
    if capture is not None:
        metadata["annotations"] = {CAPTURE_ANNOTATION: capture.to_annotation()}
    return _object("HTTPTrigger", metadata, spec)


# --- event sources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeTriggerSpec:
    """A schedule in Fission's cron syntax calling one Fission function (``target``)."""

    name: str
    cron: str
    method: str
    subpath: str
    target: str


@dataclass(frozen=True)
class QueueTriggerSpec:
    """A message-queue consumer calling one Fission function (``target``); ``connection`` is the
    broker's secret (KEDA's keys), which goes into a Secret the trigger names."""

    name: str
    mq_type: str
    topic: str
    target: str
    resp_topic: str = ""
    error_topic: str = ""
    max_retries: int = 3
    content_type: str = "application/json"
    polling_interval: int = 30
    cooldown_period: int = 300
    min_replicas: int = 0
    max_replicas: int = 10
    metadata: Mapping[str, str] | None = None
    connection: Mapping[str, str] | None = None


QUEUE_TYPES = ("nats-jetstream", "rabbitmq", "redis", "kafka")
_SUBPATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


def check_cron(cron: str) -> str:
    """``cron`` if Fission's timer would run it (robfig/cron syntax); else InvalidManifest saying why.
    Fission's server stores any string and its timer fails later: the portal checks first."""
    try:
        Schedule.parse(cron)
    except InvalidSchedule as exc:
        raise InvalidManifest(f"cron {cron!r}: {exc}") from None
    return cron


def check_subpath(subpath: str) -> str:
    if not _SUBPATH.fullmatch(subpath) or ".." in subpath:
        raise InvalidManifest(
            f"subpath {subpath!r} must start with '/', use URL characters and contain no '..'"
        )
    return subpath


def timetrigger_manifest(
    namespace: str, tenant_slug: str, trigger: TimeTriggerSpec, *, function: str
) -> dict[str, Any]:
    """TimeTrigger ``trigger.name`` calling ``trigger.target`` on its schedule."""
    if trigger.method not in HTTP_METHODS:
        raise InvalidManifest(f"method {trigger.method!r} must be one of {list(HTTP_METHODS)}")
    spec = {
        "cron": check_cron(trigger.cron),
        "method": trigger.method,
        "subpath": check_subpath(trigger.subpath),
        "functionref": {"type": "name", "name": dns_label(trigger.target, "target function")},
    }
    metadata = _metadata(namespace, trigger.name, labels(tenant=tenant_slug, function=function))
    return _object("TimeTrigger", metadata, spec)


# The names the portal gives objects of its own: a tenant's Secret or ConfigMap may not end so.
PORTAL_SECRET_SUFFIX = "-broker"  # noqa: S105 - a name suffix (queue_secret_name), not a secret
PORTAL_CONFIGMAP_SUFFIX = "-env"  # environment_variables_name


def tenant_secret_manifest(
    namespace: str, name: str, data: Mapping[str, str], *, tenant: str
) -> dict[str, Any]:
    """The tenant's Secret ``name`` (``data``: key -> text, sent base64 as core/v1 wants)."""
    metadata = _metadata(namespace, dns_label(name, "secret name"), labels(tenant=_tenant(namespace, tenant)))
    encoded = {key: base64.b64encode(value.encode()).decode("ascii") for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": encoded}


def tenant_configmap_manifest(
    namespace: str, name: str, data: Mapping[str, str], *, tenant: str
) -> dict[str, Any]:
    """The tenant's ConfigMap ``name``."""
    metadata = _metadata(
        namespace, dns_label(name, "config map name"), labels(tenant=_tenant(namespace, tenant))
    )
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}


def queue_secret_name(trigger: str) -> str:
    return dns_label(f"{trigger}-broker", "secret name")


def queue_metadata(trigger: QueueTriggerSpec) -> dict[str, str]:
    """KEDA's scaler metadata for the trigger: the user's, with what each scaler needs filled in
    from the trigger (the queue or list is the topic; a consumer group or durable consumer is
    named after the trigger)."""
    given = dict(trigger.metadata or {})
    defaults = {
        "kafka": {"topic": trigger.topic, "consumerGroup": trigger.name, "lagThreshold": "10"},
        # The stream is the user's (a JetStream stream is named apart from its subjects).
        "nats-jetstream": {"consumer": trigger.name, "account": "$G"},
        "rabbitmq": {"queueName": trigger.topic, "mode": "QueueLength", "value": "10"},
        "redis": {"listName": trigger.topic, "listLength": "10"},
    }[trigger.mq_type]
    return {**defaults, **given}


def queuetrigger_manifests(namespace: str, tenant_slug: str, trigger: QueueTriggerSpec, *,
                           function: str) -> list[dict[str, Any]]:  # fmt: skip
    """The broker's Secret (when the trigger has a connection), then the MessageQueueTrigger."""
    if trigger.mq_type not in QUEUE_TYPES:
        raise InvalidManifest(f"message queue type {trigger.mq_type!r} must be one of {list(QUEUE_TYPES)}")
    if not trigger.topic:
        raise InvalidManifest("a message queue trigger needs a topic")
    if not 0 <= trigger.min_replicas <= trigger.max_replicas or trigger.max_replicas < 1:
        raise InvalidManifest("replicas: 0 <= min <= max and max >= 1")
    object_labels = labels(tenant=tenant_slug, function=function)
    objects = []
    spec: dict[str, Any] = {
        "messageQueueType": trigger.mq_type,
        "mqtkind": "keda",
        "topic": trigger.topic,
        "respTopic": trigger.resp_topic,
        "errorTopic": trigger.error_topic,
        "maxRetries": trigger.max_retries,
        "contentType": trigger.content_type,
        "pollingInterval": trigger.polling_interval,
        "cooldownPeriod": trigger.cooldown_period,
        "minReplicaCount": trigger.min_replicas,
        "maxReplicaCount": trigger.max_replicas,
        "metadata": queue_metadata(trigger),
        "functionref": {"type": "name", "name": dns_label(trigger.target, "target function")},
    }
    if trigger.connection:
        secret = queue_secret_name(trigger.name)
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(namespace, secret, object_labels),
            "stringData": {str(k): str(v) for k, v in trigger.connection.items()},
        })  # fmt: skip
        spec["secret"] = secret
    objects.append(_object("MessageQueueTrigger", _metadata(namespace, trigger.name, object_labels), spec))
    return objects


# --- a whole tenant --------------------------------------------------------------------------------

VersionInput = tuple[str, int | None, FunctionSpec, ArchiveRef]
"""(portal function, version number or None for the draft, its spec, its archive)."""


def _references(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every object ``obj`` refers to."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "Package":
        return [("Environment", spec["environment"]["name"])]
    if obj["kind"] == "Function":
        return [
            ("Environment", spec["environment"]["name"]),
            ("Package", spec["package"]["packageref"]["name"]),
            *(("ConfigMap", ref["name"]) for ref in spec.get("configmaps") or []),
            *(("Secret", ref["name"]) for ref in spec.get("secrets") or []),
        ]
    if obj["kind"] in ("TimeTrigger", "MessageQueueTrigger"):
        return [("Function", spec["functionref"]["name"])]
    if obj["kind"] == "HTTPTrigger":
        ref = spec["functionref"]
        targets = ref.get("functionweights") or {ref["name"]: 100}
        return [("Function", name) for name in targets]
    return []


def _check_references(objects: Sequence[dict[str, Any]]) -> None:
    present: set[tuple[str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in present:
            raise InvalidManifest(f"duplicate {key[0]} {key[1]!r}")
        present.add(key)
    for obj in objects:
        for kind, name in _references(obj):
            if (kind, name) not in present:
                missing = f"{kind} {name!r}"
                raise InvalidManifest(
                    f"{obj['kind']} {obj['metadata']['name']!r} refers to missing {missing}"
                )


def tenant_manifests(
    namespace: str,
    tenant_slug: str,
    environments: Iterable[EnvironmentSpec],
    versions: Iterable[VersionInput],
    triggers: Iterable[TriggerSpec],
) -> list[dict[str, Any]]:
    """Every object of a tenant, ordered Environment, Package, Function, HTTPTrigger so that each
    object's references exist before it is applied.

    Raises ValueError on a duplicate name or a reference to an object not in the set.
    """
    envs = [environment_manifest(namespace, env, tenant=tenant_slug) for env in environments]
    pairs = [
        version_manifests(namespace, function, number, fn, archive, tenant=tenant_slug)
        for function, number, fn, archive in versions
    ]
    routes = [httptrigger_manifest(namespace, tenant_slug, trigger) for trigger in triggers]
    objects = [*envs, *(pair[0] for pair in pairs), *(pair[1] for pair in pairs), *routes]
    _check_references(objects)
    return objects
