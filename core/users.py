"""The user model, at the bottom so every app can name it (tenants' memberships and tokens point
at it). Its app label stays ``portal``: the table and the migrations (portal/migrations) predate
the kernel package, and portal/models.py imports it so Django finds it in that app."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser


def is_platform_admin(user: object) -> bool:
    """Platform admins create, suspend and delete tenants and act as tenant admin in every
    tenant. The flag is the user's ``is_superuser``; an inactive user is nobody."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


class User(AbstractUser):
    """A person. Lives in the public schema; tenant access comes from memberships."""

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # django-stubs omit Meta
        app_label = "portal"

    @property
    def is_platform_admin(self) -> bool:
        return is_platform_admin(self)
