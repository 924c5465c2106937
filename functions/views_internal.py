"""The internal package endpoint the data plane fetches archives from (signed URLs)."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET
from django_tenants.utils import schema_context

from functions.models import Build, BuildState
from functions.packages import signature_valid
from tenants.selectors import tenant_queryset


@require_GET
def package_archive(request: HttpRequest, schema: str, build_id: int, sha256: str) -> FileResponse:
    """The archive of a succeeded build; 404 unless the signature matches exactly."""
    if not signature_valid(schema, build_id, sha256, request.GET.get("sig", "")):
        raise Http404
    if not tenant_queryset().filter(schema_name=schema).exists():
        raise Http404
    with schema_context(schema):
        build = Build.objects.filter(pk=build_id, sha256=sha256, state=BuildState.SUCCEEDED).first()
        if build is None or not build.archive:
            raise Http404
        kind = "application/zip" if build.archive.name.endswith(".zip") else "text/x-python; charset=utf-8"
        response = FileResponse(build.archive.open("rb"), content_type=kind)
    response["Content-Length"] = str(build.size)
    return response
