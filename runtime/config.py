"""Runtime settings from environment variables (no Django here)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    pass


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _at_least(name: str, default: int, low: int) -> int:
    value = _int(name, default)
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return value


def _brokers(name: str) -> frozenset[str]:
    """A comma-separated list of ``host:port`` (``[v6]:port`` for IPv6), each with its port."""
    entries = frozenset(e.strip().lower() for e in os.environ.get(name, "").split(",") if e.strip())
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must list host:port entries separated by commas, got {entry!r}")
    return entries


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "on", "true", "yes"):
        return True
    if value.lower() in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {value!r}")


def python_runtimes_dir() -> Path:
    """Where ``make runtimes`` built the interpreters functions run with: ``RUNTIME_PYTHON_RUNTIMES_DIR``,
    by default ``<repository>/.build/runtimes``. Read once per process, by ``interpreters.installed``
    (an Environment's parser needs it too, so it is not a field of Config)."""
    return Path(os.environ.get("RUNTIME_PYTHON_RUNTIMES_DIR") or REPOSITORY / ".build" / "runtimes").resolve()


def _secret(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name)


@dataclass(frozen=True)
class Config:
    host: str
    router_port: int
    control_port: int
    token: str
    state_dir: Path
    redis_url: str | None
    max_body_bytes: int
    log_stream_maxlen: int
    sandbox: bool
    sandbox_uid_base: int
    # The router's compiled front (runtime.fastpath) when it is built; off: ServerProtocol alone.
    fastpath: bool
    worker_tmp_bytes: int
    worker_pids: int
    namespace_prefix: str
    app_log_twice: bool = False
    # The read-only token /metrics also accepts (RUNTIME_METRICS_TOKEN), so that Prometheus need
    # not hold the control token; None: /metrics takes the control token only.
    metrics_token: str | None = None
    # The brokers message-queue triggers may connect to (runtime.events.queues): host:port as the
    # trigger names it; the runtime's own Redis never, even when listed.
    mq_brokers: frozenset[str] = frozenset()
    async_queue_limit: int = 10_000  # events a namespace may hold (queued, running, waiting)
    async_backoff_ms: int = 1000  # before an event's first retry (the second waits twice as long)
    async_concurrency: int = 16  # events dispatched at once (at most half of them one namespace's)

    @classmethod
    def from_env(cls) -> Config:
        state_dir = Path(os.environ.get("RUNTIME_STATE_DIR", ".data/runtime")).resolve()
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state_dir.chmod(0o700)  # tokens, sockets, every tenant's packages: the runtime's user only
        token = _secret("RUNTIME_TOKEN")
        if not token:
            token_file = state_dir / "token"
            if not token_file.exists():
                # Created 0600: readable by the runtime's user only, from the first byte on.
                fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as output:
                    output.write(secrets.token_urlsafe(32))
            token = token_file.read_text().strip()
        return cls(
            host=os.environ.get("RUNTIME_HOST", "127.0.0.1"),
            router_port=_int("RUNTIME_ROUTER_PORT", 8888),
            control_port=_int("RUNTIME_CONTROL_PORT", 8889),
            token=token,
            state_dir=state_dir,
            redis_url=os.environ.get("REDIS_URL") or None,
            max_body_bytes=_int("RUNTIME_MAX_BODY_BYTES", 10 * 1024 * 1024),
            log_stream_maxlen=_int("RUNTIME_LOG_STREAM_MAXLEN", 100_000),
            sandbox=_flag("RUNTIME_SANDBOX", True),
            fastpath=_flag("RUNTIME_FASTPATH", True),
            sandbox_uid_base=_int("RUNTIME_SANDBOX_UID_BASE", 200_000),
            worker_tmp_bytes=_int("RUNTIME_WORKER_TMP_BYTES", 64 * 1024 * 1024),
            worker_pids=_int("RUNTIME_WORKER_PIDS", 128),
            # The portal's setting: namespace "<prefix>-<tenant>" serves only routes under /<tenant>/.
            namespace_prefix=os.environ.get("PORTAL_NAMESPACE_PREFIX", "faas"),
            # Fission's app logger writes each line twice (stdout, and stderr through Flask's
            # default handler); off: once, on stdout. On: exactly as Fission.
            app_log_twice=_flag("RUNTIME_APP_LOG_TWICE", False),
            metrics_token=_secret("RUNTIME_METRICS_TOKEN") or None,
            mq_brokers=_brokers("RUNTIME_MQ_BROKERS"),
            async_queue_limit=_at_least("RUNTIME_ASYNC_QUEUE_LIMIT", 10_000, 1),
            async_backoff_ms=_at_least("RUNTIME_ASYNC_BACKOFF_MS", 1000, 0),
            async_concurrency=_at_least("RUNTIME_ASYNC_CONCURRENCY", 16, 1),
        )
