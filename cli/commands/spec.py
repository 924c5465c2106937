"""``faas spec apply|diff|export``: Fission spec folders (``specs/``) applied to and exported from a tenant.

The portal does the work (``spec/apply/`` and ``spec/export/``); the client zips the folder (the
specs and the source files their ArchiveUploadSpecs name) and unzips the export.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import click

from cli import archive, deploy
from cli.client import Api
from cli.errors import FAILED, CliError
from cli.output import emit, output_option
from cli.state import State, function_path, pass_state

PLAN_COLUMNS = ("action", "kind", "name", "file")
DIR_ARGUMENT = click.argument(
    "directory", metavar="[DIR]", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path)
)


@click.group()
def spec() -> None:
    """Fission spec folders: apply one to the tenant, show what it would change, export the tenant."""


def apply_spec(api: Api, directory: Path, *, dry_run: bool, delete: bool) -> dict[str, Any]:
    """POST the folder's zip to ``spec/apply/``; the plan the portal answered."""
    params = {"dry_run": "1" if dry_run else None, "delete": "1" if delete else None}
    response = api.request(
        "POST", "spec/apply/", content=archive.spec_zip(directory),
        headers={"Content-Type": "application/zip"}, params={k: v for k, v in params.items() if v},
    )  # fmt: skip
    result: dict[str, Any] = response.json()
    return result


def show_plan(result: dict[str, Any], fmt: str) -> None:
    if fmt != "table":
        emit(result, fmt)
        return
    emit(result["plan"], fmt, PLAN_COLUMNS)
    counts: dict[str, int] = {}
    for item in result["plan"]:
        counts[item["action"]] = counts.get(item["action"], 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing"
    click.echo(f"{'Plan (nothing changed)' if result['dry_run'] else 'Applied'}: {summary}.", err=True)


@spec.command("apply")
@DIR_ARGUMENT
@click.option("--dry-run", is_flag=True, help="Show the plan only; change nothing.")
@click.option("--delete", is_flag=True, help="Also delete what this spec created earlier and no longer has.")
@click.option("--wait", is_flag=True, help="Follow the deployments the apply started until live or failed.")
@click.option(
    "--timeout", "timeout_s", type=float, default=600, show_default=True, help="Seconds --wait waits."
)
@output_option
@pass_state
def spec_apply(
    state: State, directory: Path, dry_run: bool, delete: bool, wait: bool, timeout_s: float, fmt: str
) -> None:
    """Apply the Fission spec folder DIR (the specs folder, or a folder holding specs/; default .)."""
    result = apply_spec(state.api, directory, dry_run=dry_run, delete=delete)
    show_plan(result, fmt)
    if wait and not dry_run:
        wait_for_deployments(state.api, result, timeout_s)


def wait_for_deployments(api: Api, result: dict[str, Any], timeout_s: float) -> None:
    """Follow each deployment the apply started. The answer names them by id only, and a
    deployment lives under its function: the plan's functions are searched for those ids."""
    wanted = set(result.get("deployments") or [])
    names = [i["name"] for i in result["plan"] if i["kind"] == "Function" and i["action"] != "delete"]
    for name in names:
        recent = api.get(function_path(name, "deployments"), limit=20)["results"]
        for deployment in recent:
            if deployment["id"] in wanted:
                wanted.discard(deployment["id"])
                deploy.wait(api, name, deployment["id"], timeout_s)
    if wanted:
        click.echo(
            f"Not followed (no function of the plan has them): deployments {sorted(wanted)}.", err=True
        )


@spec.command("diff")
@DIR_ARGUMENT
@click.option("--delete", is_flag=True, help="Count what apply --delete would delete.")
@output_option
@pass_state
def spec_diff(state: State, directory: Path, delete: bool, fmt: str) -> None:
    """What `spec apply DIR` would change (a dry run); exit 1 when it would change anything."""
    result = apply_spec(state.api, directory, dry_run=True, delete=delete)
    show_plan(result, fmt)
    if result["changed"]:
        raise click.exceptions.Exit(FAILED)


@spec.command("export")
@click.option("--function", "function_name", help="Only this function and what it needs.")
@click.option(
    "--output-dir", "-o", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="The folder to write specs/ and the sources into.",
)  # fmt: skip
@pass_state
def spec_export(state: State, function_name: str | None, out: Path) -> None:
    """Export the tenant (or one function) as a Fission spec folder (Secret values never appear)."""
    params = {"function": function_name} if function_name else {}
    response = state.api.request("GET", "spec/export/", params=params)
    names = extract(response.content, out)
    click.echo(f"Wrote {len(names)} file(s) under {out}.", err=True)


def extract(data: bytes, out: Path) -> list[str]:
    """Unzip ``data`` into ``out``; a member naming a path outside ``out`` refuses the whole archive."""
    try:
        bundle = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise CliError(f"The export is not a zip archive: {error}", FAILED) from error
    root = out.resolve()
    names = [info.filename for info in bundle.infolist() if not info.is_dir()]
    for name in names:
        target = (root / name).resolve()
        if root not in target.parents:
            raise CliError(f"The export names a path outside {out}: {name!r}", FAILED)
    out.mkdir(parents=True, exist_ok=True)
    bundle.extractall(root)
    return names
