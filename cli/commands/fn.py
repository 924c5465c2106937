"""``faas fn``: functions, their code, deployments, test calls and logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cli import archive, deploy
from cli.client import Api
from cli.errors import FAILED, CliError
from cli.output import emit, output_option
from cli.state import State, function_path, key_values, pass_state

COLUMNS = ("name", "environment", "executor", "last_deployment_state", "updated_at")

# The function settings the API takes (functions/config.py), as options: (option, field, type).
SETTINGS: tuple[tuple[str, str, Any], ...] = (
    ("--env", "environment", str),
    ("--executor", "executor", click.Choice(["poolmgr", "newdeploy"])),
    ("--entrypoint", "entrypoint", str),
    ("--min-scale", "min_scale", int),
    ("--max-scale", "max_scale", int),
    ("--target-cpu", "target_cpu", int),
    ("--concurrency", "concurrency", int),
    ("--requests-per-pod", "requests_per_pod", int),
    ("--timeout", "timeout_s", int),
    ("--idle-timeout", "idle_timeout_s", int),
    ("--memory", "memory_mb", int),
    ("--cpu", "cpu_millis", int),
    ("--async-retries", "async_retries", int),
    ("--async-max-event-age", "async_max_event_age_s", int),
)


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The settings as options (each optional: left out, the default or the current value stays)."""
    for option, field, kind in reversed(SETTINGS):
        command = click.option(option, field, type=kind, help=f"The function's {field}.")(command)
    many = (
        ("--env-var", "env_vars", "NAME=value: an environment variable (repeat; replaces all of them)."),
        ("--secret", "secrets", "A Secret of the tenant the function reads (repeat; replaces the list)."),
        ("--configmap", "configmaps", "A ConfigMap of the tenant the function reads (repeat; replaces)."),
    )
    for option, name, text in many:
        command = click.option(option, name, multiple=True, help=text)(command)
    return command


def settings_body(values: dict[str, Any]) -> dict[str, Any]:
    """The API body of the settings given on the command line."""
    body = {field: values[field] for _, field, _ in SETTINGS if values.get(field) is not None}
    if values.get("env_vars"):
        body["environment_variables"] = key_values(values["env_vars"], "--env-var")
    for name in ("secrets", "configmaps"):
        if values.get(name):
            body[name] = list(values[name])
    return body


@click.group()
def fn() -> None:
    """Functions: create, change, push code, deploy, test, logs."""


@fn.command("list")
@output_option
@pass_state
def fn_list(state: State, fmt: str) -> None:
    """List the tenant's functions."""
    emit(list(state.api.items("functions/")), fmt, COLUMNS)


@fn.command()
@click.argument("name")
@click.option("--starter", help="The code the draft starts from (hello by default).")
@settings_options
@output_option
@pass_state
def create(state: State, /, name: str, starter: str | None, fmt: str, **values: Any) -> None:
    """Create function NAME (with a hello-world draft; push your code with `fn code push`)."""
    body = {"name": name, **settings_body(values), **({"starter": starter} if starter else {})}
    emit(state.api.post("functions/", body), fmt)


@fn.command()
@click.argument("name")
@output_option
@pass_state
def get(state: State, name: str, fmt: str) -> None:
    """Show function NAME and its settings."""
    emit(state.api.get(function_path(name)), fmt)


@fn.command()
@click.argument("name")
@settings_options
@output_option
@pass_state
def update(state: State, /, name: str, fmt: str, **values: Any) -> None:
    """Change settings of function NAME (those given; the portal redeploys it)."""
    body = settings_body(values)
    if not body:
        raise click.UsageError("Nothing to change: give at least one setting (see --help).")
    emit(state.api.json("PATCH", function_path(name), json=body), fmt)


@fn.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: State, name: str, yes: bool) -> None:
    """Delete function NAME and remove it from the data plane."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("Refusing to delete without confirmation: pass --yes.")
        click.confirm(f"Delete function {name}?", abort=True)
    state.api.json("DELETE", function_path(name))
    click.echo(f"Deleted {name}.")


@fn.group()
def code() -> None:
    """A function's draft code."""


@code.command("push")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@output_option
@pass_state
def code_push(state: State, name: str, path: Path, fmt: str) -> None:
    """Replace the draft of NAME with PATH: a folder (zipped on the fly), a .py file or a .zip."""
    filename, data = archive.upload_of(path)
    answer = state.api.json("POST", function_path(name, "upload"), files={"file": (filename, data)})
    if fmt != "table":
        emit(answer, fmt)
        return
    count = archive.file_count(filename, data)
    click.echo(f"Pushed {filename} ({count} file(s)) to {name} (draft revision {answer['revision']}).")
    for problem in answer.get("problems") or []:
        click.echo(f"warning: {problem['file']}:{problem.get('line')}: {problem['message']}", err=True)


