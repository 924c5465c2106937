"""Helpers shared by the function services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from core.errors import ValidationFailed


def full_clean(instance: models.Model, *, exclude: list[str] | None = None) -> None:
    """Model validation as a ValidationFailed whose detail names each bad field."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=True, validate_constraints=False)
    except ValidationError as exc:
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise ValidationFailed("The request has invalid fields.", detail=detail) from None
