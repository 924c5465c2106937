"""``faas trigger http|time|mq``: what calls a function (routes, schedules, message queues)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cli.output import emit, output_option
from cli.state import State, function_path, key_values, pass_state

# kind -> (the API's collection under the function, the table's columns)
KINDS = {
    "http": ("triggers", ("name", "methods", "path", "target_kind", "alias", "version")),
    "time": ("time-triggers", ("name", "cron", "method", "subpath", "target_kind", "alias", "version")),
    "mq": ("queue-triggers", ("name", "mq_type", "topic", "resp_topic", "error_topic", "target_kind")),
}


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """What the trigger calls: the draft (default), an alias, or a version."""
    command = click.option("--version", "version", type=click.IntRange(min=1), help="Call this version.")(
        command
    )
    command = click.option("--alias", "alias", help="Call this alias.")(command)
    return click.option(
        "--target", "target_kind", type=click.Choice(["draft", "alias", "version"]), default="draft",
        show_default=True, help="What the trigger calls.",
    )(command)  # fmt: skip


def _target(values: dict[str, Any]) -> dict[str, Any]:
    kind = values["target_kind"]
    if kind == "draft" and (values["alias"] or values["version"]):
        kind = "alias" if values["alias"] else "version"  # --alias X alone means --target alias
    return {"target_kind": kind, "alias": values["alias"], "version": values["version"]}


@click.group()
def trigger() -> None:
    """Triggers: HTTP routes (http), schedules (time), message queues (mq)."""


def _kind_group(kind: str, summary: str) -> click.Group:
    collection, columns = KINDS[kind]
    group = click.Group(kind, help=summary)

    @group.command("list")
    @click.argument("name")
    @output_option
    @pass_state
    def listing(state: State, name: str, fmt: str) -> None:
        """List function NAME's triggers of this kind."""
        emit(list(state.api.items(function_path(name, collection))), fmt, columns)

    @group.command("delete")
    @click.argument("name")
    @click.argument("trigger_name", metavar="TRIGGER")
    @pass_state
    def deletion(state: State, name: str, trigger_name: str) -> None:
        """Delete trigger TRIGGER of function NAME (the portal redeploys)."""
        state.api.json("DELETE", function_path(name, collection, trigger_name))
        click.echo(f"Deleted {kind} trigger {trigger_name} of {name}.")

    trigger.add_command(group)
    return group


def _create(kind: str, state: State, name: str, fmt: str, body: dict[str, Any]) -> None:
    emit(state.api.post(function_path(name, KINDS[kind][0]), body), fmt)


http_group = _kind_group("http", "HTTP triggers: routes on the router to the function.")
time_group = _kind_group("time", "Time triggers: a cron schedule calls the function.")
mq_group = _kind_group("mq", "Message-queue triggers: each message of a topic calls the function.")


@http_group.command("create")
@click.argument("name")
@click.argument("trigger_name", metavar="TRIGGER")
@click.option("--path", required=True, help="The router path (/hello, /items/{id}).")
@click.option(
    "--method", "methods", multiple=True, default=("GET",), show_default=True, help="Repeat for more."
)
@click.option("--prefix", "is_prefix", is_flag=True, help="Match every path under --path.")
@click.option("--keep-prefix", is_flag=True, help="Pass the prefix on to the function.")
@target_options
@output_option
@pass_state
def http_create(state: State, /, name: str, trigger_name: str, fmt: str, **values: Any) -> None:
    """Route --path to function NAME as trigger TRIGGER."""
    body = {
        "name": trigger_name, "methods": [m.upper() for m in values["methods"]], "path": values["path"],
        "is_prefix": values["is_prefix"], "keep_prefix": values["keep_prefix"], **_target(values),
    }  # fmt: skip
    _create("http", state, name, fmt, body)


@time_group.command("create")
@click.argument("name")
@click.argument("trigger_name", metavar="TRIGGER")
@click.option(
    "--cron", required=True, help="Fission's cron syntax (5 or 6 fields, @hourly, @every 90s); UTC."
)
@click.option("--method", default="POST", show_default=True, help="The HTTP method of each call.")
@click.option("--subpath", default="/", show_default=True, help="The path the function is called with.")
@target_options
@output_option
@pass_state
def time_create(state: State, /, name: str, trigger_name: str, fmt: str, **values: Any) -> None:
    """Call function NAME on a schedule, as trigger TRIGGER."""
    body = {"name": trigger_name, "cron": values["cron"], "method": values["method"].upper(),
            "subpath": values["subpath"], **_target(values)}  # fmt: skip
    _create("time", state, name, fmt, body)


@mq_group.command("create")
@click.argument("name")
@click.argument("trigger_name", metavar="TRIGGER")
@click.option(
    "--type", "mq_type", required=True, help="The broker: nats-jetstream, rabbitmq, redis, kafka ..."
)
@click.option("--topic", required=True, help="The topic (stream, queue) to consume.")
@click.option("--resp-topic", default="", help="Where the function's answers go.")
@click.option("--error-topic", default="", help="Where failed messages go.")
@click.option("--max-retries", type=click.IntRange(0, 10), default=3, show_default=True)
@click.option("--content-type", default="application/json", show_default=True)
@click.option("--metadata", multiple=True, help="KEY=VALUE of the scaler's metadata (repeat).")
@click.option(
    "--connection", multiple=True, help="KEY=VALUE of the broker connection, stored as a Secret (repeat)."
)
@target_options
@output_option
@pass_state
def mq_create(state: State, /, name: str, trigger_name: str, fmt: str, **values: Any) -> None:
    """Call function NAME for each message of --topic, as trigger TRIGGER."""
    body = {
        "name": trigger_name, "mq_type": values["mq_type"], "topic": values["topic"],
        "resp_topic": values["resp_topic"], "error_topic": values["error_topic"],
        "max_retries": values["max_retries"], "content_type": values["content_type"],
        "metadata": key_values(values["metadata"], "--metadata"), **_target(values),
    }  # fmt: skip
    if values["connection"]:
        body["connection"] = key_values(values["connection"], "--connection")
    _create("mq", state, name, fmt, body)
