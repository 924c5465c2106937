from __future__ import annotations

import os
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
