"""Helpers shared by the function services: validation and the tenant of the schema."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models
from django_tenants.utils import get_public_schema_name

from portal.errors import ValidationFailed
from tenants.models import Tenant


def full_clean(instance: models.Model, *, exclude: list[str] | None = None) -> None:
    """Model validation as a ValidationFailed whose detail names each bad field."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=True, validate_constraints=False)
    except ValidationError as exc:
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise ValidationFailed("The request has invalid fields.", detail=detail) from None


def current_tenant() -> Tenant:
    """The tenant whose schema the connection is in (services run inside it).

    Requests carry the real Tenant; ``schema_context`` (tasks) only a stand-in with the
    schema's name, so the row is read then.
    """
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Tenant):
        return tenant
    found = Tenant.objects.filter(schema_name=connection.schema_name).first()  # type: ignore[attr-defined]
    if found is None or found.schema_name == get_public_schema_name():
        raise RuntimeError("function services must run inside a tenant schema")
    return found
