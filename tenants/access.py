"""Who may do what in a tenant: the one place tenant roles are resolved.

Used by the API permission class, the page decorator and the websocket consumers, so
that pages, API and websockets cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django_tenants.utils import get_public_schema_name, schema_context

from core.users import is_platform_admin
from tenants.models import ApiToken, Membership, PasswordChangeRequired, Tenant
from tenants.roles import Role, lowest
from tenants.selectors import token_is_active


def member_role(user: AbstractBaseUser | AnonymousUser, tenant: Tenant) -> Role | None:
    """The user's own role in ``tenant``; platform admins act as tenant admin everywhere."""
    if not user.is_authenticated or not user.is_active:
        return None
    if is_platform_admin(user):
        return Role.ADMIN
    role = (
        Membership.objects.filter(user_id=user.pk, tenant_id=tenant.pk).values_list("role", flat=True).first()
    )
    return Role(role) if role else None


@dataclass(frozen=True)
class SwitcherTenant:
    """A tenant as the tenant switcher lists it."""

    slug: str
    name: str
    state: str


def member_role_and_tenants(
    user: AbstractBaseUser | AnonymousUser, tenant: Tenant
) -> tuple[Role | None, list[SwitcherTenant] | None]:
    """``member_role`` and, in the same query, the tenants the user is a member of by slug (the
    switcher's, None when they are not read here: a platform admin's are every tenant)."""
    if not user.is_authenticated or not user.is_active or is_platform_admin(user):
        return member_role(user, tenant), None
    rows = (
        Membership.objects.filter(user_id=user.pk)
        .order_by("tenant__slug")
        .values_list("tenant_id", "tenant__slug", "tenant__name", "tenant__state", "role")
    )
    role, tenants = None, []
    for tenant_id, slug, name, state, member_as in rows:
        tenants.append(SwitcherTenant(slug, name, state))
        if tenant_id == tenant.pk:
            role = Role(member_as)
    return role, tenants


def effective_role(
    user: AbstractBaseUser | AnonymousUser, tenant: Tenant, token: ApiToken | None
) -> Role | None:
    """The role a request acts with, or None when it may not see the tenant at all.

    A token never grants more than its owner currently has, and a token of one tenant
    is worth nothing in another.
    """
    role = member_role(user, tenant)
    if role is None or token is None:
        return role
    if token.tenant_id is None:
        return role if token.role == Role.PLATFORM_ADMIN else None
    if token.tenant_id != tenant.pk:
        return None
    return lowest(role, token.role)


def connection_role(
    user: AbstractBaseUser | AnonymousUser, tenant_id: int, token: ApiToken | None
) -> Role | None:
    """The role a long-lived connection (a websocket) still has now: the tenant, the membership
    and the token are read again, so a removed member, a revoked or expired token or a deleted
    tenant gives None. Reads the public schema whatever the connection's schema is."""
    with schema_context("public"):
        if token is not None and not token_is_active(token_id=token.pk):
            return None
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        # As it is now: deactivated, or no longer a platform admin, since the socket opened.
        current = get_user_model().objects.filter(pk=user.pk).first() if user.is_authenticated else None
        if tenant is None or current is None or _held_on_one_time_password(current, token):
            return None
        return effective_role(current, tenant, token)


def _held_on_one_time_password(user: AbstractBaseUser, token: ApiToken | None) -> bool:
    """A browser session whose user has not yet replaced a one-time password gets nothing but
    the password change page (tenants/passwords.py); a token is not held back."""
    return token is None and PasswordChangeRequired.objects.filter(user_id=user.pk).exists()


def platform_admin_now(user: AbstractBaseUser | AnonymousUser, token: ApiToken | None) -> bool:
    """Whether a long-lived connection still acts as a platform admin, read again now: the user
    (deactivated or demoted since), and the token it came with, if any (revoked, expired, or a
    tenant's token, which never qualifies, as for the platform API)."""
    if not user.is_authenticated:
        return False
    with schema_context(get_public_schema_name()):
        if token is not None and (token.tenant_id is not None or not token_is_active(token_id=token.pk)):
            return False
        current = get_user_model().objects.filter(pk=user.pk).first()
        return (
            current is not None
            and not _held_on_one_time_password(current, token)
            and is_platform_admin(current)
        )
