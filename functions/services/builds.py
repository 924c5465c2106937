"""The request side of builds: record one and queue it (the worker side is build_runs.py)."""

from __future__ import annotations

from django.db import connection, transaction

from audit import services as audit
from functions import tasks
from functions.models import Build, Function
from functions.runs.builds import build_name, build_new


@transaction.atomic
def build_create(*, function: Function) -> Build:
    """A queued build of the draft as it is now; a task runs it after commit."""
    with audit.change("build.create", object_type="build", object_name=function.name) as done:
        build = build_new(function=function)
        done.object_name = build_name(build)
        done.after = {"draft_revision": build.draft_revision, "state": build.state}
    schema = connection.schema_name  # type: ignore[attr-defined]
    transaction.on_commit(lambda: tasks.build_task.delay(schema, build.pk))
    return build
