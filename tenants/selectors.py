"""Reads about tenants, memberships and tokens."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tenants.utils import get_public_schema_name

from tenants import tokens
from tenants.manifests import TenantQuota, quota_from
from tenants.models import ApiToken, Membership, Tenant


def tenant_queryset() -> QuerySet[Tenant]:
    """Every real tenant: django-tenants' public row is never one."""
    return Tenant.objects.exclude(schema_name=get_public_schema_name())


def tenant_list_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Tenant]:
    if not user.is_authenticated:
        return Tenant.objects.none()
    if getattr(user, "is_platform_admin", False):
        return tenant_queryset()
    return tenant_queryset().filter(memberships__user_id=user.pk)


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user")


def token_list(*, tenant: Tenant, user: AbstractBaseUser | None = None) -> QuerySet[ApiToken]:
    """The tenant's tokens, or only ``user``'s when given."""
    queryset = ApiToken.objects.filter(tenant=tenant).select_related("user")
    return queryset.filter(user_id=user.pk) if user is not None else queryset


def _active_tokens() -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(revoked_at__isnull=True, user__is_active=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def token_is_active(*, token_id: int) -> bool:
    return _active_tokens().filter(pk=token_id).exists()


def token_resolve(raw: str) -> ApiToken | None:
    """The active token whose secret is ``raw``, or None (unknown, revoked, expired, bad)."""
    key_id = tokens.parse_key_id(raw)
    if key_id is None:
        return None
    token = _active_tokens().select_related("user", "tenant").filter(key_id=key_id).first()
    if token is None or not tokens.matches(raw, token.digest):
        return None
    return token


def tenant_quota(tenant: Tenant) -> TenantQuota:
    """The platform admin's quota ceiling for ``tenant`` (the defaults where it sets nothing)."""
    return quota_from(tenant.quota or {})
