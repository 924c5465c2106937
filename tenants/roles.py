"""Roles within a tenant, ordered by what they may do."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    ADMIN = "admin", "Tenant admin"
    # Only for API tokens of platform admins that are not bound to a tenant.
    PLATFORM_ADMIN = "platform_admin", "Platform admin"


_RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3, Role.PLATFORM_ADMIN: 4}
TENANT_ROLES = (Role.VIEWER, Role.DEVELOPER, Role.ADMIN)


def rank(role: str) -> int:
    return _RANK[Role(role)]


def at_least(role: str | None, needed: str) -> bool:
    return role is not None and rank(role) >= rank(needed)


def lowest(*roles: str) -> Role:
    return Role(min(roles, key=rank))
