"""A tenant, or one function and what it needs, as a Fission spec folder (zipped): what
``fission spec apply`` accepts and ``spec_apply`` applies back with no change.

The objects are built by dataplane/manifests.py (the portal's one home of Fission objects) and
made portable: no namespace (``fission spec apply`` puts them in its own), no portal labels, no
pod spec (the portal adds it when it deploys). Packages name ArchiveUploadSpecs whose files are
the draft's, under ``<function>/``. Secrets and ConfigMaps are named, never read; a queue
trigger's broker connection (a secret) is left out.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from django.db.models import QuerySet

from dataplane import manifests
from functions import specs
from functions.archives import make_zip
from functions.fission_spec.folder import ARCHIVE_PREFIX, DEPLOYMENT_CONFIG
from functions.fission_spec.objects import ENVIRONMENT_VARIABLES_ANNOTATION, TARGET_ANNOTATION
from functions.models import Environment, Function, QueueTrigger, SpecObject, TargetKind, TimeTrigger, Trigger
from functions.services.functions import draft_contents
from tenants.selectors import current_tenant

EXPORT_NAME = "faas-portal-export"
_NAMESPACE = "default"  # any DNS label for the builders; removed from what is written
_HEADER = (
    "# Written by faas-portal's spec export, in the layout of `fission spec init`.\n"
    "# Keep the uid: `fission spec apply` and the portal track what this folder created by it.\n"
)


def spec_export(*, function: Function | None = None) -> bytes:
    """The folder as a reproducible zip (functions.archives.make_zip): the same tenant state
    gives the same bytes."""
    functions = [function] if function is not None else list(Function.objects.select_related("environment"))
    environments = _environments(function)
    files = {DEPLOYMENT_CONFIG: _header_yaml(_deployment_config(environments, functions))}
    files |= {f"specs/env-{env.name}.yaml": _yaml([portable(_environment(env))]) for env in environments}
    for fn in functions:
        files |= _function_files(fn)
    for trigger in _of(Trigger.objects.all(), function):
        files[f"specs/route-{trigger.name}.yaml"] = _yaml([portable(_http_trigger(trigger))])
    for timer in _of(TimeTrigger.objects.all(), function):
        files[f"specs/timetrigger-{timer.name}.yaml"] = _yaml([portable(_time_trigger(timer))])
    for queue in _of(QueueTrigger.objects.all(), function):
        files[f"specs/mqtrigger-{queue.name}.yaml"] = _yaml([portable(_queue_trigger(queue))])
    return _zipped(files)


def _environments(function: Function | None) -> list[Environment]:
    if function is not None:
        return [function.environment]
    return list(Environment.objects.order_by("name"))


def _of(triggers: QuerySet[Any], function: Function | None) -> QuerySet[Any]:
    triggers = triggers.select_related("function", "alias", "version").order_by("name")
    return triggers if function is None else triggers.filter(function=function)


def _deployment_config(environments: list[Environment], functions: list[Function]) -> dict[str, Any]:
    """The folder's uid: the one that created most of these objects when a spec did (so that an
    export of an applied folder keeps its uid), else one derived from the tenant."""
    names = [("Environment", e.name) for e in environments] + [("Function", f.name) for f in functions]
    owners = Counter(
        row.spec_uid for row in SpecObject.objects.all() if (row.kind, row.name) in set(names)
    ).most_common(1)
    uid = (
        owners[0][0]
        if owners
        else str(uuid.uuid5(uuid.NAMESPACE_URL, f"faas-portal:{current_tenant().slug}"))
    )
    return {"apiVersion": manifests.API_VERSION, "kind": "DeploymentConfig", "name": EXPORT_NAME, "uid": uid}


def portable(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without what belongs to one cluster: namespaces (references keep ``namespace: ""``,
    as Fission writes them), labels and status."""
    metadata = {"name": obj["metadata"]["name"]}
    if obj["metadata"].get("annotations"):
        metadata["annotations"] = obj["metadata"]["annotations"]
    return {**obj, "metadata": metadata, "spec": _no_namespaces(obj["spec"])}


