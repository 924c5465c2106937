"""Log search in the current tenant's namespace, through the data plane's backend.

The namespace comes from the tenant whose schema the connection is in, never from the request, so
a search cannot reach another tenant's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import DomainError, ValidationFailed
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import BackendError, InvalidCursor, LogQuery, LogRecord, portal_function_of
from functions.models import Function
from tenants.selectors import current_tenant

DRAFT = "draft"


class LogsUnavailable(DomainError):
    status = 503
    code = "logs_unavailable"


@dataclass(frozen=True)
class LogResults:
    records: list[dict[str, Any]]
    cursor: str | None


def log_record_json(record: LogRecord) -> dict[str, Any]:
    """A record as the API and the streams show it: the portal function and its version."""
    function = portal_function_of(record.function)
    version = record.function[len(function) + 1 :] if record.function != function else ""
    return {
        "id": record.id,
        "time": record.time,
        "function": function,
        "version": version,
        "request_id": record.request_id,
        "stream": record.stream,
        "message": record.message,
    }


STREAMS = ("stdout", "stderr")
# No log record is older: the stores bound a search by epoch milliseconds (Redis stream ids).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def filter_errors(
    *,
    function: str | None = None,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, list[str]]:
    """What is wrong with a log filter as a whole, by field (empty: nothing). Each field is
    checked on its own by the API's serializer, the page's form and the socket's subscription;
    these rules span fields or the log stores' range, and all three apply them from here."""
    errors: dict[str, list[str]] = {}
    if version and not function:
        errors["version"] = ["A version belongs to a function: name it."]
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment < EPOCH:
            errors[name] = [f"{name} must be 1970-01-01T00:00:00Z or later."]
    if since is not None and until is not None and since >= until:
        errors["until"] = ["until must be after since."]
    return errors


def fission_name(function: str, version: str) -> str:
    """``f-v3`` or ``f-draft`` for version ``v3`` or ``draft`` of ``f``; ValidationFailed for a
    pair no function can have (too long a name)."""
    try:
        return manifests.fission_name(function, None if version == DRAFT else int(version.removeprefix("v")))
    except ValueError as exc:
        raise ValidationFailed("No function has that version.", detail={"version": [str(exc)]}) from None


def log_search(
    *,
    function: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
    stream: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> LogResults:
    """One page of the tenant's log records, newest first. ValidationFailed for a cursor this
    API did not give; LogsUnavailable (503) when the log store cannot be read.

    Nothing from before the tenant existed is searched: a namespace (a slug) may have been used
    by a deleted tenant. Likewise a function's records are those of its own lifetime: one created
    under a deleted function's name starts empty (``_born``)."""
    tenant = current_tenant()
    born = _born(tenant.created_at.timestamp(), function)
    query = LogQuery(
        function=function,
        fission_name=fission_name(function, version) if function and version else None,
        request_id=request_id,
        stream=stream,
        since=max(since.timestamp(), born) if since else born,
        until=until.timestamp() if until else None,
        text=q,
        limit=limit,
        cursor=cursor,
    )
    namespace = tenant.namespace
    try:
        page = get_backend().search_logs(namespace, query)
    except InvalidCursor as exc:
        raise ValidationFailed("The cursor is invalid.", detail={"cursor": [exc.message]}) from None
    except BackendError as exc:  # transient, or the portal may not read pod logs (an operator's fix)
        raise LogsUnavailable(f"Logs are unavailable: {exc.message}") from None
    return LogResults([log_record_json(r) for r in page.records], page.cursor)


def _born(tenant_born: float, function: str | None) -> float:
    """When the searched records may start: the tenant's creation, or the function's when one is
    named and exists. Its Fission objects keep its name across a delete and a create (``f-v1``),
    so the name alone cannot tell a function from an earlier one of that name; its lifetime can."""
    if function is None:
        return tenant_born
    created = Function.objects.filter(name=function).values_list("created_at", flat=True).first()
    return max(tenant_born, created.timestamp()) if created is not None else tenant_born
