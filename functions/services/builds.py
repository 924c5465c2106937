"""The request side of builds: record one and queue it (the worker side is build_runs.py)."""

from __future__ import annotations

from django.db import connection, transaction

from functions import tasks
from functions.models import Build, Function
from functions.runs.builds import build_new


@transaction.atomic
def build_create(*, function: Function) -> Build:
    """A queued build of the draft as it is now; a task runs it after commit."""
    build = build_new(function=function)
    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: tasks.build_task.delay(schema, build.pk))
    return build
