from __future__ import annotations

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person. Lives in the public schema; tenant access comes from memberships.

    ``is_superuser`` is the platform-admin flag: platform admins create, suspend and
    delete tenants, and act as tenant admin in every tenant.
    """

    @property
    def is_platform_admin(self) -> bool:
        return bool(self.is_active and self.is_superuser)
