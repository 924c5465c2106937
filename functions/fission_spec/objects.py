"""Fission objects (fission.io/v1, 1.27) mapped onto the portal's models.

Each Environment, Function (with its Package and ArchiveUploadSpec), HTTPTrigger, TimeTrigger and
MessageQueueTrigger becomes a ``Desired``: the portal's fields for that object, as the services
take them. A field the portal cannot represent is refused, naming the file and the field: never
dropped. Fields that only say what the portal always does (namespaces, status, Fission defaults
such as an ingress config with ``createingress: false``) are read and ignored (IGNORED).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dataplane import manifests
from functions import config, runtimes
from functions.fission_spec.folder import ARCHIVE_PREFIX, Document, SpecErrors, SpecFolder
from functions.models import QueueKind, TargetKind

KINDS = ("Environment", "Function", "HTTPTrigger", "TimeTrigger", "MessageQueueTrigger")
# Ordered as they are applied: what others refer to first.
ORDER = {kind: index for index, kind in enumerate(KINDS)}
# A Function's environment variables (the portal's; Fission has no field for them) and an HTTP
# trigger's target when it is not the draft ("alias:<name>" or "version:<n>"). Fission ignores both.
ENVIRONMENT_VARIABLES_ANNOTATION = "faas-portal.io/environment-variables"
TARGET_ANNOTATION = "faas-portal.io/target"

_COMMON = {"apiVersion", "kind", "metadata.name", "metadata.namespace", "metadata.creationTimestamp",
           "metadata.labels", "metadata.annotations", "metadata.uid", "metadata.resourceVersion",
           "metadata.generation", "metadata.managedFields", "status"}  # fmt: skip
KNOWN: dict[str, set[str]] = {
    "Environment": {"spec.version", "spec.runtime.image", "spec.builder.image", "spec.builder.command",
                    "spec.poolsize", "spec.resources", "spec.terminationGracePeriod",
                    "spec.allowedFunctionsPerContainer"},
    "Package": {"spec.environment", "spec.source", "spec.deployment"},
    "Function": {"spec.environment", "spec.package.packageref", "spec.package.functionName",
                 "spec.InvokeStrategy.StrategyType", "spec.InvokeStrategy.ExecutionStrategy.ExecutorType",
                 "spec.InvokeStrategy.ExecutionStrategy.MinScale",
                 "spec.InvokeStrategy.ExecutionStrategy.MaxScale",
                 "spec.InvokeStrategy.ExecutionStrategy.TargetCPUPercent",
                 "spec.InvokeStrategy.ExecutionStrategy.SpecializationTimeout",
                 "spec.functionTimeout", "spec.idletimeout", "spec.concurrency", "spec.requestsPerPod",
                 "spec.resources", "spec.secrets", "spec.configmaps"},
    "HTTPTrigger": {"spec.relativeurl", "spec.prefix", "spec.keepPrefix", "spec.method", "spec.methods",
                    "spec.functionref", "spec.ingressconfig"},
    "TimeTrigger": {"spec.cron", "spec.functionref", "spec.method", "spec.subpath"},
    "MessageQueueTrigger": {"spec.messageQueueType", "spec.topic", "spec.respTopic", "spec.errorTopic",
                            "spec.maxRetries", "spec.contentType", "spec.pollingInterval",
                            "spec.cooldownPeriod", "spec.minReplicaCount", "spec.maxReplicaCount",
                            "spec.metadata", "spec.mqtkind", "spec.functionref"},
}  # fmt: skip
_STRATEGY = "spec.InvokeStrategy.ExecutionStrategy"
_MEMORY = re.compile(r"(?P<n>[1-9][0-9]*)(?P<unit>Mi|Gi)")
_CPU = re.compile(r"(?P<n>[1-9][0-9]*)(?P<unit>m?)")


@dataclass
class Desired:
    """One portal object as the folder wants it: ``fields`` are what plan compares and the
    services take; ``function`` is the function a trigger belongs to."""

    kind: str
    name: str
    file: str
    fields: dict[str, Any]
    function: str | None = None
    code: dict[str, bytes] = field(default_factory=dict)  # a Function's draft, path -> bytes


def unsupported(body: Any, known: set[str], path: str = "") -> list[str]:
    """Dotted paths of fields with a value that no ``known`` path (or a prefix of one) covers.
    Empty values (None, "", 0, False, {}, []) say nothing and pass, as Fission writes them."""
    if path in known:
        return []
    if isinstance(body, dict) and body:
        return [
            p for key, value in body.items() for p in unsupported(value, known, f"{path}.{key}".lstrip("."))
        ]
    return [path] if body not in (None, "", 0, False, {}, []) else []


def desired_objects(folder: SpecFolder, errors: SpecErrors) -> list[Desired]:
    """Every object of the folder as a ``Desired``, sorted in ORDER; errors collected in ``errors``."""
    by_kind: dict[str, dict[str, Document]] = {}
    for document in folder.documents:
        kind = document.kind
        if kind not in (*KINDS, "Package", "ArchiveUploadSpec"):
            errors.add(document.file, "kind", f"{kind} is not something the portal runs.")
            continue
        if not document.name:
            errors.add(document.file, "metadata.name", "Required.")
            continue
        if document.name in by_kind.setdefault(kind, {}):
            errors.add(document.file, "metadata.name", f"A second {kind} named {document.name}.")
            continue
        by_kind[kind][document.name] = document
        for bad in unsupported(document.body, _COMMON | KNOWN.get(kind, set())) if kind in KNOWN else []:
            errors.add(document.file, bad, "The portal cannot represent this field; remove it.")
    reader = _Reader(folder, by_kind, errors)
    found = [reader.read(doc) for kind in KINDS for doc in by_kind.get(kind, {}).values()]
    reader.check_packages()
    return [d for d in found if d is not None]


class _Reader:
    """Reads one document at a time; a field's error is recorded and the object skipped."""

    def __init__(
        self, folder: SpecFolder, by_kind: dict[str, dict[str, Document]], errors: SpecErrors
    ) -> None:
        self.folder, self.by_kind, self.errors = folder, by_kind, errors
        self.used_packages: set[str] = set()

    def read(self, document: Document) -> Desired | None:
        reader = getattr(self, f"_{document.kind.lower()}")
        try:
            desired: Desired = reader(document, document.body.get("spec") or {})
        except _Refused as exc:
            self.errors.add(exc.file or document.file, exc.field, exc.message)
            return None
        try:
            manifests.dns_label(desired.name)
        except manifests.InvalidManifest as exc:
            self.errors.add(document.file, "metadata.name", str(exc))
            return None
        return desired

    def check_packages(self) -> None:
        for name, document in self.by_kind.get("Package", {}).items():
            if name not in self.used_packages:
                self.errors.add(document.file, "metadata.name", "No Function uses this Package.")

    # --- Environment ------------------------------------------------------------------------------

    def _environment(self, document: Document, spec: dict[str, Any]) -> Desired:
        image = _text(spec, "runtime.image", required=True)
        annotations = document.body.get("metadata", {}).get("annotations") or {}
        version = annotations.get(manifests.PYTHON_VERSION_ANNOTATION) or _version_of(image)
        if version not in runtimes.VERSIONS:
            raise _Refused(f"metadata.annotations.{manifests.PYTHON_VERSION_ANNOTATION}",
                           f"One of {', '.join(runtimes.VERSIONS)}.")  # fmt: skip
        memory, cpu = _resources(spec.get("resources"), "spec.resources")
        fields = {
            "runtime_version": version,
            "image": image,
            "builder_image": _text(spec, "builder.image"),
            "poolsize": _number(spec, "poolsize", default=3),
            "memory_mb": memory,
            "cpu_millis": cpu,
        }
        return Desired("Environment", document.name, document.file, fields)

    # --- Function, its Package and ArchiveUploadSpec --------------------------------------------------

    def _function(self, document: Document, spec: dict[str, Any]) -> Desired:
        strategy = (spec.get("InvokeStrategy") or {}).get("ExecutionStrategy") or {}
        if (spec.get("InvokeStrategy") or {}).get("StrategyType", "execution") != "execution":
            raise _Refused("spec.InvokeStrategy.StrategyType", "Only execution.")
        executor = strategy.get("ExecutorType") or "poolmgr"
        if executor not in config.Executor.values:
            raise _Refused("spec.InvokeStrategy.ExecutionStrategy.ExecutorType", "poolmgr or newdeploy.")
        memory, cpu = _resources(spec.get("resources"), "spec.resources")
        fields: dict[str, Any] = {
            **{setting.name: setting.fresh_default() for setting in config.SETTINGS},
            "environment": _text(spec, "environment.name", required=True),
            "entrypoint": _text(spec, "package.functionName") or "main",
            "executor": executor,
            # 0 is Fission's "not set": its default applies, which the portal's default mirrors.
            "min_scale": _number(strategy, "MinScale", default=0, where=_STRATEGY),
            "max_scale": _number(strategy, "MaxScale", default=1, where=_STRATEGY),
            "target_cpu": _number(strategy, "TargetCPUPercent", default=80,
                                  where="spec.InvokeStrategy.ExecutionStrategy"),
            "concurrency": _number(spec, "concurrency", default=500),
            "requests_per_pod": _number(spec, "requestsPerPod", default=1),
            "timeout_s": _number(spec, "functionTimeout", default=60),
            "idle_timeout_s": _number(spec, "idletimeout", default=120),
            "memory_mb": memory,
            "cpu_millis": cpu,
            "secrets": _names(spec, "secrets"),
            "configmaps": _names(spec, "configmaps"),
            **_portal_annotations(document),
        }  # fmt: skip
        code = self._package_code(_text(spec, "package.packageref.name", required=True))
        return Desired("Function", document.name, document.file, fields, code=code)

    def _package_code(self, name: str) -> dict[str, bytes]:
        package = self.by_kind.get("Package", {}).get(name)
        if package is None:
            raise _Refused("spec.package.packageref.name", f"No Package {name} in the folder.")
        self.used_packages.add(name)
        spec = package.body.get("spec") or {}
        archives = [key for key in ("source", "deployment") if (spec.get(key) or {}).get("url")]
        if len(archives) != 1:
            raise _Refused("spec.deployment", "Exactly one archive url (source or deployment).", package.file)
        url = str(spec[archives[0]]["url"])
        upload = self.by_kind.get("ArchiveUploadSpec", {}).get(url.removeprefix(ARCHIVE_PREFIX))
        if not url.startswith(ARCHIVE_PREFIX) or upload is None:
            said = "An archive://<name> of an ArchiveUploadSpec in the folder."
            raise _Refused(f"spec.{archives[0]}.url", said, package.file)
        return self.folder.archive_files(upload)

    # --- triggers ---------------------------------------------------------------------------------

    def _httptrigger(self, document: Document, spec: dict[str, Any]) -> Desired:
        relative, prefix = _text(spec, "relativeurl"), _text(spec, "prefix")
        if bool(relative) == bool(prefix):
            raise _Refused("spec.relativeurl", "Give relativeurl or prefix (one of them).")
        methods = spec.get("methods") or ([spec["method"]] if spec.get("method") else [])
        if not isinstance(methods, list) or not methods:
            raise _Refused("spec.methods", "At least one HTTP method.")
        function = _function_ref(spec)
        target = _target(document)
        fields = {"function": function, "methods": sorted(set(methods)), "path": prefix or relative,
                  "is_prefix": bool(prefix), "keep_prefix": bool(spec.get("keepPrefix")),
                  **target}  # fmt: skip
        return Desired("HTTPTrigger", document.name, document.file, fields, function=function)

    def _timetrigger(self, document: Document, spec: dict[str, Any]) -> Desired:
        function = _function_ref(spec)
        fields = {"function": function, "cron": _text(spec, "cron", required=True),
                  "method": _text(spec, "method") or "POST", "subpath": _text(spec, "subpath") or "/",
                  **_target(document)}  # fmt: skip
        return Desired("TimeTrigger", document.name, document.file, fields, function=function)

    def _messagequeuetrigger(self, document: Document, spec: dict[str, Any]) -> Desired:
        if spec.get("mqtkind") not in (None, "", "keda"):
            raise _Refused("spec.mqtkind", "Only keda (the portal's consumers are KEDA's scalers).")
        mq_type = _text(spec, "messageQueueType", required=True)
        if mq_type not in QueueKind.values:
            raise _Refused("spec.messageQueueType", f"One of {', '.join(QueueKind.values)}.")
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise _Refused("spec.metadata", "An object of strings.")
        function = _function_ref(spec)
        fields = {
            "function": function, "mq_type": mq_type, "topic": _text(spec, "topic", required=True),
            "resp_topic": _text(spec, "respTopic"), "error_topic": _text(spec, "errorTopic"),
            "max_retries": _number(spec, "maxRetries", default=3),
            "content_type": _text(spec, "contentType") or "application/json",
            "polling_interval": _number(spec, "pollingInterval", default=30),
            "cooldown_period": _number(spec, "cooldownPeriod", default=300),
            "min_replicas": _number(spec, "minReplicaCount", default=0),
            "max_replicas": _number(spec, "maxReplicaCount", default=10),
            "metadata": dict(metadata), **_target(document),
        }  # fmt: skip
        return Desired("MessageQueueTrigger", document.name, document.file, fields, function=function)


