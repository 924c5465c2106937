"""``make run``: start the embedded services, set up the database, then supervise every process.

Usage: ``python -m portal.up``. PostgreSQL and Redis are embedded (data in ``PORTAL_DATA_DIR``,
default ``.data/``) unless ``DATABASE_URL`` / ``REDIS_URL`` are set. The ASGI server, the Celery
worker, Celery beat and the local runtime (router on 127.0.0.1:8888) run under honcho, which
stops all of them on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from honcho.manager import Manager

from portal import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    path = Path(os.environ.get("PORTAL_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def persistent_secret(path: Path) -> str:
    """A value generated once and kept in the data directory (sessions survive restarts)."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def prepare_environment(data: Path) -> embedded.Redis | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("PORTAL_DEBUG", "1")
    os.environ.setdefault("PORTAL_BEAT_SCHEDULE", str(data / "celerybeat-schedule"))
    if not os.environ.get("PORTAL_SECRET_KEY") and not os.environ.get("PORTAL_SECRET_KEY_FILE"):
        os.environ["PORTAL_SECRET_KEY"] = persistent_secret(data / "secret_key")
    os.environ.setdefault("RUNTIME_STATE_DIR", str(data / "runtime"))
    if not os.environ.get("RUNTIME_TOKEN") and not os.environ.get("RUNTIME_TOKEN_FILE"):
        os.environ["RUNTIME_TOKEN"] = persistent_secret(data / "runtime-token")
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = embedded.start_postgres(data / "postgres")
    redis = None
    if not os.environ.get("REDIS_URL"):
        redis = embedded.start_redis(data / "redis")
        os.environ["REDIS_URL"] = redis.url
    return redis


ENV_FILE = "running.env"
SHARED_VARIABLES = ("DATABASE_URL", "REDIS_URL", "PORTAL_SECRET_KEY", "RUNTIME_TOKEN", "PORTAL_DEBUG")


def write_running_env(data: Path) -> None:
    """Let ``manage.py`` in another shell reach the embedded services while this runs."""
    path = data / ENV_FILE
    path.write_text(
        "".join(f"{name}={os.environ[name]}\n" for name in SHARED_VARIABLES if name in os.environ)
    )
    path.chmod(0o600)


def set_up_database(data: Path) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    call_command("bootstrap", password_file=str(data / "admin-password"))


def processes(host: str, port: int) -> dict[str, str]:
    python = sys.executable
    return {
        "web": f"{python} -m uvicorn portal.asgi:application --host {host} --port {port} "
        "--ws websockets --lifespan off --no-access-log",
        "worker": f"{python} -m celery -A portal worker --loglevel INFO --concurrency 2",
        "beat": f"{python} -m celery -A portal beat --loglevel INFO",
        "runtime": f"{python} -m runtime",
    }


def main() -> int:
    data = data_dir()
    redis = prepare_environment(data)
    write_running_env(data)
    try:
        set_up_database(data)
        manager = Manager()
        host = os.environ.get("PORTAL_HOST", "127.0.0.1")
        port = int(os.environ.get("PORTAL_PORT", "8000"))
        # The runtime fetches package archives from here (as Fission's fetcher does).
        os.environ.setdefault("PORTAL_INTERNAL_URL", f"http://{host}:{port}")
        for name, cmd in processes(host, port).items():
            manager.add_process(name, cmd, env=dict(os.environ), cwd=str(BASE_DIR))
        print(f"\nfaas-portal: http://{host}:{port}/  (data in {data}; Ctrl-C stops everything)\n")
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        (data / ENV_FILE).unlink(missing_ok=True)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
