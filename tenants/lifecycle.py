"""What a tenant's life means for the apps that keep data inside its schema.

The tenants app sits below those apps (docs/architecture.md), so it cannot call them. Each
plugs its reactions in here once, at start-up, from the project wiring (portal/apps.py):
the composition root imports both sides and connects them, and every import points down.
Each hook runs inside the tenant's schema, from a Celery task that retries on
``TransientError``, so a hook must be idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SchemaHooks:
    created: Callable[[], object]  # a new schema is migrated: create its defaults
    suspended: Callable[[], object]  # take everything of the tenant off the data plane
    resumed: Callable[[], object]  # bring back what was live before the suspension


_hooks: list[SchemaHooks] = []


def connect(hooks: SchemaHooks) -> None:
    """Register an app's hooks. Idempotent: connecting the same hooks twice keeps one."""
    if hooks not in _hooks:
        _hooks.append(hooks)


def schema_created() -> None:
    for hooks in _hooks:
        hooks.created()


def suspended() -> None:
    for hooks in _hooks:
        hooks.suspended()


def resumed() -> None:
    for hooks in _hooks:
        hooks.resumed()