class _Refused(Exception):
    """A field the portal refuses; ``file`` when it is another file than the object's own."""

    def __init__(self, field: str, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.field, self.message, self.file = field, message, file


def _get(spec: dict[str, Any], dotted: str) -> Any:
    value: Any = spec
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(spec: dict[str, Any], dotted: str, *, required: bool = False) -> str:
    value = _get(spec, dotted)
    if value in (None, "") and required:
        raise _Refused(f"spec.{dotted}", "Required.")
    if value is not None and not isinstance(value, str):
        raise _Refused(f"spec.{dotted}", "A string.")
    return value or ""


def _number(spec: dict[str, Any], key: str, *, default: int, where: str = "spec") -> int:
    value = spec.get(key)
    if value is None or value == 0:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Refused(f"{where}.{key}", "A whole number >= 0.")
    return value


def _names(spec: dict[str, Any], key: str) -> list[str]:
    """Secrets or ConfigMaps by name (the same namespace: the tenant's own)."""
    refs = spec.get(key) or []
    if not isinstance(refs, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) for r in refs
    ):
        raise _Refused(f"spec.{key}", "A list of {name: ...} references.")
    return [ref["name"] for ref in refs]


def _resources(value: Any, where: str) -> tuple[int | None, int | None]:
    """(memory MB, CPU millicores) from ``limits`` (else ``requests``): the portal sets both equal."""
    if not value:
        return None, None
    amounts = value.get("limits") or value.get("requests") or {} if isinstance(value, dict) else None
    if not isinstance(amounts, dict) or set(amounts) - {"memory", "cpu"}:
        raise _Refused(where, "limits (or requests) of memory and cpu only.")
    return _memory(amounts.get("memory"), where), _cpu(amounts.get("cpu"), where)


