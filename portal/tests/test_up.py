"""``make run``'s Prometheus: a configuration Prometheus itself accepts, scraping the runtime and
the portal (each with its metrics token), asking for a password generated once, and nothing
started when PROMETHEUS_URL points elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from portal import embedded, up

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None and os.environ.get("REQUIRE_SERVICES") != "1",
    reason="Debian's prometheus (with promtool) is not installed; make test installs it",
)


@pytest.fixture
def clean_env(monkeypatch: Any) -> Any:
    """What the code under test sets in os.environ is put back afterwards (monkeypatch restores
    every name it touched), so later tests and the processes they start never see it."""
    names = (
        "PROMETHEUS_URL", "PROMETHEUS_BINARY", "PORTAL_METRICS_TOKEN", "PORTAL_METRICS_TOKEN_FILE",
        "RUNTIME_CONTROL_PORT", "METRICS_SCRAPE_INTERVAL_S", "PROMETHEUS_MULTIPROC_DIR", "METRICS_JOB",
        "PROMETHEUS_USERNAME", "PROMETHEUS_PASSWORD", "PROMETHEUS_PASSWORD_FILE", "RUNTIME_METRICS_TOKEN",
        "RUNTIME_METRICS_TOKEN_FILE",
    )  # fmt: skip
    for name in names:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_make_run_starts_a_prometheus_that_scrapes_the_runtime_and_the_portal(
    tmp_path: Path, clean_env: Any
) -> None:
    clean_env.setenv("RUNTIME_CONTROL_PORT", "18889")
    up.prepare_metrics(tmp_path)
    command = up.prometheus_process(tmp_path, "127.0.0.1:8000")

    assert command is not None
    assert os.environ["PROMETHEUS_URL"].startswith("http://127.0.0.1:")
    assert (os.environ["METRICS_SCRAPE_INTERVAL_S"], os.environ["METRICS_JOB"]) == ("5", "runtime")
    config = tmp_path / "prometheus" / "prometheus.yml"
    assert f"--config.file={config}" in command
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"]: job for job in json.loads(config.read_text())["scrape_configs"]}
    assert jobs["runtime"]["static_configs"] == [{"targets": ["127.0.0.1:18889"]}]
    assert jobs["portal"]["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    token_file = Path(jobs["portal"]["authorization"]["credentials_file"])
    assert (
        token_file.read_text()
        == os.environ["PORTAL_METRICS_TOKEN"]
        == (tmp_path / "metrics-token").read_text()
    )
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(config.read_text())["global"]["scrape_interval"] == "5s"


def test_the_multiprocess_directory_starts_empty(tmp_path: Path, clean_env: Any) -> None:
    stale = tmp_path / "metrics-multiproc" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"from an earlier run")
    up.prepare_metrics(tmp_path)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(stale.parent)
    assert list(stale.parent.iterdir()) == []


def test_an_external_prometheus_or_none_at_all_starts_nothing(tmp_path: Path, clean_env: Any) -> None:
    up.prepare_metrics(tmp_path)
    clean_env.setenv("PROMETHEUS_URL", "http://prometheus.example:9090")
    assert up.prometheus_process(tmp_path, "127.0.0.1:8000") is None
    clean_env.delenv("PROMETHEUS_URL")
    clean_env.setenv("PATH", str(tmp_path))  # no prometheus binary to be found
    assert embedded.prometheus_binary() is None
    assert up.prometheus_process(tmp_path, "127.0.0.1:8000") is None
    assert "PROMETHEUS_URL" not in os.environ
    assert "not found" in up._metrics_line(False, tmp_path)


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_make_run_protects_prometheus_and_scrapes_the_runtime_with_its_metrics_token(
    tmp_path: Path, clean_env: Any
) -> None:
    clean_env.setenv("PROMETHEUS_PASSWORD_FILE", str(tmp_path / "elsewhere"))  # must not win
    up.prepare_metrics(tmp_path)
    command = up.prometheus_process(tmp_path, "127.0.0.1:8000")

    assert command is not None
    password_file, web_config = tmp_path / "prometheus-password", tmp_path / "prometheus" / "web.yml"
    password = password_file.read_text()
    assert len(password) > 40
    assert (os.environ["PROMETHEUS_USERNAME"], os.environ["PROMETHEUS_PASSWORD"]) == ("portal", password)
    assert "PROMETHEUS_PASSWORD_FILE" not in os.environ
    assert f"--web.config.file={web_config}" in command
    assert (_mode(password_file), _mode(web_config)) == ("0o600", "0o600")
    assert f"password in {password_file})" in up._metrics_line(True, tmp_path)
    checked = subprocess.run(
        ["promtool", "check", "web-config", str(web_config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    users = json.loads(web_config.read_text())["basic_auth_users"]
    assert list(users) == ["portal"]
    assert password not in web_config.read_text()
    assert bcrypt.checkpw(password.encode(), users["portal"].encode())

    config = json.loads((tmp_path / "prometheus" / "prometheus.yml").read_text())
    runtime_job = next(job for job in config["scrape_configs"] if job["job_name"] == "runtime")
    token_file = Path(runtime_job["authorization"]["credentials_file"])
    assert (
        token_file.read_text()
        == os.environ["RUNTIME_METRICS_TOKEN"]
        == (tmp_path / "runtime-metrics-token").read_text()
    )
    assert _mode(token_file) == _mode(tmp_path / "runtime-metrics-token") == "0o600"


def test_the_password_is_generated_once(tmp_path: Path, clean_env: Any) -> None:
    up.prepare_metrics(tmp_path)
    up.prometheus_process(tmp_path, "127.0.0.1:8000")
    first = os.environ["PROMETHEUS_PASSWORD"]
    clean_env.delenv("PROMETHEUS_URL")
    up.prometheus_process(tmp_path, "127.0.0.1:8000")
    assert os.environ["PROMETHEUS_PASSWORD"] == first


def test_prometheus_holds_no_token_and_only_the_portal_its_password(tmp_path: Path, clean_env: Any) -> None:
    clean_env.setenv("RUNTIME_TOKEN", "control-token")
    up.prepare_metrics(tmp_path)
    up.prometheus_process(tmp_path, "127.0.0.1:8000")
    prometheus = up.process_environment("prometheus")
    for name in ("RUNTIME_TOKEN", "RUNTIME_METRICS_TOKEN", "PORTAL_METRICS_TOKEN", "PROMETHEUS_PASSWORD"):
        assert name not in prometheus
    assert "PROMETHEUS_PASSWORD" not in up.process_environment("runtime")
    assert up.process_environment("runtime")["RUNTIME_METRICS_TOKEN"] == os.environ["RUNTIME_METRICS_TOKEN"]
    for name in up.PORTAL_PROCESSES:
        assert up.process_environment(name)["PROMETHEUS_PASSWORD"] == os.environ["PROMETHEUS_PASSWORD"]
