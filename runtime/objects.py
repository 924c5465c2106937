"""Fission objects (fission.io/v1), plus the core/v1 ResourceQuota, LimitRange, Secret and
ConfigMap of a tenant's namespace, as the runtime understands them, parsed and validated.

Validation follows the CRDs in shared/fission-crds and FISSION.md section 1; every error
names the field (``spec.functionref.functionweights``) so a caller knows what to fix.
An Environment also names the Python version its workers run, which must be one this runtime
has (``runtime.interpreters``; docs/runtimes.md).

A Function's ``spec.secrets`` and ``spec.configmaps`` name Secrets and ConfigMaps of its own
namespace (another namespace is a 422). As on Fission, each key of each of them is a read-only file
for that function's workers only (``runtime.worker.volumes`` holds the contract and its rules):
``/secrets/<namespace>/<secret>/<key>`` (the decoded bytes) and
``/configs/<namespace>/<configmap>/<key>`` (``data`` as UTF-8, ``binaryData`` as is). So their keys
must be as Kubernetes allows them (letters, digits, ``-``, ``_``, ``.``; not ``.`` or ``..``: no
key leaves its directory) and each object holds at most 1 MiB, else it is refused (422).

A ConfigMap annotated ``ENVIRONMENT_VARIABLES_ANNOTATION: "true"`` also holds environment
variables: the functions that reference it find its ``data`` in their ``os.environ``. Its names
and values must follow ``runtime.worker.environment``'s rules (POSIX names, none of the
platform's such as ``PATH``, no NUL), else it is refused (422).

The parsed objects are small on purpose (issue 19: a runtime holds tens of thousands of idle
functions): frozen dataclasses with ``__slots__``, and the strings every object of a kind repeats
(an environment's name, ``poolmgr``, ``main``, a trigger's methods) shared, not one copy each.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime import interpreters
from runtime.captures import CAPTURE_ANNOTATION, CapturePolicy
from runtime.errors import InvalidObject
from runtime.sandbox.network import Grant
from runtime.schedule import InvalidSchedule, Schedule
from runtime.worker import volumes
from runtime.worker.environment import problem as variable_problem

log = logging.getLogger(__name__)
API_VERSION = "fission.io/v1"
KINDS = {
    "environments": "Environment",
    "packages": "Package",
    "functions": "Function",
    "httptriggers": "HTTPTrigger",
    "timetriggers": "TimeTrigger",
    "messagequeuetriggers": "MessageQueueTrigger",
}
# Served under /api/v1: the namespace's quota, which the executor and router enforce, the
# Secrets a MessageQueueTrigger takes its broker connection from, and the ConfigMaps that hold
# functions' environment variables.
CORE_KINDS = {"resourcequotas": "ResourceQuota", "limitranges": "LimitRange", "secrets": "Secret",
              "configmaps": "ConfigMap"}  # fmt: skip
# Served under /apis/networking.k8s.io/v1: what the namespace's sandbox may reach.
NETWORKING_KINDS = {"networkpolicies": "NetworkPolicy"}
NETWORKING_API_VERSION = "networking.k8s.io/v1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RESERVED_PATHS = ("/router-healthz", "/readyz", "/_version", "/auth/login")
# A relativeurl's path variables, as the router reads them (runtime/router.py).
TEMPLATE_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
_MEMORY_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def _get(obj: dict[str, Any], path: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            raise InvalidObject(f"{path} must be inside an object", field=path)
        value = value.get(part)
        if value is None:
            return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidObject(f"{path} must be of type {names}", field=path)
    return value


def _shared(value: str) -> str:
    """One copy of a string that many objects repeat (``python``, ``poolmgr``, ``main``)."""
    return sys.intern(value)


# Each distinct set of HTTP methods, once: tens of thousands of triggers have a handful of them.
_METHOD_SETS: dict[frozenset[str], frozenset[str]] = {}


def _method_set(methods: list[str]) -> frozenset[str]:
    found = frozenset(methods)
    return _METHOD_SETS.setdefault(found, found)


def _required(obj: dict[str, Any], path: str, kind: type | tuple[type, ...]) -> Any:
    value = _get(obj, path, kind)
    if value is None or value == "":
        raise InvalidObject(f"{path} is required", field=path)
    return value


def _name(value: str, path: str) -> str:
    if not _DNS_LABEL.match(value):
        raise InvalidObject(f"{path} must be a DNS-1123 label (lowercase, digits, '-', <= 63)", field=path)
    return value


def parse_memory(value: Any, path: str) -> int | None:
    """Kubernetes quantity (``128Mi``, ``1G``, ``1000000``) in bytes; None when absent."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kMGT]i?|)", str(value))
    if not match:
        raise InvalidObject(f"{path} must be a memory quantity such as 256Mi", field=path)
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def parse_cpu(value: Any, path: str) -> int | None:
    """Kubernetes cpu quantity (``2``, ``0.5``, ``500m``) in millicores; None when absent."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(value))
    if not match:
        raise InvalidObject(f"{path} must be a cpu quantity such as 500m or 2", field=path)
    return int(float(match.group(1)) * (1 if match.group(2) else 1000))


@dataclass(frozen=True, slots=True)
class Meta:
    """``uid`` and ``resource_version`` are the store's (``runtime.store``), "" on a body not yet
    stored; the router sends them to the function as Fission does (``X-Fission-Function-Uid``...)."""

    namespace: str
    name: str
    resource_version: str = ""
    uid: str = ""


def parse_meta(obj: dict[str, Any], namespace: str, kind: str, api_version: str = API_VERSION) -> Meta:
    if obj.get("apiVersion") != api_version:
        raise InvalidObject(f"apiVersion must be {api_version}", field="apiVersion")
    if obj.get("kind") != kind:
        raise InvalidObject(f"kind must be {kind}", field="kind")
    name = _name(_required(obj, "metadata.name", str), "metadata.name")
    declared = _get(obj, "metadata.namespace", str)
    if declared not in (None, namespace):
        raise InvalidObject("metadata.namespace must match the URL's namespace", field="metadata.namespace")
    version = str(_get(obj, "metadata.resourceVersion", (str, int), ""))
    uid = _get(obj, "metadata.uid", str, "")
    return Meta(namespace=namespace, name=name, resource_version=version, uid=uid)


def _same_namespace_ref(obj: dict[str, Any], path: str, namespace: str) -> str:
    return _reference(_get(obj, path, dict, {}), path, namespace)


def _reference(ref: dict[str, Any], path: str, namespace: str) -> str:
    """The name of the ``{namespace, name}`` reference ``ref`` at ``path``; 422 unless it is in
    ``namespace`` (the namespace left out means it)."""
    name, ref_namespace = ref.get("name"), ref.get("namespace")
    for key, value in (("name", name), ("namespace", ref_namespace)):
        if value is not None and not isinstance(value, str):
            raise InvalidObject(f"{path}.{key} must be of type str", field=f"{path}.{key}")
    if not name:
        raise InvalidObject(f"{path}.name is required", field=f"{path}.name")
    if ref_namespace not in (None, namespace):
        raise InvalidObject(f"{path}.namespace must be the object's own namespace", field=f"{path}.namespace")
    return _name(name, f"{path}.name")


def _references(obj: dict[str, Any], path: str, namespace: str) -> tuple[str, ...]:
    """The names a list of references at ``path`` (``spec.configmaps``) names, in its order, each
    checked as ``_reference`` checks one; () when absent."""
    names = []
    for index, ref in enumerate(_get(obj, path, list, [])):
        item = f"{path}[{index}]"
        if not isinstance(ref, dict):
            raise InvalidObject(f"{item} must be an object with a name", field=item)
        names.append(_reference(ref, item, namespace))
    return tuple(names)


# The Python version an Environment runs ("3.12"), as the portal's manifests annotate it.
PYTHON_VERSION_ANNOTATION = "faas-portal.io/python-version"
# A "3.NN" in an image's last path segment (python-env-3.12:latest, python:3.13-alpine), not the
# tail of another version number ("env:1.3.10").
_IMAGE_PYTHON = re.compile(r"(?<![0-9.])3\.[0-9]{1,2}(?![0-9])")


@dataclass(frozen=True, slots=True)
class Environment:
    meta: Meta
    image: str
    poolsize: int
    memory_limit: int | None
    python: str  # "3.12": the interpreter its workers run (runtime.interpreters)


def _python_version(obj: dict[str, Any], image: str) -> str:
    """The annotation's version, else the image's, else the runtime's default (the newest it
    has); PythonUnavailable (422) naming where the version came from when the runtime lacks it."""
    annotation = f"metadata.annotations[{PYTHON_VERSION_ANNOTATION}]"
    wanted = _get(obj, "metadata.annotations", dict, {}).get(PYTHON_VERSION_ANNOTATION)
    if wanted is not None and not isinstance(wanted, str):
        raise InvalidObject(f"{annotation} must be a string such as 3.12", field=annotation)
    if wanted is not None:
        return interpreters.installed().choose(wanted, field=annotation)
    match = _IMAGE_PYTHON.search(image.rsplit("/", 1)[-1])
    return interpreters.installed().choose(match.group(0) if match else None, field="spec.runtime.image")


def parse_environment(obj: dict[str, Any], namespace: str) -> Environment:
    meta = parse_meta(obj, namespace, "Environment")
    version = _get(obj, "spec.version", int, 1)
    if version not in (1, 2, 3):
        raise InvalidObject("spec.version must be 1, 2 or 3", field="spec.version")
    image = _required(obj, "spec.runtime.image", str)
    poolsize = _get(obj, "spec.poolsize", int, 3)
    if poolsize < 0:
        raise InvalidObject("spec.poolsize must be >= 0", field="spec.poolsize")
    memory = parse_memory(
        _get(obj, "spec.resources.limits.memory", (str, int)), "spec.resources.limits.memory"
    )
    return Environment(
        meta=meta, image=image, poolsize=poolsize, memory_limit=memory, python=_python_version(obj, image)
    )


@dataclass(frozen=True, slots=True)
class Archive:
    type: str
    literal: str | None
    url: str | None
    checksum: str | None


def _archive(obj: dict[str, Any], path: str) -> Archive | None:
    raw = _get(obj, path, dict)
    if not raw:
        return None
    kind = _get(obj, f"{path}.type", str, "literal" if raw.get("literal") else "url")
    if kind not in ("literal", "url"):
        raise InvalidObject(
            f"{path}.type must be literal or url here (oci is not supported)", field=f"{path}.type"
        )
    literal = _get(obj, f"{path}.literal", str)
    url = _get(obj, f"{path}.url", str)
    checksum_type = _get(obj, f"{path}.checksum.type", str, "sha256")
    checksum = _get(obj, f"{path}.checksum.sum", str)
    if kind == "literal" and not literal:
        raise InvalidObject(f"{path}.literal is required for a literal archive", field=f"{path}.literal")
    if kind == "url" and not url:
        raise InvalidObject(f"{path}.url is required for a url archive", field=f"{path}.url")
    if kind == "url" and not checksum:
        raise InvalidObject(
            f"{path}.checksum.sum is required for a url archive", field=f"{path}.checksum.sum"
        )
    if checksum and (checksum_type != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", checksum)):
        raise InvalidObject(f"{path}.checksum must be a sha256 hex digest", field=f"{path}.checksum")
    return Archive(type=_shared(kind), literal=literal, url=url, checksum=checksum)


@dataclass(frozen=True, slots=True)
class Package:
    meta: Meta
    environment: str
    deployment: Archive


def parse_package(obj: dict[str, Any], namespace: str) -> Package:
    meta = parse_meta(obj, namespace, "Package")
    environment = _same_namespace_ref(obj, "spec.environment", namespace)
    deployment = _archive(obj, "spec.deployment")
    if deployment is None:
        # A source archive needs a builder; the local runtime only serves built packages.
        raise InvalidObject(
            "spec.deployment is required (the local runtime runs no builds)", field="spec.deployment"
        )
    return Package(meta=meta, environment=_shared(environment), deployment=deployment)


@dataclass(frozen=True, slots=True)
class Function:
    meta: Meta
    environment: str
    package: str
    package_version: str
    entrypoint: str
    executor: str
    min_scale: int
    max_scale: int
    timeout: float
    idle_timeout: float
    concurrency: int
    requests_per_pod: int
    memory_limit: int | None
    # Its ConfigMaps (spec.configmaps, its own namespace), in order: each is files under /configs,
    # and those holding environment variables give it theirs, a later one's value winning (as
    # Kubernetes' envFrom).
    configmaps: tuple[str, ...] = ()
    # Its Secrets (spec.secrets, its own namespace): each is files under /secrets.
    secrets: tuple[str, ...] = ()

    @property
    def capacity(self) -> int:
        """Calls it takes at once before its executor refuses (poolmgr: ``concurrency`` workers) or
        queues (newdeploy: ``MaxScale`` workers) more, each worker ``requestsPerPod`` of them."""
        workers = self.concurrency if self.executor == "poolmgr" else self.max_scale
        return max(1, workers * self.requests_per_pod)


_STRATEGY = "spec.InvokeStrategy.ExecutionStrategy"


def _function_limits(obj: dict[str, Any]) -> dict[str, Any]:
    timeout = _get(obj, "spec.functionTimeout", int, 0)
    idle = _get(obj, "spec.idletimeout", int, 120)
    concurrency = _get(obj, "spec.concurrency", int, 0)
    per_pod = _get(obj, "spec.requestsPerPod", int, 0)
    for path, value in (("spec.functionTimeout", timeout), ("spec.idletimeout", idle),
                        ("spec.concurrency", concurrency), ("spec.requestsPerPod", per_pod)):  # fmt: skip
        if value < 0:
            raise InvalidObject(f"{path} must be >= 0", field=path)
    return {
        "timeout": float(timeout or 60),
        "idle_timeout": float(idle),
        "concurrency": concurrency or 500,
        "requests_per_pod": per_pod or 1,
    }


def _strategy(obj: dict[str, Any]) -> dict[str, Any]:
    if _get(obj, "spec.InvokeStrategy.StrategyType", str) != "execution":
        raise InvalidObject(
            "spec.InvokeStrategy.StrategyType must be execution", field="spec.InvokeStrategy.StrategyType"
        )
    executor = _get(obj, f"{_STRATEGY}.ExecutorType", str)
    if executor not in ("poolmgr", "newdeploy"):
        raise InvalidObject(
            f"{_STRATEGY}.ExecutorType must be poolmgr or newdeploy", field=f"{_STRATEGY}.ExecutorType"
        )
    min_scale = _get(obj, f"{_STRATEGY}.MinScale", int, 0)
    max_scale = _get(obj, f"{_STRATEGY}.MaxScale", int, 1)
    if min_scale < 0:
        raise InvalidObject(f"{_STRATEGY}.MinScale must be >= 0", field=f"{_STRATEGY}.MinScale")
    if max_scale <= 0 or max_scale < min_scale:
        raise InvalidObject(
            f"{_STRATEGY}.MaxScale must be > 0 and >= MinScale", field=f"{_STRATEGY}.MaxScale"
        )
    return {"executor": _shared(executor), "min_scale": min_scale, "max_scale": max_scale}


def parse_function(obj: dict[str, Any], namespace: str) -> Function:
    meta = parse_meta(obj, namespace, "Function")
    environment = _same_namespace_ref(obj, "spec.environment", namespace)
    package = _same_namespace_ref(obj, "spec.package.packageref", namespace)
    version = str(_get(obj, "spec.package.packageref.resourceversion", (str, int), ""))
    entrypoint = _get(obj, "spec.package.functionName", str, "")
    memory = parse_memory(
        _get(obj, "spec.resources.limits.memory", (str, int)), "spec.resources.limits.memory"
    )
    return Function(
        meta=meta, environment=_shared(environment), package=package, package_version=_shared(version),
        entrypoint=_shared(entrypoint), memory_limit=memory, **_strategy(obj), **_function_limits(obj),
        configmaps=_references(obj, "spec.configmaps", namespace),
        secrets=_references(obj, "spec.secrets", namespace),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class HTTPTrigger:
    meta: Meta
    path: str
    is_prefix: bool
    keep_prefix: bool
    methods: frozenset[str]
    weights: dict[str, int] = field(default_factory=dict)
    # Which failed calls are captured for replay (runtime.captures); None: none.
    capture: CapturePolicy | None = None


def _trigger_path(obj: dict[str, Any]) -> tuple[str, bool]:
    relative = _get(obj, "spec.relativeurl", str)
    prefix = _get(obj, "spec.prefix", str)
    if bool(relative) == bool(prefix):
        raise InvalidObject(
            "exactly one of spec.relativeurl and spec.prefix is required", field="spec.relativeurl"
        )
    path, where = (prefix, "spec.prefix") if prefix else (relative, "spec.relativeurl")
    assert path is not None
    if not path.startswith("/") or path == "/" or ".." in path.split("/"):
        raise InvalidObject(f"{where} must start with '/', not be '/', and contain no '..'", field=where)
    if path.startswith("/fission-function/") or path.rstrip("/") in _RESERVED_PATHS:
        raise InvalidObject(f"{where} is reserved by the router", field=where)
    names = TEMPLATE_VARIABLE.findall(path) if not prefix else []
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidObject(f"{where} names the variable {{{twice[0]}}} more than once", field=where)
    return path, bool(prefix)


def _weights(obj: dict[str, Any], namespace: str) -> dict[str, int]:
    ref_type = _required(obj, "spec.functionref.type", str)
    if ref_type == "name":
        return {_name(_required(obj, "spec.functionref.name", str), "spec.functionref.name"): 100}
    if ref_type != "function-weights":
        raise InvalidObject(
            "spec.functionref.type must be name or function-weights", field="spec.functionref.type"
        )
    raw = _required(obj, "spec.functionref.functionweights", dict)
    weights: dict[str, int] = {}
    for name, weight in raw.items():
        _name(name, "spec.functionref.functionweights")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise InvalidObject("spec.functionref.functionweights values must be integers >= 0",
                                field=f"spec.functionref.functionweights.{name}")  # fmt: skip
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise InvalidObject("spec.functionref.functionweights must sum to more than 0",
                            field="spec.functionref.functionweights")  # fmt: skip
    return weights


def parse_httptrigger(obj: dict[str, Any], namespace: str) -> HTTPTrigger:
    meta = parse_meta(obj, namespace, "HTTPTrigger")
    path, is_prefix = _trigger_path(obj)
    methods = _get(obj, "spec.methods", list, [])
    if not methods:
        raise InvalidObject("spec.methods is required: an empty set matches nothing", field="spec.methods")
    for index, method in enumerate(methods):
        if method not in HTTP_METHODS:
            raise InvalidObject(
                f"spec.methods[{index}] must be one of {sorted(HTTP_METHODS)}", field=f"spec.methods[{index}]"
            )
    keep_prefix = bool(_get(obj, "spec.keepPrefix", bool, False))
    return HTTPTrigger(
        meta=meta, path=path, is_prefix=is_prefix, keep_prefix=keep_prefix,
        methods=_method_set(methods), weights=_weights(obj, namespace), capture=_capture(obj, meta),
    )  # fmt: skip


def _capture(obj: dict[str, Any], meta: Meta) -> CapturePolicy | None:
    """The trigger's capture policy (``CAPTURE_ANNOTATION``); a bad one is logged and ignored:
    it costs the trigger its captures, never its routing."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(CAPTURE_ANNOTATION) if isinstance(annotations, dict) else None
    if value is None:
        return None
    try:
        return CapturePolicy.from_annotation(value)
    except ValueError as exc:
        log.warning("httptrigger %s/%s: capture annotation ignored: %s", meta.namespace, meta.name, exc)
        return None


def _function_target(obj: dict[str, Any]) -> str:
    """A TimeTrigger's or MessageQueueTrigger's function: Fission's timer and connectors call the
    one ``functionref.name`` names (they read no weights), so only ``type: name`` is accepted."""
    if _required(obj, "spec.functionref.type", str) != "name":
        raise InvalidObject("spec.functionref.type must be name", field="spec.functionref.type")
    return _name(_required(obj, "spec.functionref.name", str), "spec.functionref.name")


@dataclass(frozen=True, slots=True)
class TimeTrigger:
    meta: Meta
    cron: str
    function: str
    method: str = "POST"
    subpath: str = "/"


def parse_timetrigger(obj: dict[str, Any], namespace: str) -> TimeTrigger:
    meta = parse_meta(obj, namespace, "TimeTrigger")
    cron = _required(obj, "spec.cron", str)
    try:
        Schedule.parse(cron)
    except InvalidSchedule as exc:
        raise InvalidObject(f"spec.cron: {exc}", field="spec.cron") from None
    method = _get(obj, "spec.method", str, "") or "POST"
    if method not in HTTP_METHODS:
        raise InvalidObject(f"spec.method must be one of {sorted(HTTP_METHODS)}", field="spec.method")
    subpath = _get(obj, "spec.subpath", str, "") or "/"
    if not subpath.startswith("/") or ".." in subpath.split("/") or any(c in subpath for c in " \r\n"):
        raise InvalidObject("spec.subpath must start with '/' and contain no '..'", field="spec.subpath")
    return TimeTrigger(meta=meta, cron=cron, function=_function_target(obj), method=method, subpath=subpath)


