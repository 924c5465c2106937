"""``make run``: start the embedded services, set up the database, then supervise every process.

Usage: ``python -m portal.up``. PostgreSQL and Redis are embedded (data in ``PORTAL_DATA_DIR``,
default ``.data/``) unless ``DATABASE_URL`` / ``REDIS_URL`` are set. The ASGI server, the Celery
worker, Celery beat and the local runtime (router on 127.0.0.1:8888) run under honcho, which
stops all of them on Ctrl-C; with ``PORTAL_BACKEND=kubernetes``, also the asynchronous
invocations' dispatcher (``manage.py async_dispatcher``). The key of the stored secrets is
generated into ``secrets_keys`` there unless PORTAL_SECRETS_KEYS(_FILE) is set; one that does not
open the stored secrets stops start-up, once the database is migrated. A Prometheus, when
installed, scrapes the runtime and the portal with their metrics tokens and answers only with the
password generated into ``prometheus-password`` (``prometheus_process``).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from honcho.manager import Manager

from core.crypto import generate_key
from portal import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    path = Path(os.environ.get("PORTAL_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _random_token() -> str:
    return secrets.token_urlsafe(50)


def persistent_secret(path: Path, make: Callable[[], str] = _random_token) -> str:
    """A value generated once by ``make`` and kept in the data directory (sessions survive restarts)."""
    if not path.exists():
        # Created 0600: readable by this user only, from the first byte on.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as output:
            output.write(make())
    path.chmod(0o600)
    return path.read_text().strip()


def prepare_environment(data: Path) -> embedded.Redis | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    # DEBUG stays off unless PORTAL_DEBUG=1 is given: people see the portal's own error pages
    # (a debug page shows settings and code to whoever hits an error), and static files are
    # served as in production, from what `make setup` collected.
    os.environ.setdefault("PORTAL_BEAT_SCHEDULE", str(data / "celerybeat-schedule"))
    if not os.environ.get("PORTAL_SECRET_KEY") and not os.environ.get("PORTAL_SECRET_KEY_FILE"):
        os.environ["PORTAL_SECRET_KEY"] = persistent_secret(data / "secret_key")
    if not os.environ.get("PORTAL_SECRETS_KEYS") and not os.environ.get("PORTAL_SECRETS_KEYS_FILE"):
        # The key of the tenants' stored secrets: losing this file loses them (README, Configuration).
        os.environ["PORTAL_SECRETS_KEYS"] = persistent_secret(data / "secrets_keys", generate_key)
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
SHARED_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "PORTAL_SECRET_KEY", "RUNTIME_TOKEN", "PORTAL_DEBUG", "PROMETHEUS_URL",
    "PORTAL_SECRETS_KEYS", "PORTAL_SECRETS_KEYS_FILE", "PROMETHEUS_USERNAME", "PROMETHEUS_PASSWORD",
)  # fmt: skip


def write_running_env(data: Path) -> None:
    """Let ``manage.py`` in another shell reach the embedded services while this runs."""
    path = data / ENV_FILE
    path.write_text("".join(f"{name}={_one_line(name)}\n" for name in SHARED_VARIABLES if name in os.environ))
    path.chmod(0o600)


def _one_line(name: str) -> str:
    value = os.environ[name]
    # running.env holds a line per variable; a key list may be given on several (commas do as well).
    return ",".join(value.split()) if name == "PORTAL_SECRETS_KEYS" else value


def set_up_database(data: Path) -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate_schemas", interactive=False, verbosity=0)
    check_secrets_keys()
    call_command("bootstrap", password_file=str(data / "admin-password"))


def check_secrets_keys() -> None:
    """Stop here, with the message naming PORTAL_SECRETS_KEYS, when it is missing, malformed or
    does not hold the key the stored secrets were encrypted with (not at the first secret read)."""
    # Imported here, not at the top: models may only be imported once django.setup() has run.
    from tenants import secrets_keys

    try:
        secrets_keys.verify()
    except ImproperlyConfigured as error:
        raise SystemExit(f"faas-portal: {error}") from None


ASYNC_DISPATCHER = "async-dispatcher"


def processes(host: str, port: int) -> dict[str, str]:
    python = sys.executable
    commands = {
        "web": f"{python} -m uvicorn portal.asgi:application --host {host} --port {port} "
        "--ws websockets-sansio --lifespan off --no-access-log",
        "worker": f"{python} -m celery -A portal worker --loglevel INFO --concurrency 2",
        "beat": f"{python} -m celery -A portal beat --loglevel INFO",
        "runtime": f"{python} -m runtime",
    }
    if os.environ.get("PORTAL_BACKEND") == "kubernetes":
        # Fission's router has no queue: the portal runs asynchronous invocations (docs/kubernetes.md).
        commands[ASYNC_DISPATCHER] = f"{python} manage.py async_dispatcher"
    return commands


# The portal's processes sum their metrics through this directory; the runtime keeps its own.
PORTAL_PROCESSES = ("web", "worker", "beat")
# Only the portal's Django processes hold its keys (Django's, and the stored secrets'): never the
# runtime (nor, through it, a function's worker) or Prometheus.
SECRETS_KEYS_PROCESSES = (*PORTAL_PROCESSES, ASYNC_DISPATCHER)
SECRETS_KEYS_VARIABLES = (
    "PORTAL_SECRETS_KEYS",
    "PORTAL_SECRETS_KEYS_FILE",
    "PORTAL_SECRET_KEY",
    "PORTAL_SECRET_KEY_FILE",
)
# Only the portal's Django processes read metrics from Prometheus, so only they hold its password.
PROMETHEUS_PASSWORD_VARIABLES = ("PROMETHEUS_PASSWORD", "PROMETHEUS_PASSWORD_FILE")
# Prometheus reads its scrape tokens from files (0600) and keeps only its password's hash: it holds
# no token in its environment, the runtime's control token least of all.
PROMETHEUS = "prometheus"
PROMETHEUS_WITHHELD = (
    "RUNTIME_TOKEN", "RUNTIME_TOKEN_FILE", "RUNTIME_METRICS_TOKEN", "RUNTIME_METRICS_TOKEN_FILE",
    "PORTAL_METRICS_TOKEN", "PORTAL_METRICS_TOKEN_FILE",
)  # fmt: skip
PROMETHEUS_USER = "portal"


def prepare_metrics(data: Path) -> None:
    """The tokens Prometheus scrapes the portal and the runtime with (the runtime's /metrics
    token, not its control token), and a clean multiprocess directory (files of processes from
    an earlier run would be summed in)."""
    if not os.environ.get("PORTAL_METRICS_TOKEN") and not os.environ.get("PORTAL_METRICS_TOKEN_FILE"):
        os.environ["PORTAL_METRICS_TOKEN"] = persistent_secret(data / "metrics-token")
    if not os.environ.get("RUNTIME_METRICS_TOKEN") and not os.environ.get("RUNTIME_METRICS_TOKEN_FILE"):
        os.environ["RUNTIME_METRICS_TOKEN"] = persistent_secret(data / "runtime-metrics-token")
    multiproc = data / "metrics-multiproc"
    shutil.rmtree(multiproc, ignore_errors=True)
    multiproc.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)


def process_environment(name: str) -> dict[str, str]:
    """The environment process ``name`` of ``make run`` starts with: ours, less what it must not hold."""
    env = dict(os.environ)
    if name not in PORTAL_PROCESSES:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    withheld: tuple[str, ...] = ()
    if name not in SECRETS_KEYS_PROCESSES:
        withheld += (*SECRETS_KEYS_VARIABLES, *PROMETHEUS_PASSWORD_VARIABLES)
    if name == PROMETHEUS:
        withheld += PROMETHEUS_WITHHELD
    for variable in withheld:
        env.pop(variable, None)
    return env


def _secret(name: str) -> str:
    """The value of secret ``name``, given as itself or in ``<name>_FILE``."""
    path = os.environ.get(f"{name}_FILE")
    return Path(path).read_text().strip() if path else os.environ[name]


def prometheus_process(data: Path, portal: str) -> str | None:
    """The command of a Prometheus scraping the runtime and the portal every 5 s (each with its
    metrics token), if its binary is installed and PROMETHEUS_URL does not point elsewhere. Its
    API and UI ask for basic auth: user ``portal``, the password generated once into
    ``prometheus-password``. Sets PROMETHEUS_URL, PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD."""
    binary = embedded.prometheus_binary()
    if os.environ.get("PROMETHEUS_URL") or binary is None:
        return None
    home = data / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    password = persistent_secret(data / "prometheus-password")
    config, web_config = embedded.write_prometheus_files(
        home, _scrape_targets(home, portal), interval_s=5, users={PROMETHEUS_USER: password}
    )
    port = 9090 if embedded.port_free(9090) else embedded.free_port()
    os.environ.pop("PROMETHEUS_PASSWORD_FILE", None)  # it would win over the password set here
    os.environ.update({
        "PROMETHEUS_URL": f"http://127.0.0.1:{port}", "PROMETHEUS_USERNAME": PROMETHEUS_USER,
        "PROMETHEUS_PASSWORD": password, "METRICS_SCRAPE_INTERVAL_S": "5",
        "METRICS_JOB": "runtime",  # only the runtime's series are function metrics
    })  # fmt: skip
    return shlex.join(embedded.prometheus_command(binary, config, home / "data", port, web_config=web_config))


def _scrape_targets(home: Path, portal: str) -> list[embedded.ScrapeTarget]:
    """The runtime's and the portal's /metrics, each with its token in a file of ``home`` (0600)."""
    runtime = f"127.0.0.1:{os.environ.get('RUNTIME_CONTROL_PORT', '8889')}"
    runtime_token = embedded.write_private(home / "runtime-token", _secret("RUNTIME_METRICS_TOKEN"))
    portal_token = embedded.write_private(home / "portal-token", _secret("PORTAL_METRICS_TOKEN"))
    return [
        embedded.ScrapeTarget("runtime", runtime, token_file=runtime_token),
        embedded.ScrapeTarget("portal", portal, token_file=portal_token),
    ]


def _metrics_line(started: bool, data: Path) -> str:
    url = os.environ.get("PROMETHEUS_URL")
    if started:
        return (
            f"Prometheus: {url} (scrapes the runtime and the portal every 5 s; user "
            f"{PROMETHEUS_USER}, password in {data / 'prometheus-password'})"
        )
    if url:
        return f"Prometheus: {url} (PROMETHEUS_URL)"
    return (
        "Prometheus: not found, so metrics pages will say metrics are unavailable. "
        "Install it (Debian: apt-get install --no-install-recommends prometheus) or set PROMETHEUS_URL."
    )


def main() -> int:
    data = data_dir()
    redis = prepare_environment(data)
    prepare_metrics(data)
    write_running_env(data)
    try:
        set_up_database(data)
        manager = Manager()
        host = os.environ.get("PORTAL_HOST", "127.0.0.1")
        port = int(os.environ.get("PORTAL_PORT", "8000"))
        # The runtime fetches package archives from here (as Fission's fetcher does).
        os.environ.setdefault("PORTAL_INTERNAL_URL", f"http://{host}:{port}")
        commands = processes(host, port)
        prometheus = prometheus_process(data, f"{host}:{port}")
        if prometheus is not None:
            commands[PROMETHEUS] = prometheus
            write_running_env(data)  # now with PROMETHEUS_URL
        for name, cmd in commands.items():
            manager.add_process(name, cmd, env=process_environment(name), cwd=str(BASE_DIR))
        print(f"\nfaas-portal: http://{host}:{port}/  (data in {data}; Ctrl-C stops everything)")
        print(_metrics_line(prometheus is not None, data) + "\n")
        manager.loop()
        return int(manager.returncode or 0)
    finally:
        (data / ENV_FILE).unlink(missing_ok=True)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
