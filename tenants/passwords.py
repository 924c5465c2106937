"""A one-time password is replaced before anything else: the flag's reads and writes, and the
middleware that holds its user on the password change page.

A user created with a one-time password (whoever added them has seen it) must choose their own
before doing anything: pages send them to the password change page, the API refuses their
browser session with 403 ``password_change_required``. A bearer token is not held back: it is
an explicit credential its user created, which such a user cannot do before changing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from core.errors import error_response, wants_json
from tenants.auth import bearer_from_header
from tenants.models import PasswordChangeRequired

Handler = Callable[[HttpRequest], HttpResponse]

# The session's note that its user's flag was found clear (their id): the flag is set only when a
# user is created, before any session of theirs exists, so a session that saw it clear stays so.
_CLEAR_FOR = "password_change_clear_for"


def password_change_required(user: Any) -> bool:
    """Whether ``user`` still holds a one-time password."""
    return PasswordChangeRequired.objects.filter(user_id=user.pk).exists()


def password_change_done(*, user: Any) -> None:
    """Release ``user``: they chose their own password. Idempotent (nothing to delete is fine)."""
    PasswordChangeRequired.objects.filter(user_id=user.pk).delete()


def change_url() -> str:
    """The password change page (a public URL, also from inside a tenant's path)."""
    return reverse("password_change", urlconf=settings.PUBLIC_SCHEMA_URLCONF)


def _allowed_paths() -> tuple[str, str]:
    return change_url(), reverse("logout", urlconf=settings.PUBLIC_SCHEMA_URLCONF)


def _by_token(request: HttpRequest) -> bool:
    """An API request with a bearer token: the API authenticates it by the token alone."""
    return wants_json(request) and bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) is not None


def _must_change(request: HttpRequest) -> bool:
    user = request.user
    if request.session.get(_CLEAR_FOR) == user.pk:
        return False
    if password_change_required(user):
        return True
    request.session[_CLEAR_FOR] = user.pk  # one query per session, not per request
    return False


def _refuse(request: HttpRequest) -> HttpResponse:
    url = change_url()
    if wants_json(request):
        message = "Change your one-time password before using the API from this browser session."
        return error_response(403, "password_change_required", message, {"password_change_url": url})
    if request.headers.get("HX-Request") == "true":  # a redirect would be swapped into the page
        return HttpResponse(headers={"HX-Redirect": url})
    return redirect(url)


class PasswordChangeRequiredMiddleware:
    """Send a user who still holds a one-time password to the password change page (pages) or
    refuse them (the API, by session) until they change it; sets
    ``request.password_change_required`` for the page to say why.

    The change is noticed here, where the change page's successful POST (a redirect) passes:
    the page itself is Django's PasswordChangeView (portal/views.py).
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _by_token(request) or not request.user.is_authenticated or not _must_change(request):
            return self.get_response(request)
        request.password_change_required = True  # type: ignore[attr-defined]
        change, logout = _allowed_paths()
        if request.path not in (change, logout):
            return _refuse(request)
        response = self.get_response(request)
        if request.path == change and request.method == "POST" and response.status_code == 302:
            password_change_done(user=request.user)
        return response
