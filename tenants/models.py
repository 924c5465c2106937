from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin

from core.names import name_validator
from dataplane.namespaces import namespace_for
from tenants.roles import TENANT_ROLES, Role

RESERVED_SLUGS = frozenset({"public", "api", "static", "admin", "platform", "ws", "www"})


class TenantState(models.TextChoices):
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Deleting"


class Tenant(TenantMixin):
    """A customer: a PostgreSQL schema and (on Kubernetes) a namespace.

    The row in the public schema with ``schema_name == "public"`` is django-tenants'
    own public tenant; it is never listed or shown.
    """

    # Annotated: the base class comes from untyped django-tenants, so nothing is inferred.
    slug: models.CharField[str, str] = models.CharField(
        max_length=40, unique=True, validators=[name_validator]
    )
    name: models.CharField[str, str] = models.CharField(max_length=100)
    state: models.CharField[str, str] = models.CharField(
        max_length=16, choices=TenantState.choices, default=TenantState.PROVISIONING
    )
    state_reason: models.TextField[str, str] = models.TextField(blank=True, default="")
    suspended: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    # The platform admin's ceiling: overrides of dataplane.namespaces.TenantQuota's defaults.
    quota: models.JSONField[dict[str, Any], dict[str, Any]] = models.JSONField(default=dict, blank=True)
    internet_egress: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)
    state_changed_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)

    # Schemas are created by the provisioning task, never on save().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_ready(self) -> bool:
        return self.state == TenantState.READY

    @property
    def namespace(self) -> str:
        """The tenant's namespace on the data plane, ``<prefix>-<slug>``."""
        return namespace_for(self.slug, settings.TENANT_NAMESPACE_PREFIX)


class Domain(DomainMixin):
    """django-tenants' lookup table: with path routing, ``domain`` is the tenant's slug."""


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=[(r.value, r.label) for r in TENANT_ROLES])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.role}"


class Invitation(models.Model):
    """An invitation to join a tenant with a role, held by whoever has its link.

    Tenant admins invite; they never look users up. The admin gives an e-mail address (where the
    link goes, and how the admin recognises the invitation) and learns nothing about the
    accounts on the platform: the answer is the same whether an account with that address
    exists or not, and nobody joins until they open the link and accept (signed in, or by
    creating their account there). The link's secret is kept as its SHA-256 only
    (``tenants/tokens.py``), looked up by its key id.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=[(r.value, r.label) for r in TENANT_ROLES])
    key_id = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.tenant} as {self.role}"


class PasswordChangeRequired(models.Model):
    """A user whose password somebody else has seen: one created with a one-time password
    (``membership_add``). While the row exists, every page sends them to the password change
    page and the API refuses their session (``tenants.passwords``); choosing a password
    deletes it. A row, not a column on the user, because the user model lives in the kernel
    (``core/users.py``) and only the few users still holding a one-time password need one.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
        related_name="password_change_required",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} must change their password"


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the secret is shown once.

    ``tenant`` is null only for platform-admin tokens, which reach the platform API.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="tokens", null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)
    key_id = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"token {self.key_id} ({self.name})"


class SecretsKeyCheck(models.Model):
    """One known plaintext encrypted under ``PORTAL_SECRETS_KEYS`` at the first start, so that a
    wrong key fails start-up instead of the first secret read (``tenants.secrets_keys.verify``).

    A single row (primary key 1, enforced by a check constraint), in the public schema.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    token = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="secretskeycheck_single_row")]

    def __str__(self) -> str:
        return "secrets key check"
