"""How the tasks that talk to the data plane retry (CONVENTIONS.md 5): one policy, declared once.

A task decorated with ``**retrying(...)`` is acknowledged only after it ran (its service must be
idempotent), is re-queued when its worker dies, and retries TRANSIENT errors with exponential
backoff and jitter, a bounded number of times.
"""

from __future__ import annotations

from typing import Any

from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError

from dataplane.backends.base import TransientError

# Worth another try: the data plane's transient errors and a database connection that dropped.
TRANSIENT: tuple[type[Exception], ...] = (TransientError, OperationalError, InterfaceError)


def retrying(*, retries: int, backoff_max_s: int, automatic: bool = True) -> dict[str, Any]:
    """Celery task options. ``automatic=False`` leaves the retry to the task (``self.retry``
    with ``countdown=backoff_s(...)``: Celery's backoff options apply to automatic retries only),
    for a task that records a failure once the retries are spent."""
    options: dict[str, Any] = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "max_retries": retries,
        "retry_backoff": 2,
        "retry_backoff_max": backoff_max_s,
        "retry_jitter": True,
    }
    if automatic:
        options["autoretry_for"] = TRANSIENT
    return options


def backoff_s(retries: int, *, maximum: int) -> float:
    """The delay before retry number ``retries + 1``: 2, 4, 8 ... seconds up to ``maximum``,
    with full jitter (the policy ``retrying`` declares, for tasks that retry by hand)."""
    return float(
        get_exponential_backoff_interval(factor=2, retries=retries, maximum=maximum, full_jitter=True)
    )
