"""Runtime settings from environment variables (no Django here)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


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

    @classmethod
    def from_env(cls) -> Config:
        state_dir = Path(os.environ.get("RUNTIME_STATE_DIR", ".data/runtime")).resolve()
        token = _secret("RUNTIME_TOKEN")
        if not token:
            token_file = state_dir / "token"
            state_dir.mkdir(parents=True, exist_ok=True)
            if not token_file.exists():
                token_file.write_text(secrets.token_urlsafe(32))
                token_file.chmod(0o600)
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
        )
