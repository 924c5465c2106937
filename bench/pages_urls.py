"""The tenant URLconf of ``bench/pages.py`` only: every pattern of the portal's tenant URLconf,
plus the two references the pages are compared with, under ``/t/<tenant>/`` like them so that
they pay the same middleware (the tenant's lookup, the session, the user, CSRF, metrics).

Selected by that script alone (``settings.ROOT_URLCONF``, which django-tenants' subfolder
middleware reads for every request under ``/t/``); the portal never serves these views.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import urls_tenant

BARE_ITEMS = [{"name": f"fn-{index}", "executor": "poolmgr"} for index in range(3)]


def bare_django(request: HttpRequest) -> HttpResponse:
    """The least a page can do: no access check, no query, no template."""
    return HttpResponse("ok", content_type="text/plain")


class BareDrf(APIView):
    """The least an API view can do: the project's default authentication and permission
    (``REST_FRAMEWORK`` in settings), a small JSON list, no query of its own."""

    def get(self, request: Request) -> Response:
        return Response(BARE_ITEMS)


urlpatterns = [
    *urls_tenant.urlpatterns,
    path("bare/django/", bare_django, name="bench-bare-django"),
    path("bare/drf/", BareDrf.as_view(), name="bench-bare-drf"),
]

# django-tenants takes the error handlers from the root URLconf: the portal's.
handler400 = urls_tenant.handler400
handler403 = urls_tenant.handler403
handler404 = urls_tenant.handler404
handler500 = urls_tenant.handler500
