"""The capture policy on an HTTPTrigger (dataplane/manifests.py ``CapturePolicy``,
``CAPTURE_ANNOTATION``): it validates against Fission's CRD, the local runtime reads it back,
bad policies never reach a data plane, and a trigger without one is built as before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataplane import manifests
from dataplane.manifests import CAPTURE_ANNOTATION, CapturePolicy, InvalidManifest, TriggerSpec
from dataplane.namespaces import namespace_for
from runtime.objects import parse_httptrigger
from testsupport.schemas import crd_errors

TENANT = "acme"
NS = namespace_for(TENANT)
ALIAS = TriggerSpec(name="hello-live", methods=("GET", "POST"), path="/hello", is_prefix=False,
                    keep_prefix=False, target={"hello-v1": 90, "hello-v2": 10})  # fmt: skip


def build(capture: CapturePolicy | None = None) -> dict[str, Any]:
    return manifests.httptrigger_manifest(NS, TENANT, ALIAS, capture=capture)


def test_the_policy_is_an_annotation_the_crd_accepts_and_the_runtime_reads_back() -> None:
    policy = CapturePolicy(
        "hello", codes=(500, "4xx"), max_requests=20, max_body_bytes=1024, retention_s=3600
    )
    obj = build(policy)
    value = obj["metadata"]["annotations"][CAPTURE_ANNOTATION]
    assert json.loads(value) == {"function": "hello", "codes": [500, "4xx"], "max_requests": 20,
                                 "max_body_bytes": 1024, "retention_s": 3600}  # fmt: skip
    assert crd_errors(obj) == []
    parsed = parse_httptrigger(obj, NS)
    assert parsed.capture is not None
    assert (parsed.capture.function, parsed.capture.codes, parsed.capture.max_requests) == (
        "hello",
        (500, "4xx"),
        20,
    )
    assert (parsed.capture.max_body_bytes, parsed.capture.retention_s) == (1024, 3600)
    assert parsed.weights == {"hello-v1": 90, "hello-v2": 10}


def test_the_defaults_capture_5xx_fifty_requests_64_kib_three_days() -> None:
    policy = CapturePolicy("hello")
    assert json.loads(policy.to_annotation()) == {"function": "hello", "codes": ["5xx"], "max_requests": 50,
                                                  "max_body_bytes": 65536, "retention_s": 259200}  # fmt: skip


def test_without_a_policy_the_trigger_is_built_as_before() -> None:
    obj = build()
    assert "annotations" not in obj["metadata"]
    assert obj == manifests.httptrigger_manifest(NS, TENANT, ALIAS)
    assert parse_httptrigger(obj, NS).capture is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"codes": ()}, "codes"), ({"codes": (600,)}, "codes"), ({"codes": ("6xx",)}, "codes"),
        ({"max_requests": 0}, "max_requests"), ({"max_requests": 1001}, "max_requests"),
        ({"max_body_bytes": 1048577}, "max_body_bytes"), ({"retention_s": 59}, "retention_s"),
        ({"retention_s": 30 * 86400 + 1}, "retention_s"), ({"function": "Not A Name"}, "function"),
    ],
)  # fmt: skip
def test_a_policy_out_of_bounds_raises_invalid_manifest_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidManifest, match=named):
        CapturePolicy(**{"function": "hello", **fields})


def test_the_bounds_themselves_are_allowed() -> None:
    for fields in ({"max_requests": 1, "max_body_bytes": 0, "retention_s": 60},
                   {"max_requests": 1000, "max_body_bytes": 1048576, "retention_s": 30 * 86400}):  # fmt: skip
        assert crd_errors(build(CapturePolicy("hello", codes=(100, 599, "1xx", "5xx"), **fields))) == []
