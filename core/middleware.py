"""Request middleware of the kernel: the 413 of the request body limit."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import get_resolver

from core.asgi_limits import REFUSED, body_limit
from core.errors import error_response
from core.feedback import size_in_words

Handler = Callable[[HttpRequest], HttpResponse]


def too_large_message(request: HttpRequest | None = None) -> str:
    """What a 413 says: the limit of the request's route (core.asgi_limits.body_limit), or with no
    request the largest body the portal takes anywhere."""
    limit = body_limit(request.path) if request is not None else int(settings.MAX_REQUEST_BYTES)
    return f"The request is larger than the portal accepts: at most {size_in_words(limit)} ({limit} bytes)."


class BodySizeLimitMiddleware:
    """Answer 413 to a request over its route's body limit, before any view parses it.

    Under ASGI, core.asgi_limits.RequestBodyLimit has already refused the request while reading
    it (Django got none of its body, or only its start) and marked its scope; this middleware
    makes the answer. A request that did not come through it (the test client, a WSGI server) is
    refused here by its declared Content-Length.

    The refusal is Django's own for a body too large (RequestDataTooBig), answered by the
    URLconf's 400 handler (portal.views.bad_request): the API's JSON error on its paths, else the
    portal's framed 413 page. It sits after sign-in, so that page has the signed-in header, and
    before UnknownTenantMiddleware, so an unknown tenant gets the same 413 as an existing one.
    None of the middleware before it reads the body, and nothing before it checks a permission.
    """

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_big = int(length) > body_limit(request.path)
        except ValueError:
            return error_response(400, "malformed", "Invalid Content-Length header.")
        if too_big or REFUSED in getattr(request, "scope", {}):
            handler: Callable[..., HttpResponse] = get_resolver(
                getattr(request, "urlconf", None)
            ).resolve_error_handler(400)  # django-stubs omit the handlers' exception argument
            return handler(request, RequestDataTooBig(too_large_message(request)))
        return self.get_response(request)
