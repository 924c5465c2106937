"""Who is making a change, and from where: the request being served, else "system".

The actor belongs to the request, not to the change, so it is bound once per request by
``AuditMiddleware`` instead of being passed through every service: a page, an API view and a
service called from either record the same actor, and a Celery task or a management command
(no request) records "system". DRF authenticates after the middleware ran; it sets ``user`` and
``auth`` (the API token) on the Django request as well, which is where they are read, at the
moment the record is written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from audit.models import ActorType

MAX_USER_AGENT = 512


@dataclass(frozen=True)
class Actor:
    type: str
    name: str
    user_id: int | None = None
    token_id: str = ""  # an API token's public key id
    ip: str = ""
    user_agent: str = ""


SYSTEM = Actor(type=ActorType.SYSTEM, name="system")
_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_actor() -> Actor:
    request = _request.get()
    return SYSTEM if request is None else actor_of(request)


def actor_of(request: HttpRequest) -> Actor:
    """The request's user (and token, when it came with one), address and user agent. An
    anonymous request changes nothing by design; were it to, it is recorded as "anonymous"."""
    user: Any = getattr(request, "user", None)
    token_id = str(getattr(getattr(request, "auth", None), "key_id", "") or "")
    where = {"ip": client_ip(request), "user_agent": request.META.get("HTTP_USER_AGENT", "")[:MAX_USER_AGENT]}
    if user is None or not user.is_authenticated:
        return Actor(type=ActorType.USER, name="anonymous", **where)
    kind = ActorType.TOKEN if token_id else ActorType.USER
    return Actor(type=kind, name=user.get_username(), user_id=user.pk, token_id=token_id, **where)


def client_ip(request: HttpRequest) -> str:
    """The peer's address, normalised ("" when it is not an IP address, e.g. a unix socket)."""
    try:
        return str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return ""


class AuditMiddleware:
    """Binds the request for ``current_actor`` while it is served."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bound = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(bound)
