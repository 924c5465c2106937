"""Dead letters: the asynchronous invocations of a function that failed for good (after its
retries, or too old to run), kept by the data plane per Fission function (the draft and each
version). Here they are one list per portal function: an id is ``<target>/<data-plane id>``, the
target being ``draft`` or a version number."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from audit import services as audit
from core.errors import DomainError, NotFound, ValidationFailed
from dataplane import manifests
from dataplane.backends import base as backends
from dataplane.backends import get_backend
from functions.models import Function
from tenants.selectors import current_tenant

MAX_PAGE = 100


class DeadLettersUnavailable(DomainError):
    status = 503
    code = "dead_letters_unavailable"


@contextmanager
def _data_plane() -> Iterator[None]:
    """The data plane's refusals as the API's: what it does not have is 404, the rest 503 (its
    queue is full, or it cannot be reached now): never a 500."""
    try:
        yield
    except backends.NotFound as exc:
        raise NotFound(exc.message) from None
    except backends.BackendError as exc:
        raise DeadLettersUnavailable(f"Dead letters are unavailable: {exc.message}") from None


def _targets(function: Function) -> dict[str, str]:
    """Target ("draft", "3") -> its Fission function name, for the draft and every version."""
    numbers = function.versions.values_list("number", flat=True)
    return {
        "draft": manifests.fission_name(function.name, None),
        **{str(n): manifests.fission_name(function.name, n) for n in numbers},
    }


def dead_letter_page(*, function: Function, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The function's dead letters, newest first, with ``next`` for the following page."""
    targets = _targets(function)
    by_name = {name: target for target, name in targets.items()}
    with _data_plane():
        page = get_backend().dead_letters(
            current_tenant().namespace, list(targets.values()), max(1, min(limit, MAX_PAGE)), cursor or None
        )
    items = [
        {**item, "id": f"{by_name.get(item['function'], '?')}/{item['id']}",
         "target": by_name.get(item["function"], "?")}
        for item in page.items
    ]  # fmt: skip
    return {"items": items, "next": page.next, "total": page.total}


def _grouped(function: Function, ids: list[str] | None) -> dict[str, list[str] | None]:
    """Fission function -> its dead-letter ids (None: all of them, when ``ids`` is None)."""
    targets = _targets(function)
    if ids is None:
        return dict.fromkeys(targets.values())
    groups: dict[str, list[str] | None] = {}
    for value in ids:
        target, _, entry = value.partition("/")
        if target not in targets or not entry:
            raise ValidationFailed(
                "Unknown dead letter.", detail={"ids": [f"{value!r} is not one of this function's."]}
            )
        listed = groups.setdefault(targets[target], [])
        assert listed is not None
        listed.append(entry)
    return groups


def dead_letters_redrive(
    *, function: Function, ids: list[str] | None = None, to: str | None = None
) -> list[str]:
    """Queue the dead letters (``ids``, or all) again as new invocations, of their own target or of
    ``to`` ("draft" or a version number: fixed code is a new draft or version). New request ids."""
    targets = _targets(function)
    if to is not None and to not in targets:
        raise NotFound(f"No target {to!r}: the draft or a version number.")
    backend, namespace = get_backend(), current_tenant().namespace
    request_ids: list[str] = []
    with _data_plane():
        for name, entries in _grouped(function, ids).items():
            request_ids += backend.redrive_dead_letters(namespace, name, entries, targets[to] if to else name)
    _record("dead-letter.redrive", function, {"count": len(request_ids), "to": to or "their own target"})
    return request_ids


def dead_letters_purge(*, function: Function, ids: list[str] | None = None) -> int:
    backend, namespace = get_backend(), current_tenant().namespace
    groups = _grouped(function, ids)
    with _data_plane():
        purged = sum(backend.purge_dead_letters(namespace, name, entries) for name, entries in groups.items())
    _record("dead-letter.purge", function, {"count": purged})
    return purged


@transaction.atomic
def _record(action: str, function: Function, after: dict[str, Any]) -> None:
    """The audit record of what the data plane did (it keeps the dead letters: no row of ours
    changes), written once it is done: no transaction is held across the data plane's calls."""
    with audit.change(action, object_type="dead-letter", object_name=function.name) as done:
        done.after = after
