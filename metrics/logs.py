"""Log search in the current tenant's namespace, through the data plane's backend: pages of
records for the API (``log_search``), and the same lines grouped by request for the logs page
(``log_groups``: each request's lines in the order written, so a traceback reads top to bottom).

The namespace comes from the tenant whose schema the connection is in, never from the request, so
a search cannot reach another tenant's records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from core.errors import DomainError, ValidationFailed
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import (
    BackendError,
    InvalidCursor,
    LogPage,
    LogQuery,
    LogRecord,
    portal_function_of,
)
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
REQUEST_ID_MAX = 128  # the longest request id the runtime takes from a caller (runtime/http.py)
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


def log_query(
    *,
    function: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
    request_prefix: str | None = None,
    stream: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> LogQuery:
    """The backend's query for these filters. ValidationFailed for a version no function can have.

    Nothing from before the tenant existed is searched: a namespace (a slug) may have been used
    by a deleted tenant. Likewise a function's records are those of its own lifetime: one created
    under a deleted function's name starts empty (``_born``)."""
    born = _born(current_tenant().created_at.timestamp(), function)
    return LogQuery(
        function=function,
        fission_name=fission_name(function, version) if function and version else None,
        request_id=request_id,
        request_prefix=request_prefix,
        stream=stream,
        since=max(since.timestamp(), born) if since else born,
        until=until.timestamp() if until else None,
        text=q,
        limit=limit,
        cursor=cursor,
    )


def log_search(**filters: Any) -> LogResults:
    """One page of the tenant's log records, newest first, for ``log_query``'s filters.
    ValidationFailed for a cursor this API did not give; LogsUnavailable (503) when the log store
    cannot be read."""
    page = _search(log_query(**filters))
    return LogResults([log_record_json(r) for r in page.records], page.cursor)


def _search(query: LogQuery) -> LogPage:
    """The current tenant's namespace only: it comes from the connection's schema, never from
    the request."""
    try:
        return get_backend().search_logs(current_tenant().namespace, query)
    except InvalidCursor as exc:
        raise ValidationFailed("The cursor is invalid.", detail={"cursor": [exc.message]}) from None
    except BackendError as exc:  # transient, or the portal may not read pod logs (an operator's fix)
        raise LogsUnavailable(f"Logs are unavailable: {exc.message}") from None


# -- lines grouped by request, as a person reads them ------------------------------------------

# How far before a page's oldest line the rest of its requests is looked for (a request's lines
# are written while it runs), and how many older lines are read for that at most.
REQUEST_SPAN_S = 300.0
REST_LIMIT = 500


@dataclass(frozen=True)
class LogGroup:
    """One request's lines of one function, in the order they were written (a traceback reads
    top to bottom). Lines written outside any request (``request_id`` "": a worker's raw
    output, the runtime's own notes) group while they follow one another in one function."""

    request_id: str
    function: str
    version: str
    lines: list[dict[str, Any]]

    @property
    def started(self) -> float:
        return float(self.lines[0]["time"])


@dataclass(frozen=True)
class LogGroups:
    groups: list[LogGroup]
    cursor: str | None


def log_groups(query: LogQuery) -> LogGroups:
    """One page of ``query``'s lines grouped by request, the newest request first; the cursor
    continues with older lines. A request cut by the page's end is completed from the older
    lines (``_rest_of_requests``), so its first lines are not left for the next page alone.
    ValidationFailed for a bad cursor; LogsUnavailable when the log store cannot be read."""
    page = _search(query)
    records = page.records + _rest_of_requests(query, page)
    return LogGroups(group_by_request([log_record_json(r) for r in records]), page.cursor)


def _rest_of_requests(query: LogQuery, page: LogPage) -> list[LogRecord]:
    """The older lines (beyond the page, within REQUEST_SPAN_S of its oldest) of the requests
    on the page; none when there is nothing older or the store fails now (the page still shows)."""
    requests = {r.request_id for r in page.records if r.request_id}
    if page.cursor is None or not requests:
        return []
    since = page.records[-1].time - REQUEST_SPAN_S
    rest = replace(query, since=max(since, query.since or 0.0), cursor=page.cursor, limit=REST_LIMIT)
    try:
        older = get_backend().search_logs(current_tenant().namespace, rest).records
    except BackendError:
        return []
    return [r for r in older if r.request_id in requests]


def group_by_request(records: list[dict[str, Any]]) -> list[LogGroup]:
    """``records`` newest first (as a search gives them) in groups, the group whose latest
    line is newest first; inside a group, oldest line first (by time, then as stored)."""
    keys: list[tuple[str, ...]] = []
    members: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        key = _group_key(record, keys[-1] if keys else None)
        if key not in members:
            keys.append(key)
            members[key] = []
        members[key].append(record)
    return [_group(members[key]) for key in keys]


def _group_key(record: dict[str, Any], previous: tuple[str, ...] | None) -> tuple[str, ...]:
    """A request's key is its id and function; a line outside requests joins the run before it
    when that is one of the same function, else starts a run of its own."""
    where = (record["function"], record["version"])
    if record["request_id"]:
        return ("request", record["request_id"], *where)
    if previous is not None and previous[0] == "outside" and previous[1:3] == where:
        return previous
    return ("outside", *where, record["id"])


def _group(newest_first: list[dict[str, Any]]) -> LogGroup:
    as_stored = newest_first[::-1]
    lines = sorted(as_stored, key=lambda r: r["time"])  # stable: a tie keeps the stored order
    first = lines[0]
    return LogGroup(first["request_id"], first["function"], first["version"], lines)


def _born(tenant_born: float, function: str | None) -> float:
    """When the searched records may start: the tenant's creation, or the function's when one is
    named and exists. Its Fission objects keep its name across a delete and a create (``f-v1``),
    so the name alone cannot tell a function from an earlier one of that name; its lifetime can."""
    if function is None:
        return tenant_born
    created = Function.objects.filter(name=function).values_list("created_at", flat=True).first()
    return max(tenant_born, created.timestamp()) if created is not None else tenant_born
