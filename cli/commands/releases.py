"""``faas version``, ``faas alias``, ``faas rollout``: publishing and releasing a function's code."""

from __future__ import annotations

from typing import Any

import click

from cli.output import emit, output_option
from cli.state import State, function_path, pass_state

ROLLOUT_COLUMNS = ("id", "alias", "from_version", "to_version", "state", "step", "weight", "created_at")


@click.group()
def version() -> None:
    """A function's published versions (immutable builds)."""


@version.command("publish")
@click.argument("name")
@click.option("--description", default="", help="What changed.")
@output_option
@pass_state
def version_publish(state: State, name: str, description: str, fmt: str) -> None:
    """Publish NAME's built draft as its next version."""
    emit(state.api.post(function_path(name, "versions"), {"description": description}), fmt)


@version.command("list")
@click.argument("name")
@output_option
@pass_state
def version_list(state: State, name: str, fmt: str) -> None:
    """List NAME's versions."""
    rows = list(state.api.items(function_path(name, "versions")))
    emit(rows, fmt, ("number", "description", "created_by", "created_at"))


@click.group()
def alias() -> None:
    """A function's aliases: a name for a version, or two versions splitting the calls."""


def parse_weights(text: str) -> dict[str, int]:
    """``1=90,2=10`` as the alias body: the bigger share is ``version``, the other the canary.
    One version (``3=100``) takes every call. Weights are whole percents adding up to 100."""
    pairs: list[tuple[int, int]] = []
    for part in text.split(","):
        number, sep, weight = part.strip().partition("=")
        if not (sep and number.isdigit() and weight.isdigit()):
            raise click.BadParameter(f"{part!r} is not VERSION=PERCENT.", param_hint="--weights")
        pairs.append((int(number), int(weight)))
    if len(pairs) > 2 or len({n for n, _ in pairs}) != len(pairs) or sum(w for _, w in pairs) != 100:
        raise click.BadParameter(
            "one or two different versions, with weights adding up to 100 (1=90,2=10).",
            param_hint="--weights",
        )
    pairs.sort(key=lambda pair: -pair[1])
    body: dict[str, Any] = {"version": pairs[0][0], "canary_version": None, "canary_weight": 0}
    if len(pairs) == 2:
        body.update(canary_version=pairs[1][0], canary_weight=pairs[1][1])
    return body


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--version", "number", type=click.IntRange(min=1), help="The version the alias names.")
@click.option("--weights", help="Two versions splitting the calls: VERSION=PERCENT,VERSION=PERCENT.")
@output_option
@pass_state
def alias_set(
    state: State, name: str, alias_name: str, number: int | None, weights: str | None, fmt: str
) -> None:
    """Create or change alias ALIAS of NAME (the portal redeploys)."""
    if (number is None) == (weights is None):
        raise click.UsageError("Give --version N or --weights V1=P1,V2=P2 (one of them).")
    body = parse_weights(weights) if weights else {"version": number}
    emit(state.api.post(function_path(name, "aliases"), {"name": alias_name, **body}), fmt)


@alias.command("list")
@click.argument("name")
@output_option
@pass_state
def alias_list(state: State, name: str, fmt: str) -> None:
    """List NAME's aliases."""
    emit(list(state.api.items(function_path(name, "aliases"))), fmt)


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@pass_state
def alias_delete(state: State, name: str, alias_name: str) -> None:
    """Delete alias ALIAS of NAME (the portal redeploys)."""
    state.api.json("DELETE", function_path(name, "aliases", alias_name))
    click.echo(f"Deleted alias {alias_name} of {name}.")


@click.group()
def rollout() -> None:
    """Rollouts: move an alias to a new version in judged steps."""


@rollout.command("start")
@click.argument("name")
@click.option("--alias", "alias_name", required=True, help="The alias to move.")
@click.option("--to-version", type=click.IntRange(min=1), required=True, help="The version to move it to.")
@click.option(
    "--weights", help="The new version's percent at each step, rising, ending at 100 (5,25,50,100)."
)
@click.option(
    "--increment", type=click.IntRange(1, 100), help="Instead of --weights: Fission's step (10: 10..100)."
)
@output_option
@pass_state
def rollout_start(
    state: State, name: str, alias_name: str, to_version: int, weights: str | None, increment: int | None,
    fmt: str,
) -> None:  # fmt: skip
    """Start a rollout of NAME's ALIAS to a version."""
    body: dict[str, Any] = {"alias": alias_name, "to_version": to_version}
    if weights:
        try:
            body["weights"] = [int(part) for part in weights.split(",")]
        except ValueError as error:
            raise click.BadParameter(
                f"{weights!r} is not numbers separated by commas.", param_hint="--weights"
            ) from error
    if increment:
        body["increment"] = increment
    emit(state.api.post(function_path(name, "rollouts"), body), fmt)


@rollout.command("status")
@click.argument("name")
@click.argument("rollout_id", required=False, type=int, metavar="[ID]")
@output_option
@pass_state
def rollout_status(state: State, name: str, rollout_id: int | None, fmt: str) -> None:
    """Show a rollout of NAME (its latest when no ID is given), with its decision log."""
    if rollout_id is None:
        page = state.api.get(function_path(name, "rollouts"), limit=1)["results"]
        if not page:
            raise click.UsageError(f"{name} has had no rollout.")
        rollout_id = page[0]["id"]
    emit(state.api.get(function_path(name, "rollouts", str(rollout_id))), fmt)


@rollout.command("list")
@click.argument("name")
@output_option
@pass_state
def rollout_list(state: State, name: str, fmt: str) -> None:
    """List NAME's rollouts, newest first."""
    emit(list(state.api.items(function_path(name, "rollouts"))), fmt, ROLLOUT_COLUMNS)


def _steer(verb: str, summary: str) -> click.Command:
    @click.argument("name")
    @click.argument("rollout_id", type=int, metavar="ID")
    @output_option
    @pass_state
    def command(state: State, name: str, rollout_id: int, fmt: str) -> None:
        emit(state.api.post(function_path(name, "rollouts", str(rollout_id), verb)), fmt)

    command.__doc__ = summary
    return rollout.command(verb)(command)


for _verb, _summary in (
    ("pause", "Pause rollout ID of NAME (the weights stay)."),
    ("resume", "Resume paused rollout ID of NAME."),
    ("promote", "Promote now: all of NAME's calls to the new version."),
    ("abort", "Abort: all of NAME's calls back to the old version."),
):
    _steer(_verb, _summary)
