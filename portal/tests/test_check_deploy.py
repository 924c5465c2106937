"""``manage.py check --deploy`` with the settings the Helm chart gives the web server: no warning.

The environment is the chart's own, rendered by Helm's engine (portal/tests/test_chart.py), with
the files its existing Secret would mount written to a temporary folder: whatever the chart sets
(HTTPS, allowed hosts, trusted origins, the secret key from a file) is what Django checks.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from portal.tests.test_chart import ROOT, pod_templates, rendered

SECRETS_MOUNT = "/var/run/secrets/faas-portal/"
# What each file of the existing Secret holds in a real install (docs/install-kubernetes.md), by
# the variable that names the file (the values choose the files' names).
SECRET_FILES = {
    "DATABASE_URL_FILE": "postgres://portal:pw@postgres.example.com:5432/portal",
    "REDIS_URL_FILE": "redis://redis.example.com:6379/0",
    "PORTAL_SECRET_KEY_FILE": secrets.token_urlsafe(50),
    "PORTAL_SECRETS_KEYS_FILE": Fernet.generate_key().decode(),
    "PORTAL_METRICS_TOKEN_FILE": secrets.token_urlsafe(32),
    "PROMETHEUS_USERNAME_FILE": "portal",
    "PROMETHEUS_PASSWORD_FILE": secrets.token_urlsafe(24),
}


def web_environment(values: str, folder: Path) -> dict[str, str]:
    """The web container's variables, its Secret's files moved under ``folder``."""
    (spec,) = [spec for component, spec in pod_templates(rendered(values)) if component == "web"]
    environment: dict[str, str] = {}
    for variable in spec["containers"][0]["env"]:
        value = str(variable["value"])
        if value.startswith(SECRETS_MOUNT):
            file = folder / value.removeprefix(SECRETS_MOUNT)
            file.write_text(SECRET_FILES[variable["name"]])
            value = str(file)
        environment[variable["name"]] = value
    return environment


@pytest.mark.parametrize("values", ["default", "production"])
def test_check_deploy_finds_nothing_with_the_charts_settings(values: str, tmp_path: Path) -> None:
    environment: dict[str, Any] = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **web_environment(values, tmp_path),
    }
    assert environment["PORTAL_HTTPS"] == "1"
    assert environment["PORTAL_SECRET_KEY_FILE"].startswith(str(tmp_path))

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr
