"""The endpoint matrix every API's tests run: each endpoint against each persona (CONVENTIONS.md 11:
it works, it needs authentication, it needs the role, it hides other tenants)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


def call(client: Any, method: str, url: str, body: Any = None, fmt: str = "json") -> Any:
    """One request; a callable ``body`` is called for each request (a fresh upload each time)."""
    if callable(body):
        body = body()
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format=fmt)


def assert_access(
    world: Any,
    api: Callable[..., Any],
    url_in: Callable[[str], str],
    method: str,
    body: Any,
    *,
    allowed: str,
    ok: int,
    refused: dict[str, int],
    fmt: str = "json",
    while_allowed: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """``url_in(tenant)`` is the endpoint in that tenant. Anonymous: 401. Oscar (globex only): 404,
    the very answer for a tenant that does not exist. Each ``refused`` persona: its status.
    ``allowed``: ``ok``, inside ``while_allowed()``."""
    url = url_in("acme")
    assert call(api(), method, url, body, fmt).status_code == 401
    outsider = call(api(world.oscar), method, url, body, fmt)
    assert outsider.status_code == 404
    assert outsider.json() == call(api(world.oscar), method, url_in("nosuch"), body, fmt).json()
    for persona, status in refused.items():
        response = call(api(getattr(world, persona)), method, url, body, fmt)
        assert response.status_code == status, (persona, response.content)
    with while_allowed():
        response = call(api(getattr(world, allowed)), method, url, body, fmt)
    assert response.status_code == ok, response.content
