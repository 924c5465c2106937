"""Printing what the API answered: ``--output table|json|yaml`` (a table by default).

JSON and YAML print the API's objects as they are, for scripts (``jq``, ``yq``); a table shows
the columns a person needs, one row per object, or one row per field for a single object.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "yaml")

output_option = click.option(
    "--output", "-o", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="How to print the result.",
)  # fmt: skip


def console(stderr: bool = False) -> Console:
    """Rich's console; wide when not a terminal, so a pipe gets whole rows."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False)


def cell(value: Any) -> str:
    """One value as a table cell: nothing for null, compact JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def emit(data: Any, fmt: str, columns: Sequence[str] = ()) -> None:
    """Print ``data`` (an object or a list of objects) in ``fmt``; ``columns`` for a table of a list."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n"))
    elif isinstance(data, list):
        emit_rows(data, columns)
    else:
        emit_fields(data)


def emit_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    names = list(columns) or list(rows[0])
    table = Table(*[name.upper() for name in names], box=None, pad_edge=False)
    for row in rows:
        table.add_row(*[cell(row.get(name)) for name in names])
    console().print(table)


def emit_fields(item: dict[str, Any]) -> None:
    table = Table(box=None, show_header=False, pad_edge=False)
    for key, value in item.items():
        table.add_row(f"{key}:", cell(value))
    console().print(table)