def _memory(value: Any, where: str) -> int | None:
    if value is None:
        return None
    match = _MEMORY.fullmatch(str(value))
    if match is None:
        raise _Refused(f"{where}.limits.memory", "Mi or Gi, such as 128Mi.")
    return int(match["n"]) * (1024 if match["unit"] == "Gi" else 1)


def _cpu(value: Any, where: str) -> int | None:
    if value is None:
        return None
    match = _CPU.fullmatch(str(value))
    if match is None:
        raise _Refused(f"{where}.limits.cpu", "Millicores such as 250m, or whole cores.")
    return int(match["n"]) * (1 if match["unit"] else 1000)


def _version_of(image: str) -> str:
    """The Python version whose default image is ``image``; else the default version."""
    for version in runtimes.VERSIONS:
        if image == runtimes.image(version):
            return version
    return runtimes.DEFAULT_VERSION


def _portal_annotations(document: Document) -> dict[str, Any]:
    """A function's portal-only settings, carried by annotations Fission ignores."""
    annotations = document.body.get("metadata", {}).get("annotations") or {}
    found: dict[str, Any] = {}
    for name, key in ((manifests.ASYNC_RETRIES_ANNOTATION, "async_retries"),
                      (manifests.ASYNC_MAX_EVENT_AGE_ANNOTATION, "async_max_event_age_s")):  # fmt: skip
        if name in annotations:
            if not str(annotations[name]).isdigit():
                raise _Refused(f"metadata.annotations.{name}", "A whole number.")
            found[key] = int(annotations[name])
    variables = annotations.get(ENVIRONMENT_VARIABLES_ANNOTATION)
    try:
        found["environment_variables"] = json.loads(variables) if variables else {}
    except ValueError:
        raise _Refused(f"metadata.annotations.{ENVIRONMENT_VARIABLES_ANNOTATION}", "A JSON object.") from None
    return found


