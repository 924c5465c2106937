"""A real Prometheus (Debian's ``prometheus``) for the metrics tests, scraping the session's
runtime and ASGI server every second, each with its metrics token, and asking for basic auth
(``PROMETHEUS_USERNAME`` / ``PROMETHEUS_PASSWORD``) as ``make run``'s does.

Its address is fixed when the suite starts (``PROMETHEUS_URL``, testsupport/services.py), so the
portal processes started before it already point at it; until a test asks for this fixture,
nothing listens there and the portal answers "metrics unavailable".
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from portal import embedded
from testsupport.runtime import METRICS_TOKEN
from testsupport.services import PROMETHEUS_PORT, require

SCRAPE_INTERVAL_S = 1


@dataclass
class PrometheusProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    auth: tuple[str, str]  # the basic auth (username, password) it asks for

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, auth=self.auth, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def wait_for_scrapes(self, jobs: tuple[str, ...], timeout: float = 60.0) -> None:
        """Until every job's target was scraped once (the first sample takes about 6 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                up = {r["metric"]["job"] for r in self.query("up == 1")}
            except httpx.HTTPError:
                up = set()
            if set(jobs) <= up:
                return
            time.sleep(0.2)
        pytest.fail(f"prometheus did not scrape {jobs} within {timeout} s")


@pytest.fixture(scope="session")
def prometheus(
    runtime_session: Any, live_server_url: str, tmp_path_factory: Any
) -> Iterator[PrometheusProcess]:
    require("prometheus")
    binary = embedded.prometheus_binary()
    assert binary is not None
    home = tmp_path_factory.mktemp("prometheus")
    portal_token = embedded.write_private(home / "portal-token", os.environ["PORTAL_METRICS_TOKEN"])
    runtime_token = embedded.write_private(home / "runtime-token", METRICS_TOKEN)
    targets = [
        embedded.ScrapeTarget(
            "runtime", f"127.0.0.1:{runtime_session.control_port}", token_file=runtime_token
        ),
        embedded.ScrapeTarget("portal", live_server_url.removeprefix("http://"), token_file=portal_token),
    ]
    auth = (os.environ["PROMETHEUS_USERNAME"], os.environ["PROMETHEUS_PASSWORD"])
    config, web_config = embedded.write_prometheus_files(
        home, targets, interval_s=SCRAPE_INTERVAL_S, users=dict([auth])
    )
    log = home / "prometheus.log"
    command = embedded.prometheus_command(
        binary, config, home / "data", PROMETHEUS_PORT, web_config=web_config, retention="1d"
    )
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = PrometheusProcess(f"http://127.0.0.1:{PROMETHEUS_PORT}", process, log, auth)
    server.wait_for_scrapes(("runtime", "portal"))
    yield server
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def no_prometheus(settings: Any) -> str:
    """This process' portal reads metrics from an address where nothing listens, whether or not
    the session's Prometheus runs (another test may have started it)."""
    from portal.embedded import free_port

    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"
    return str(settings.PROMETHEUS_URL)
