"""Which tenant a namespace belongs to, and the routes it may serve.

A tenant's namespace is ``<prefix>-<tenant>`` (``PORTAL_NAMESPACE_PREFIX``, the portal's setting)
and every route of that namespace lives under ``/<tenant>/``. The control API refuses an HTTPTrigger
outside it, and the router checks it again on every request, so that not even a stolen control
token lets one tenant serve (or intercept) another tenant's URLs.
"""

from __future__ import annotations

from runtime.errors import InvalidObject
from runtime.objects import HTTPTrigger


def tenant_of(namespace: str, prefix: str) -> str | None:
    """``acme`` for ``faas-acme`` (prefix ``faas``); None for a namespace that is no tenant's."""
    head, separator, tenant = namespace.partition(f"{prefix}-")
    if head or not separator or not tenant:
        return None
    return tenant


def route_root(namespace: str, prefix: str) -> str | None:
    """``/acme``: the path every route of the namespace starts with; None when it may have none."""
    tenant = tenant_of(namespace, prefix)
    return None if tenant is None else f"/{tenant}"


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def check_trigger(trigger: HTTPTrigger, prefix: str) -> None:
    """Raise InvalidObject unless the trigger's path is under its namespace's tenant root."""
    root = route_root(trigger.meta.namespace, prefix)
    where = "spec.prefix" if trigger.is_prefix else "spec.relativeurl"
    if root is None:
        message = f"namespace {trigger.meta.namespace!r} is not a tenant's ({prefix}-<tenant>): no routes"
        raise InvalidObject(message, field=where)
    if not under(trigger.path, root):
        raise InvalidObject(f"{where} must be under {root}/, the namespace's tenant", field=where)
