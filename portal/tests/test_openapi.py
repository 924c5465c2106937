from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--validate",
         "--urlconf", "portal.urls_schema", "--file", str(out)],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    schema = yaml.safe_load(out.read_text())
    paths = set(schema["paths"])
    assert {
        "/api/v1/tenants/",
        "/api/v1/me/",
        "/t/{tenant}/api/v1/members/",
        "/t/{tenant}/api/v1/tokens/",
        "/t/{tenant}/api/v1/quota/",
        "/t/{tenant}/api/v1/functions/",
        "/t/{tenant}/api/v1/functions/{function_name}/deployments/",
        "/t/{tenant}/api/v1/environments/",
        "/t/{tenant}/api/v1/logs/",
        "/t/{tenant}/api/v1/metrics/",
    } <= paths  # each app's routes: the document is put together like the tenant's urls
    assert "Error" in schema["components"]["schemas"]
    create = schema["paths"]["/t/{tenant}/api/v1/tokens/"]["post"]
    assert {"201", "400", "401", "403", "404"} <= set(create["responses"])


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/t/{tenant}/api/v1/tokens/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()  # Swagger UI comes from the sidecar, not a CDN


# Answers that are one object, though their views are a viewset's ``list``: drf-spectacular
# documented them as pages ({count, next, previous, results}) until they said otherwise.
OBJECT_ANSWERS = {
    "/t/{tenant}/api/v1/me/": "TenantMe",
    "/t/{tenant}/api/v1/quota/": "QuotaUsage",
    "/t/{tenant}/api/v1/metrics/": "TenantOverview",
    "/t/{tenant}/api/v1/logs/": "LogPage",
}


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "component"), OBJECT_ANSWERS.items())
def test_object_answers_are_documented_as_objects_not_pages(client, path, component):
    document = client.get("/api/schema/?format=json").json()
    get = document["paths"][path]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{component}"
    }
    assert "offset" not in {parameter["name"] for parameter in get.get("parameters", [])}


def _one_of_blank_twice(node, where=""):
    """Paths of ``oneOf`` whose branches a blank string matches both (it must match one)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _one_of_blank_twice(item, f"{where}/{index}")
    if not isinstance(node, dict):
        return
    branches = node.get("oneOf") or []
    blank = [b for b in branches if b.get("type") == "string" and b.get("maxLength", 1) == 0]
    patterns = [b["pattern"] for b in branches if b.get("type") == "string" and "pattern" in b]
    if blank and any(re.search(pattern, "") for pattern in patterns):
        yield where
    for key, value in node.items():
        yield from _one_of_blank_twice(value, f"{where}/{key}")


@pytest.mark.django_db
def test_a_blank_string_matches_exactly_one_branch_of_each_one_of(client):
    document = client.get("/api/schema/?format=json").json()
    entrypoint = document["components"]["schemas"]["Function"]["properties"]["entrypoint"]
    assert re.search(entrypoint["pattern"], "")  # "" (main.main) is a valid entrypoint
    assert list(_one_of_blank_twice(document)) == []
