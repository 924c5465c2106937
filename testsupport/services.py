"""Pytest plugin (loaded with ``-p``): real PostgreSQL and Redis for the suite.

It runs at import, before pytest-django reads the settings. When ``DATABASE_URL`` /
``REDIS_URL`` are not set, it starts an embedded PostgreSQL (in a temporary directory,
deleted afterwards) and a redis-server on a free port. If a service cannot start, tests
that need it skip, or fail when ``REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from portal import embedded

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
SERVICE_ERRORS: dict[str, str] = {}
_redis: embedded.Redis | None = None
_tmp = Path(tempfile.mkdtemp(prefix="portal-test-"))
# Registered before the embedded PostgreSQL's own exit handler, so it runs after it (atexit is
# last in, first out): the server has deleted its data by then, and nothing else is left behind.
atexit.register(shutil.rmtree, _tmp, ignore_errors=True)

os.environ.setdefault("PORTAL_SECRET_KEY", "test-only-secret-key-" + "x" * 40)
# A fixed Fernet key for the stored secrets (core/crypto.py); tests of rotation bring their own.
os.environ.setdefault("PORTAL_SECRETS_KEYS", "5ViB9zJdchLMoGrYLMdwKItJISTU_Ov_3njl8Ey-nLg=")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault(
    "PORTAL_STATIC_ROOT", str(Path(__file__).resolve().parent.parent / ".build" / "staticfiles")
)
os.environ.setdefault("PORTAL_BEAT_SCHEDULE", str(_tmp / "celerybeat-schedule"))
os.environ.setdefault("PORTAL_MEDIA_ROOT", str(_tmp / "media"))

# Metrics: a Prometheus at a fixed address (started by the ``prometheus`` fixture when a test
# needs it), scraping every second, asking for basic auth as make run's does; the portal's own
# /metrics token.
PROMETHEUS_PORT = embedded.free_port()
os.environ.setdefault("PROMETHEUS_URL", f"http://127.0.0.1:{PROMETHEUS_PORT}")
os.environ.setdefault("PROMETHEUS_USERNAME", "portal")
os.environ.setdefault("PROMETHEUS_PASSWORD", "test-prometheus-password")
os.environ.setdefault("METRICS_SCRAPE_INTERVAL_S", "1")
os.environ.setdefault("METRICS_JOB", "runtime")  # the job testsupport/prometheus.py scrapes it as
os.environ.setdefault("PORTAL_METRICS_TOKEN", "test-metrics-token")
if embedded.prometheus_binary() is None:
    SERVICE_ERRORS["prometheus"] = "no prometheus binary (make test installs Debian's prometheus)"

if not os.environ.get("DATABASE_URL"):
    try:
        os.environ["DATABASE_URL"] = embedded.start_postgres(_tmp / "postgres", on_exit="delete")
    except Exception as exc:  # noqa: BLE001 - reported by every test that needs it
        SERVICE_ERRORS["postgresql"] = repr(exc)
        os.environ["DATABASE_URL"] = "postgres://unavailable/none"

if not os.environ.get("REDIS_URL"):
    try:
        _redis = embedded.start_redis(_tmp / "redis", persist=False)
        os.environ["REDIS_URL"] = _redis.url
    except Exception as exc:  # noqa: BLE001 - reported by every test that needs it
        SERVICE_ERRORS["redis"] = repr(exc)
        os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"


def require(service: str) -> None:
    """Skip (or, with REQUIRE_SERVICES=1, fail) when ``service`` could not be started."""
    error = SERVICE_ERRORS.get(service)
    if error is None:
        return
    message = f"{service} is unavailable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _redis is not None:
        _redis.stop()
    shutil.rmtree(_tmp / "redis", ignore_errors=True)