# The brokers this runtime consumes from (runtime.events.queues); Fission knows more (kafka, aws-sqs, ...).
MQ_TYPES = ("nats-jetstream", "rabbitmq", "redis")


@dataclass(frozen=True, slots=True)
class MessageQueueTrigger:
    meta: Meta
    mq_type: str
    topic: str
    function: str
    resp_topic: str = ""
    error_topic: str = ""
    max_retries: int = 0
    content_type: str = "application/json"
    polling_interval: int = 30
    cooldown_period: int = 300
    min_replicas: int = 0
    max_replicas: int = 100
    metadata: dict[str, str] = field(default_factory=dict)
    secret: str = ""


def _count(obj: dict[str, Any], path: str, default: int, low: int = 0) -> int:
    value = _get(obj, path, int, default)
    if value < low:
        raise InvalidObject(f"{path} must be >= {low}", field=path)
    return int(value)


def parse_messagequeuetrigger(obj: dict[str, Any], namespace: str) -> MessageQueueTrigger:
    meta = parse_meta(obj, namespace, "MessageQueueTrigger")
    mq_type = _required(obj, "spec.messageQueueType", str)
    if mq_type not in MQ_TYPES:
        raise InvalidObject(
            f"spec.messageQueueType {mq_type!r} is not served by the local runtime: one of {list(MQ_TYPES)}"
            " (Kafka and the others run on Kubernetes, through KEDA)",
            field="spec.messageQueueType",
        )
    kind = _get(obj, "spec.mqtkind", str, "keda")
    if kind != "keda":
        raise InvalidObject("spec.mqtkind must be keda", field="spec.mqtkind")
    metadata = _get(obj, "spec.metadata", dict, {})
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InvalidObject("spec.metadata values must be strings", field=f"spec.metadata.{key}")
    secret = _get(obj, "spec.secret", str, "")
    min_replicas = _count(obj, "spec.minReplicaCount", 0)
    max_replicas = _count(obj, "spec.maxReplicaCount", 100, 1)
    if max_replicas < min_replicas:
        raise InvalidObject(
            "spec.maxReplicaCount must be >= spec.minReplicaCount", field="spec.maxReplicaCount"
        )
    return MessageQueueTrigger(
        meta=meta, mq_type=mq_type, topic=_required(obj, "spec.topic", str), function=_function_target(obj),
        resp_topic=_get(obj, "spec.respTopic", str, ""), error_topic=_get(obj, "spec.errorTopic", str, ""),
        max_retries=_count(obj, "spec.maxRetries", 0), content_type=_get(obj, "spec.contentType", str, "")
        or "application/json", polling_interval=_count(obj, "spec.pollingInterval", 30, 1),
        cooldown_period=_count(obj, "spec.cooldownPeriod", 300), min_replicas=min_replicas,
        max_replicas=max_replicas, metadata=dict(metadata),
        secret=_name(secret, "spec.secret") if secret else "",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Secret:
    """A core/v1 Secret: ``data`` base64-decoded (``stringData`` merged in, as the API server does)."""

    meta: Meta
    data: dict[str, bytes] = field(default_factory=dict, repr=False)


def _check_key(key: object, path: str) -> None:
    """A Secret's or ConfigMap's key: a file name of the function's (``runtime.worker.volumes``)."""
    reason = volumes.key_problem(key)
    if reason is not None:
        raise InvalidObject(f"{path} {reason}", field=f"{path}.{key}")


def _check_size(size: int, kind: str) -> None:
    if size > volumes.MAX_OBJECT_BYTES:
        raise InvalidObject(f"a {kind} holds at most {volumes.MAX_OBJECT_BYTES} bytes", field="data")


def parse_secret(obj: dict[str, Any], namespace: str) -> Secret:
    meta = parse_meta(obj, namespace, "Secret", CORE_API_VERSION)
    data: dict[str, bytes] = {}
    for key, value in (_get(obj, "data", dict, {}) or {}).items():
        _check_key(key, "data")
        if not isinstance(value, str):
            raise InvalidObject("data values must be base64 strings", field=f"data.{key}")
        try:
            data[key] = base64.b64decode(value, validate=True)
        except ValueError:
            raise InvalidObject("data values must be base64 strings", field=f"data.{key}") from None
    for key, value in (_get(obj, "stringData", dict, {}) or {}).items():
        _check_key(key, "stringData")
        if not isinstance(value, str):
            raise InvalidObject("stringData values must be strings", field=f"stringData.{key}")
        data[key] = value.encode()
    _check_size(sum(len(key.encode()) + len(value) for key, value in data.items()), "Secret")
    return Secret(meta=meta, data=data)


# A ConfigMap so annotated ("true") holds the environment variables of the functions that
# reference it (module docstring); the portal also annotates those Functions with the variables'
# digest, which the runtime does not need (it compares the variables themselves).
ENVIRONMENT_VARIABLES_ANNOTATION = "faas-portal.io/environment-variables"
# Kubernetes' bound of a ConfigMap (and of a Secret): its data and binaryData together.
MAX_CONFIGMAP_BYTES = volumes.MAX_OBJECT_BYTES


@dataclass(frozen=True, slots=True)
class ConfigMap:
    """A core/v1 ConfigMap: ``data`` (text) and ``binaryData`` (base64-decoded). When
    ``environment_variables``, ``data`` are environment variables, checked as such."""

    meta: Meta
    data: dict[str, str] = field(default_factory=dict)
    binary_data: dict[str, bytes] = field(default_factory=dict, repr=False)
    environment_variables: bool = False


def _marked_as_variables(obj: dict[str, Any]) -> bool:
    path = f"metadata.annotations[{ENVIRONMENT_VARIABLES_ANNOTATION}]"
    value = _get(obj, "metadata.annotations", dict, {}).get(ENVIRONMENT_VARIABLES_ANNOTATION)
    if value not in (None, "true", "false"):
        raise InvalidObject(f'{path} must be "true" or "false"', field=path)
    return value == "true"


def _configmap_entries(obj: dict[str, Any], path: str) -> dict[str, Any]:
    """``data`` or ``binaryData``: keys as Kubernetes allows them, values strings."""
    entries = _get(obj, path, dict, {})
    for key, value in entries.items():
        _check_key(key, path)
        if not isinstance(value, str):
            raise InvalidObject(f"{path} values must be strings", field=f"{path}.{key}")
    return dict(entries)


def _binary_data(obj: dict[str, Any]) -> dict[str, bytes]:
    decoded = {}
    for key, value in _configmap_entries(obj, "binaryData").items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except ValueError:
            where = f"binaryData.{key}"
            raise InvalidObject("binaryData values must be base64 strings", field=where) from None
    return decoded


def _check_variables(data: dict[str, str], binary_data: dict[str, bytes]) -> None:
    """Each entry of an environment variables ConfigMap is a variable a function may have."""
    if binary_data:
        raise InvalidObject("environment variables are text: give them in data, not binaryData",
                            field="binaryData")  # fmt: skip
    for name, value in data.items():
        reason = variable_problem(name, value)
        if reason is not None:
            raise InvalidObject(f"data.{name}: {reason}", field=f"data.{name}")


def parse_configmap(obj: dict[str, Any], namespace: str) -> ConfigMap:
    meta = parse_meta(obj, namespace, "ConfigMap", CORE_API_VERSION)
    data, binary_data = _configmap_entries(obj, "data"), _binary_data(obj)
    both = sorted(data.keys() & binary_data.keys())
    if both:
        raise InvalidObject("a key may be in data or in binaryData, not both", field=f"binaryData.{both[0]}")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    size += sum(len(k.encode()) + len(v) for k, v in binary_data.items())
    _check_size(size, "ConfigMap")
    variables = _marked_as_variables(obj)
    if variables:
        _check_variables(data, binary_data)
    return ConfigMap(meta=meta, data=data, binary_data=binary_data, environment_variables=variables)


CORE_API_VERSION = "v1"
CONCURRENCY_ANNOTATION = "faas-portal/concurrency"
_LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")
_LIMIT_MAPS = ("default", "defaultRequest", "max", "min", "maxLimitRequestRatio")


def _quantity(resource: str, value: Any, path: str) -> int | None:
    """One quantity of a ResourceQuota or LimitRange, by what its resource name measures: bytes
    (memory, storage), millicores (cpu), or else a count (pods, ``count/<plural>.<group>``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidObject(f"{path} must be a quantity string", field=path)
    if resource.endswith(("memory", "storage")):
        return parse_memory(value, path)
    if resource.endswith("cpu"):
        return parse_cpu(value, path)
    if not re.fullmatch(r"\d+", str(value)):
        raise InvalidObject(f"{path} must be a count: an integer >= 0", field=path)
    return int(value)


def _quantities(raw: Any, path: str) -> dict[str, int | None]:
    """A ``resource name -> quantity`` map (``spec.hard``, a limit's ``default``); {} when absent."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidObject(f"{path} must be an object", field=path)
    return {resource: _quantity(resource, value, f"{path}[{resource}]") for resource, value in raw.items()}


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    """The limits the runtime enforces; the other ``spec.hard`` entries are validated and kept."""

    meta: Meta
    pods: int | None
    memory_limit: int | None
    concurrency: int | None


def _concurrency(obj: dict[str, Any]) -> int | None:
    path = f"metadata.annotations[{CONCURRENCY_ANNOTATION}]"
    annotations = _get(obj, "metadata.annotations", dict, {})
    value = annotations.get(CONCURRENCY_ANNOTATION)
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d+", value):
        raise InvalidObject(f"{path} must be a string holding an integer >= 0", field=path)
    return int(value)


def parse_resourcequota(obj: dict[str, Any], namespace: str) -> ResourceQuota:
    meta = parse_meta(obj, namespace, "ResourceQuota", CORE_API_VERSION)
    hard = _quantities(_get(obj, "spec.hard", dict), "spec.hard")
    concurrency = _concurrency(obj)
    return ResourceQuota(meta=meta, pods=hard.get("pods"), memory_limit=hard.get("limits.memory"),
                         concurrency=concurrency)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LimitRange:
    """Only the container default memory limit matters to the runtime: it is the memory limit of a
    worker whose function and environment declare none, as Kubernetes' admission would set it."""

    meta: Meta
    default_memory: int | None


def _container_default_memory(item: Any, path: str) -> int | None:
    """Validate one ``spec.limits`` entry; its default memory limit when it is a Container's."""
    if not isinstance(item, dict):
        raise InvalidObject(f"{path} must be an object", field=path)
    if item.get("type") not in _LIMIT_TYPES:
        raise InvalidObject(f"{path}.type must be one of {', '.join(_LIMIT_TYPES)}", field=f"{path}.type")
    maps = {name: _quantities(item.get(name), f"{path}.{name}") for name in _LIMIT_MAPS}
    return maps["default"].get("memory") if item["type"] == "Container" else None


def parse_limitrange(obj: dict[str, Any], namespace: str) -> LimitRange:
    meta = parse_meta(obj, namespace, "LimitRange", CORE_API_VERSION)
    limits = _required(obj, "spec.limits", list)
    defaults = [_container_default_memory(item, f"spec.limits[{i}]") for i, item in enumerate(limits)]
    default_memory = next((memory for memory in defaults if memory is not None), None)
    return LimitRange(meta=meta, default_memory=default_memory)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """The egress a policy grants the namespace's sandbox, as the local runtime can enforce it.

    ``egress`` is None when the policy does not restrict egress (no ``Egress`` in policyTypes).
    Only rules the runtime can enforce exactly grant anything: a policy selecting every pod
    (``podSelector: {}``), ``ipBlock`` peers (IPv4), and no ``ports`` (routes cannot tell ports
    apart). A rule with no ``to`` grants everything, as in Kubernetes. Pod and namespace selectors
    name nothing here (there are no pods), so they grant nothing: the runtime never opens more
    than a cluster would.
    """

    meta: Meta
    egress: tuple[Grant, ...] | None


def _cidr(value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise InvalidObject(f"{path} must be a CIDR string", field=path)
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidObject(f"{path} must be a CIDR such as 0.0.0.0/0", field=path) from None


def _ip_block(peer: dict[str, Any], path: str) -> Grant | None:
    block = _get(peer, "ipBlock", dict)
    if block is None:
        return None
    cidr = _cidr(block.get("cidr"), f"{path}.ipBlock.cidr")
    excepts = _get(peer, "ipBlock.except", list, [])
    holes = [_cidr(value, f"{path}.ipBlock.except[{i}]") for i, value in enumerate(excepts)]
    if not isinstance(cidr, ipaddress.IPv4Network):
        return None  # sandboxes have no IPv6 route at all
    return Grant(cidr, tuple(h for h in holes if isinstance(h, ipaddress.IPv4Network)))


def _egress_rule(rule: Any, path: str) -> tuple[list[Grant], bool]:
    """The rule's ipBlock grants (every peer validated), and whether the runtime can enforce them
    (no ``ports``)."""
    if not isinstance(rule, dict):
        raise InvalidObject(f"{path} must be an object", field=path)
    peers = _get(rule, "to", list)
    enforceable = not _get(rule, "ports", list)
    if peers is None:
        return [Grant(ipaddress.IPv4Network("0.0.0.0/0"))], enforceable
    grants = []
    for index, peer in enumerate(peers):
        if not isinstance(peer, dict):
            raise InvalidObject(f"{path}.to[{index}] must be an object", field=f"{path}.to[{index}]")
        grant = _ip_block(peer, f"{path}.to[{index}]")
        if grant is not None:
            grants.append(grant)
    return grants, enforceable


def parse_networkpolicy(obj: dict[str, Any], namespace: str) -> NetworkPolicy:
    meta = parse_meta(obj, namespace, "NetworkPolicy", NETWORKING_API_VERSION)
    selector = _required(obj, "spec", dict).get("podSelector")
    if not isinstance(selector, dict):
        raise InvalidObject("spec.podSelector is required (an object)", field="spec.podSelector")
    rules = _get(obj, "spec.egress", list)
    types = _get(obj, "spec.policyTypes", list, ["Ingress", *(["Egress"] if rules else [])])
    for index, kind in enumerate(types):
        if kind not in ("Ingress", "Egress"):
            field_path = f"spec.policyTypes[{index}]"
            raise InvalidObject(f"{field_path} must be Ingress or Egress", field=field_path)
    _get(obj, "spec.ingress", list)  # validated as a list; the router is the only way in
    if "Egress" not in types:
        return NetworkPolicy(meta=meta, egress=None)
    selects_all = not any(selector.get(key) for key in ("matchLabels", "matchExpressions"))
    grants: list[Grant] = []
    for index, rule in enumerate(rules or []):
        rule_grants, enforceable = _egress_rule(rule, f"spec.egress[{index}]")
        if enforceable and selects_all:
            grants += rule_grants
    return NetworkPolicy(meta=meta, egress=tuple(grants))


Parsed = (
    Environment
    | Package
    | Function
    | HTTPTrigger
    | TimeTrigger
    | MessageQueueTrigger
    | ResourceQuota
    | LimitRange
    | NetworkPolicy
    | Secret
    | ConfigMap
)
PARSERS: dict[str, Callable[[dict[str, Any], str], Parsed]] = {
    "environments": parse_environment,
    "packages": parse_package,
    "functions": parse_function,
    "httptriggers": parse_httptrigger,
    "timetriggers": parse_timetrigger,
    "messagequeuetriggers": parse_messagequeuetrigger,
    "secrets": parse_secret,
    "configmaps": parse_configmap,
    "resourcequotas": parse_resourcequota,
    "limitranges": parse_limitrange,
    "networkpolicies": parse_networkpolicy,
}
