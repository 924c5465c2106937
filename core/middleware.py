"""Request middleware of the kernel: the request body limit."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import get_resolver

from core.errors import error_response
from core.feedback import size_in_words

Handler = Callable[[HttpRequest], HttpResponse]


def too_large_message() -> str:
    limit = settings.MAX_REQUEST_BYTES
    return f"The request is larger than the portal accepts: at most {size_in_words(limit)} ({limit} bytes)."


class BodySizeLimitMiddleware:
    """Refuse a declared body above PORTAL_MAX_REQUEST_BYTES with 413 before any view parses it.

    The refusal is Django's own for a body too large (RequestDataTooBig), answered by the
    URLconf's 400 handler (portal.views.bad_request): the API's JSON error on its paths, else the
    portal's framed 413 page. It sits after sign-in, so that page has the signed-in header, and
    before UnknownTenantMiddleware, so an unknown tenant gets the same 413 as an existing one.
    None of the middleware before it reads the body.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_big = int(length) > settings.MAX_REQUEST_BYTES
        except ValueError:
            return error_response(400, "malformed", "Invalid Content-Length header.")
        if too_big:
            handler: Callable[..., HttpResponse] = get_resolver(
                getattr(request, "urlconf", None)
            ).resolve_error_handler(400)  # django-stubs omit the handlers' exception argument
            return handler(request, RequestDataTooBig(too_large_message()))
        return self.get_response(request)
