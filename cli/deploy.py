"""Following a deployment until it is live or failed, with its steps shown as they happen.

The client polls the deployment resource (``functions/<name>/deployments/<id>/``): each new entry
of its ``steps`` is printed as a line on stderr (stdout keeps the result, for ``-o json``); on a
terminal a spinner shows the current state between them. ``live`` ends it well, ``failed`` with
the deployment's ``reason``, and the deadline with the state it had reached.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import click

from cli.client import Api
from cli.errors import FAILED, CliError
from cli.output import console
from cli.state import function_path

FINAL = ("live", "failed")
POLL_S = 0.5


def start(api: Api, name: str) -> dict[str, Any]:
    """Start a deployment of ``name`` (the API builds the draft first when it needs to)."""
    deployment: dict[str, Any] = api.post(function_path(name, "deployments"))
    return deployment


def wait(api: Api, name: str, deployment_id: int, timeout_s: float) -> dict[str, Any]:
    """The deployment once live; CliError (exit 1) when it fails or the deadline passes."""
    shown = 0
    deadline = time.monotonic() + timeout_s
    with _spinner(f"{name}: deployment {deployment_id}") as spinner:
        while True:
            deployment: dict[str, Any] = api.get(function_path(name, "deployments", str(deployment_id)))
            for step in deployment["steps"][shown:]:
                click.echo(step_line(name, step), err=True)
            shown = len(deployment["steps"])
            if spinner is not None:
                spinner.update(f"{name}: {deployment['state']}")
            if deployment["state"] in FINAL or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    return finished(name, deployment, timeout_s)


def finished(name: str, deployment: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    if deployment["state"] == "live":
        return deployment
    if deployment["state"] == "failed":
        raise CliError(f"{name}: deployment {deployment['id']} failed: {deployment['reason']}", FAILED)
    raise CliError(
        f"{name}: deployment {deployment['id']} is still {deployment['state']} after {timeout_s:g} s.", FAILED
    )


def step_line(name: str, step: dict[str, Any]) -> str:
    at = str(step.get("at", ""))[11:19]  # the time of day of an ISO 8601 timestamp
    message = f": {step['message']}" if step.get("message") else ""
    return f"{at} {name}: {step['state']}{message}"


def _spinner(text: str) -> AbstractContextManager[Any]:
    """Rich's live status line on a terminal; nothing on a pipe (CI logs get the step lines only)."""
    screen = console(stderr=True)
    return screen.status(text) if screen.is_terminal else nullcontext()
