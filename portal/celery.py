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
