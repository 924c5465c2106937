"""Data-plane backends. ``get_backend()`` returns the one PORTAL_BACKEND selects."""

from __future__ import annotations

from django.conf import settings

from functions.backends.base import Backend


def get_backend() -> Backend:
    if settings.PORTAL_BACKEND == "local":
        from functions.backends.local import LocalBackend

        return LocalBackend()
    raise NotImplementedError("the kubernetes backend comes with its own issue (5)")
