"""Helpers every API view shares."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request


def valid_data(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    """The request body validated by ``serializer_class`` (400 in the error shape otherwise)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
