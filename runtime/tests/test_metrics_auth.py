"""The runtime's /metrics lists every namespace's functions and calls: it answers only a holder
of the metrics token (RUNTIME_METRICS_TOKEN) or of the control token, and with no metrics token
configured only the control token; /healthz stays open. A real ``python -m runtime``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runtime.config import Config
from testsupport.runtime import METRICS_TOKEN, TOKEN, RuntimeProcess


def _metrics(runtime: RuntimeProcess, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.get(runtime.control + "/metrics", headers=headers, timeout=30)


def _assert_refused(response: httpx.Response) -> None:
    """401 in the runtime's error shape, saying how to authenticate, and no metric in sight."""
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "The metrics token is missing or wrong.",
            "detail": None,
        }
    }
    assert "fission_function_calls_total" not in response.text


def test_metrics_need_the_metrics_token(runtime: RuntimeProcess) -> None:
    for authorization in (None, "", "Bearer", "Bearer wrong", f"Basic {METRICS_TOKEN}",
                          f"Bearer {METRICS_TOKEN}x", METRICS_TOKEN):  # fmt: skip
        _assert_refused(_metrics(runtime, authorization))
    for token in (METRICS_TOKEN, TOKEN):  # the control token's holder may read everything anyway
        answer = _metrics(runtime, f"Bearer {token}")
        assert answer.status_code == 200
        assert "runtime_workers" in answer.text
    assert httpx.get(runtime.control + "/healthz", timeout=30).json() == {"status": "ok"}


def test_the_metrics_token_opens_nothing_else(runtime: RuntimeProcess) -> None:
    url = runtime.control + "/apis/fission.io/v1/namespaces/faas-acme/functions"
    response = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert response.status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200


def test_without_a_metrics_token_metrics_need_the_control_token(tmp_path: Path) -> None:
    runtime = RuntimeProcess(state_dir=tmp_path / "runtime", env={"RUNTIME_METRICS_TOKEN": ""}).start()
    try:
        for authorization in (None, f"Bearer {METRICS_TOKEN}", "Bearer wrong"):
            _assert_refused(_metrics(runtime, authorization))
        assert _metrics(runtime, f"Bearer {TOKEN}").status_code == 200
    finally:
        runtime.stop()


def test_the_metrics_token_may_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "metrics-token"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("RUNTIME_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_TOKEN", "control")
    monkeypatch.setenv("RUNTIME_METRICS_TOKEN", "from-the-variable")
    monkeypatch.setenv("RUNTIME_METRICS_TOKEN_FILE", str(secret))
    assert Config.from_env().metrics_token == "from-a-file"
    monkeypatch.delenv("RUNTIME_METRICS_TOKEN_FILE")
    assert Config.from_env().metrics_token == "from-the-variable"
    monkeypatch.setenv("RUNTIME_METRICS_TOKEN", "")
    assert Config.from_env().metrics_token is None
