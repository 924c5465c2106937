"""Log search in the current tenant's namespace, through the data plane's backend.

The namespace comes from the tenant whose schema the connection is in, never from the request, so
a search cannot reach another tenant's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import DomainError, ValidationFailed
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import BackendError, InvalidCursor, LogQuery, LogRecord, portal_function_of
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


def filter_errors(
    *,
    function: str | None = None,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, list[str]]:
    """What is wrong with a log filter as a whole, by field (empty: nothing). Each field is
    checked on its own by the API's serializer, the page's form and the socket's subscription;
    these rules span fields, and all three apply them from here."""
    errors: dict[str, list[str]] = {}
    if version and not function:
        errors["version"] = ["A version belongs to a function: name it."]
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
    by a deleted tenant."""
    tenant = current_tenant()
    born = tenant.created_at.timestamp()
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
