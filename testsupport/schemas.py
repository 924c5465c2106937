"""Schema checks shared by the tests: Fission objects against ``shared/fission-crds`` (strict:
unknown fields are errors, as with ``fieldValidation=Strict``), Kubernetes objects with
kubernetes-validate in strict mode."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parents[2] / "shared" / "fission-crds"
PLURALS = {
    "Environment": "environments",
    "Package": "packages",
    "Function": "functions",
    "HTTPTrigger": "httptriggers",
    "TimeTrigger": "timetriggers",
    "MessageQueueTrigger": "messagequeuetriggers",
    "FissionTenant": "fissiontenants",
}


@cache
def crd_schema(plural: str) -> dict[str, Any]:
    """``spec.versions[0].schema.openAPIV3Schema`` of ``fission.io_<plural>.yaml``, as shipped."""
    crd = yaml.safe_load((CRDS / f"fission.io_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def strip_extensions(node: Any) -> Any:
    """The schema without ``x-kubernetes-*`` keys, which JSON Schema does not know."""
    if isinstance(node, dict):
        return {k: strip_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [strip_extensions(item) for item in node]
    return node


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of keys the schema does not declare. Kubernetes prunes (or, with strict field
    validation, refuses) them, while plain JSON Schema lets them through silently."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")
    if not isinstance(value, dict):
        return
    properties, extra = schema.get("properties"), schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None and key in properties:
            yield from unknown_fields(item, properties[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            yield from unknown_fields(item, extra, f"{path}.{key}")
        elif properties is not None and extra in (None, False):
            yield f"{path}.{key}"


def crd_errors(obj: dict[str, Any]) -> list[str]:
    schema = crd_schema(PLURALS[obj["kind"]])
    validator = jsonschema.Draft7Validator(strip_extensions(schema))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    return errors + [f"{field}: not in the CRD" for field in unknown_fields(obj, schema)]


SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def schema_errors(obj: dict[str, Any], kubernetes_version: str = "1.33") -> list[str]:
    """Why ``obj`` would be refused; [] when it is valid. Server-set metadata is ignored."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    clean = {k: v for k, v in obj.items() if k != "status"} | {"metadata": meta}
    if str(obj.get("apiVersion", "")).startswith("fission.io/"):
        return crd_errors(clean)
    try:
        kubernetes_validate.validate(clean, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return []