@fn.command("deploy")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Follow the deployment's steps until it is live or failed.")
@click.option(
    "--timeout", "timeout_s", type=float, default=300, show_default=True, help="Seconds --wait waits."
)
@output_option
@pass_state
def fn_deploy(state: State, name: str, wait: bool, timeout_s: float, fmt: str) -> None:
    """Deploy NAME (its draft is built first when needed); exit 1 when the deployment fails."""
    deployment = deploy.start(state.api, name)
    if wait:
        click.echo(f"Deployment {deployment['id']} of {name} started.", err=True)
        deployment = deploy.wait(state.api, name, deployment["id"], timeout_s)
    if fmt != "table":
        emit(deployment, fmt)
    elif wait:
        click.echo(f"{name} is live (deployment {deployment['id']}).")
    else:
        click.echo(f"Deployment {deployment['id']} of {name} is {deployment['state']}.")


@fn.command("test")
@click.argument("name")
@click.option("--data", "-d", help="The request body: text, @FILE, or - for standard input.")
@click.option("--method", "-X", help="The HTTP method (POST when --data is given, else GET).")
@click.option("--path", help="The router path to call (default: the function's first HTTP trigger).")
@click.option("--header", "-H", "headers", multiple=True, help="K:V, a request header (repeat).")
@output_option
@pass_state
def fn_test(
    state: State, name: str, data: str | None, method: str | None, path: str | None,
    headers: tuple[str, ...], fmt: str,
) -> None:  # fmt: skip
    """Call NAME through the router (a test call): prints status, body and the call's logs.
    Exit 1 when the function answered 400 or more, or did not answer."""
    body = {
        "method": (method or ("POST" if data is not None else "GET")).upper(),
        "path": path or _trigger_path(state.api, name),
        "headers": _headers(headers),
        "body": _body(data),
    }
    invocation = state.api.post(function_path(name, "invoke"), body)
    if fmt != "table":
        emit(invocation, fmt)
    else:
        _show_invocation(invocation)
    if invocation.get("status") is None or invocation["status"] >= 400:
        raise CliError(invocation.get("error") or f"{name} answered {invocation.get('status')}.", FAILED)


def _trigger_path(api: Api, name: str) -> str:
    triggers = list(api.items(function_path(name, "triggers")))
    if not triggers:
        raise click.UsageError(f"{name} has no HTTP trigger: pass --path.")
    return str(triggers[0]["path"]).split("{")[0] or "/"


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not NAME:VALUE.", param_hint="--header")
        found[key.strip()] = value.strip()
    return found


def _body(data: str | None) -> str:
    if data is None:
        return ""
    if data == "-":
        return sys.stdin.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"cannot read {data[1:]}: {error}", param_hint="--data") from error
    return data


def _show_invocation(invocation: dict[str, Any]) -> None:
    click.echo(f"Status: {invocation.get('status')}  ({invocation.get('duration_ms')} ms, "
               f"request {invocation.get('request_id') or '-'})")  # fmt: skip
    if invocation.get("error"):
        click.echo(f"Error: {invocation['error']}")
    click.echo(invocation.get("response_body") or "")
    logs = invocation.get("logs") or []
    if logs:
        click.echo("--- logs")
        for line in logs:
            click.echo(line.get("message", "") if isinstance(line, dict) else str(line))


@fn.command("logs")
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--since", help="Lines since: an ISO 8601 time, or a duration back from now (30s, 10m, 2h, 1d)."
)
@click.option("--request-id", help="Only the lines of this request.")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True,
              help="At most this many (the newest) lines, before following.")  # fmt: skip
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between polls (--follow)."
)
@pass_state
def fn_logs(
    state: State, name: str, follow: bool, since: str | None, request_id: str | None, limit: int,
    interval: float,
) -> None:  # fmt: skip
    """Print NAME's log lines, oldest first (the logs API); --follow polls for new ones."""
    query = {"function": name, "request_id": request_id, "since": _since(since), "limit": limit}
    seen: dict[str, float] = {}
    latest = _print_new(state.api, query, seen)
    while follow:
        time.sleep(interval)
        # From a little before the newest line seen: lines written meanwhile may carry an earlier time.
        query = {**query, "since": _iso(latest - 5) if latest else query["since"], "limit": 500}
        latest = max(latest, _print_new(state.api, query, seen))


def _print_new(api: Api, query: dict[str, Any], seen: dict[str, float]) -> float:
    """Print the lines of one page not printed before, oldest first; the newest time seen (0: none)."""
    records = api.get("logs/", **query)["results"]
    for record in sorted(records, key=lambda r: r["time"]):
        if record["id"] not in seen:
            seen[record["id"]] = record["time"]
            click.echo(_log_line(record))
    _forget_old(seen)
    return max(seen.values(), default=0.0)


def _forget_old(seen: dict[str, float], keep: int = 5000) -> None:
    """Keep the ids of the newest lines only: following for hours must not grow without bound."""
    if len(seen) > keep:
        for key, _ in sorted(seen.items(), key=lambda item: item[1])[: len(seen) - keep]:
            del seen[key]


def _log_line(record: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(record["time"], UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    request = record.get("request_id") or "-"
    return f"{at} {record.get('version') or '-'} {request} {record['message']}"


def _since(value: str | None) -> str | None:
    """``--since`` as the ISO 8601 time the API takes."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        return _iso(time.time() - int(value[:-1]) * units[value[-1]])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise click.BadParameter(
            f"{value!r} is neither a time nor a duration.", param_hint="--since"
        ) from error
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _iso(epoch: float) -> str:
    return (datetime.fromtimestamp(0, UTC) + timedelta(seconds=epoch)).isoformat()