def _function_ref(spec: dict[str, Any]) -> str:
    """The one function a trigger calls: ``{type: name}``, or weights that all go to one."""
    ref = spec.get("functionref") or {}
    if ref.get("type", "name") == "name":
        return _text(spec, "functionref.name", required=True)
    weights = ref.get("functionweights") or {}
    if ref.get("type") == "function-weights" and len(weights) == 1:
        return str(next(iter(weights)))
    raise _Refused("spec.functionref", "One function by name: split traffic with an alias in the portal.")


def _target(document: Document) -> dict[str, Any]:
    """The trigger's target: the draft, or TARGET_ANNOTATION's alias or version."""
    annotations = document.body.get("metadata", {}).get("annotations") or {}
    value = str(annotations.get(TARGET_ANNOTATION) or "draft")
    kind, _, which = value.partition(":")
    if kind == TargetKind.DRAFT and not which:
        return {"target_kind": TargetKind.DRAFT, "alias": None, "version": None}
    if kind == TargetKind.ALIAS and which:
        return {"target_kind": TargetKind.ALIAS, "alias": which, "version": None}
    if kind == TargetKind.VERSION and which.isdigit():
        return {"target_kind": TargetKind.VERSION, "alias": None, "version": int(which)}
    raise _Refused(f"metadata.annotations.{TARGET_ANNOTATION}", "draft, alias:<name> or version:<number>.")