def _no_namespaces(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: "" if k == "namespace" else _no_namespaces(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_no_namespaces(item) for item in node]
    return node


def _environment(environment: Environment) -> dict[str, Any]:
    obj = manifests.environment_manifest(_NAMESPACE, specs.environment_spec(environment))
    obj["spec"]["runtime"].pop("podspec", None)  # the portal's own, added when it deploys
    return obj


def _function_files(function: Function) -> dict[str, bytes]:
    """The function's spec file (ArchiveUploadSpec, Package, Function, as ``fission fn create
    --spec`` writes them) and its draft's files under ``<function>/``."""
    code = draft_contents(function.draft)
    upload = {
        "kind": "ArchiveUploadSpec",
        "name": f"{function.name}-archive",
        "include": [f"{function.name}/*"],
    }
    # With requirements.txt the archive is a source to build (the portal's builder pip-installs it).
    which = "source" if "requirements.txt" in code else "deployment"
    package = {
        "apiVersion": manifests.API_VERSION, "kind": "Package", "metadata": {"name": f"{function.name}-pkg"},
        "spec": {"environment": {"namespace": "", "name": function.environment.name},
                 which: {"type": "url", "url": f"{ARCHIVE_PREFIX}{upload['name']}", "checksum": {}}},
    }  # fmt: skip
    files = {f"specs/function-{function.name}.yaml": _yaml([upload, package, portable(_function(function))])}
    return files | {f"{function.name}/{path}": data for path, data in sorted(code.items())}


def _function(function: Function) -> dict[str, Any]:
    spec = specs.function_spec(function)
    bare = manifests.FunctionSpec(**{**spec.__dict__, "environment_variables": {}})
    obj = manifests.function_manifest(_NAMESPACE, function.name, bare, f"{function.name}-pkg", "")
    del obj["spec"]["package"]["packageref"]["resourceversion"]  # Fission's own to set
    if spec.environment_variables:  # the portal's; Fission has no field for them
        text = json.dumps(dict(spec.environment_variables), sort_keys=True)
        obj["metadata"]["annotations"][ENVIRONMENT_VARIABLES_ANNOTATION] = text
    return obj


def _target(trigger: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """TARGET_ANNOTATION on ``obj`` when ``trigger`` calls an alias or a version, not the draft."""
    if trigger.target_kind == TargetKind.ALIAS:
        obj["metadata"]["annotations"] = {TARGET_ANNOTATION: f"alias:{trigger.alias.name}"}
    elif trigger.target_kind == TargetKind.VERSION:
        obj["metadata"]["annotations"] = {TARGET_ANNOTATION: f"version:{trigger.version.number}"}
    return obj


def _http_trigger(trigger: Trigger) -> dict[str, Any]:
    route = manifests.TriggerSpec(name=trigger.name, methods=tuple(trigger.methods), path=trigger.path,
                                  is_prefix=trigger.is_prefix, keep_prefix=trigger.keep_prefix,
                                  target={trigger.function.name: 100})  # fmt: skip
    obj = manifests.httptrigger_manifest(
        _NAMESPACE, current_tenant().slug, route, function=trigger.function.name
    )
    # The path as the tenant wrote it: the portal serves it under /<tenant>/, whichever tenant applies it.
    obj["spec"]["prefix" if trigger.is_prefix else "relativeurl"] = trigger.path
    return _target(trigger, obj)


def _time_trigger(trigger: TimeTrigger) -> dict[str, Any]:
    timer = manifests.TimeTriggerSpec(name=trigger.name, cron=trigger.cron, method=trigger.method,
                                      subpath=trigger.subpath, target=trigger.function.name)  # fmt: skip
    obj = manifests.timetrigger_manifest(
        _NAMESPACE, current_tenant().slug, timer, function=trigger.function.name
    )
    return _target(trigger, obj)


def _queue_trigger(trigger: QueueTrigger) -> dict[str, Any]:
    fields = ("mq_type", "topic", "resp_topic", "error_topic", "max_retries", "content_type",
              "polling_interval",
              "cooldown_period", "min_replicas", "max_replicas")  # fmt: skip
    queue = manifests.QueueTriggerSpec(name=trigger.name, target=trigger.function.name,
                                       **{f: getattr(trigger, f) for f in fields})  # fmt: skip
    objects = manifests.queuetrigger_manifests(
        _NAMESPACE, current_tenant().slug, queue, function=trigger.function.name
    )
    obj = objects[-1]
    obj["spec"]["metadata"] = dict(trigger.metadata)  # the tenant's own: the defaults are filled in at deploy
    return _target(trigger, obj)


def _yaml(documents: list[dict[str, Any]]) -> bytes:
    return yaml.safe_dump_all(
        documents, sort_keys=True, default_flow_style=False, explicit_start=True
    ).encode()


def _header_yaml(document: dict[str, Any]) -> bytes:
    return _HEADER.encode() + yaml.safe_dump(document, sort_keys=True, default_flow_style=False).encode()


def _zipped(files: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="spec-export-") as folder:
        root = Path(folder)
        for path, data in files.items():
            target = root.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return make_zip(root)
