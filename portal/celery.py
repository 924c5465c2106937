"""The Celery app. Tasks carry their tenant's schema explicitly (CONVENTIONS.md 5)."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def _start_in_public_schema(**kwargs: object) -> None:
    """A task must not inherit the schema a previous task left on the connection."""
    from django.db import connection

    connection.set_schema_to_public()  # type: ignore[attr-defined]


_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}


@signals.task_prerun.connect
def _timed(task_id: str, **kwargs: object) -> None:
    # Imported on use: portal/__init__.py loads this module before Django is set up, and
    # portal.metrics needs the settings and the models.
    from portal.metrics import task_started

    task_started(task_id)


@signals.task_postrun.connect
def _counted(task_id: str, task: object, state: str | None = None, **kwargs: object) -> None:
    # Imported on use, as in _timed.
    from portal.metrics import task_finished

    task_finished(str(getattr(task, "name", "unknown")), task_id, _OUTCOMES.get(state or "", "other"))
