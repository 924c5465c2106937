"""Reads about tenants, memberships and tokens."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django_tenants.utils import get_public_schema_name

from core.errors import NotFound
from core.users import is_platform_admin
from dataplane.namespaces import TenantQuota, quota_from
from tenants import tokens
from tenants.models import ApiToken, Membership, Tenant, TenantState
from tenants.roles import Role


def tenant_queryset() -> QuerySet[Tenant]:
    """Every real tenant: django-tenants' public row is never one."""
    return Tenant.objects.exclude(schema_name=get_public_schema_name())


def tenant_list_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Tenant]:
    if not user.is_authenticated:
        return Tenant.objects.none()
    if is_platform_admin(user):
        return tenant_queryset()
    return tenant_queryset().filter(memberships__user_id=user.pk)


def tenant_roles_for_user(user: AbstractBaseUser | AnonymousUser) -> list[tuple[Tenant, Role | None]]:
    """``tenant_list_for_user`` with the user's role in each, as tenants.access.member_role
    answers it (platform admins are admin everywhere), in one query whatever their number."""
    if not user.is_active:  # no role anywhere (and an anonymous user lists no tenant)
        return [(tenant, None) for tenant in tenant_list_for_user(user)]
    if is_platform_admin(user):
        return [(tenant, Role.ADMIN) for tenant in tenant_queryset()]
    own = Membership.objects.filter(tenant_id=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    tenants = tenant_list_for_user(user).annotate(member_role=Subquery(own))
    return [(tenant, Role(tenant.member_role) if tenant.member_role else None) for tenant in tenants]


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


def tenants_stuck(*, older_than: timedelta) -> list[tuple[int, str]]:
    """(id, state) of tenants whose provisioning or deletion has not moved for a while."""
    cutoff = timezone.now() - older_than
    stuck = Tenant.objects.filter(
        state__in=[TenantState.PROVISIONING, TenantState.DELETING], state_changed_at__lt=cutoff
    )
    return list(stuck.values_list("pk", "state"))


def current_tenant() -> Tenant:
    """The tenant whose schema the connection is in: the one place that answers "which tenant".

    A request carries the real Tenant (django-tenants' middleware sets it on the connection);
    ``schema_context`` (tasks) only a stand-in with the schema's name, so the row is read then.
    Raises NotFound in the public schema, which pages and the API answer as 404.
    """
    schema = connection.schema_name  # type: ignore[attr-defined]
    if schema == get_public_schema_name():  # every public page asks: answer without a query
        raise NotFound("Not found.")
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Tenant) and tenant.schema_name == schema:
        return tenant
    found = Tenant.objects.filter(schema_name=schema).first()
    if found is None:
        raise NotFound("Not found.")
    return found


def current_tenant_or_none() -> Tenant | None:
    """current_tenant(), or None in the public schema (the pages outside any tenant)."""
    try:
        return current_tenant()
    except NotFound:
        return None
