"""Writes about tenants, memberships and API tokens (CONVENTIONS.md 2)."""

from __future__ import annotations

import dataclasses
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import services as audit
from core import notifier
from core.errors import Conflict, NotFound, ValidationFailed
from core.names import name_validator
from core.users import User, is_platform_admin
from dataplane import namespaces as tenant_manifests
from tenants import tasks, tokens
from tenants.access import member_role
from tenants.models import (
    RESERVED_SLUGS,
    ApiToken,
    Domain,
    Membership,
    PasswordChangeRequired,
    Tenant,
    TenantState,
)
from tenants.provisioning import audit_tenant_change, state_snapshot, tenant_set_state
from tenants.roles import TENANT_ROLES, Role, at_least, rank
from tenants.selectors import tenant_quota

# ---------------------------------------------------------------- tenants


def schema_name_for(slug: str) -> str:
    return "t_" + slug.replace("-", "_")


def _validate_slug(slug: str) -> None:
    try:
        name_validator(slug)
    except ValidationError as exc:
        raise ValidationFailed("Invalid tenant slug.", detail={"slug": exc.messages}) from None
    if slug in RESERVED_SLUGS:
        raise ValidationFailed("This slug is reserved.", detail={"slug": ["Choose another."]})


def _enqueue(task: Task[[int], None], tenant_id: int) -> None:
    transaction.on_commit(lambda: task.delay(tenant_id))


@transaction.atomic
def tenant_create(*, slug: str, name: str, admin: User | None = None) -> Tenant:
    """Record a tenant in state ``provisioning`` and queue its provisioning.

    The schema is created by the task, off the request path. ``admin`` becomes its first
    tenant admin. Raises Conflict when the slug is taken.
    """
    _validate_slug(slug)
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict("A tenant with this slug exists.", detail={"slug": ["Already taken."]})
    with audit.change("tenant.create", object_type="tenant", object_name=slug, platform=True) as done:
        tenant = Tenant.objects.create(slug=slug, name=name or slug, schema_name=schema_name_for(slug))
        Domain.objects.create(domain=slug, tenant=tenant, is_primary=True)
        done.tenant, done.after = tenant, {"name": tenant.name, "slug": slug}
        if admin is not None and not is_platform_admin(admin):
            Membership.objects.create(user=admin, tenant=tenant, role=Role.ADMIN)
            done.after["admin"] = admin.get_username()
    _enqueue(tasks.tenant_provision_task, tenant.pk)
    return tenant


def _tenant_quota(tenant: Tenant) -> dict[str, Any]:
    """The quota as it applies (defaults included), a field each, so a diff names the one
    changed; and the network options."""
    applied = dataclasses.asdict(tenant_quota(tenant))
    return {**{f"quota.{k}": v for k, v in applied.items()}, "internet_egress": tenant.internet_egress}


def _tenant_settings(tenant: Tenant) -> dict[str, Any]:
    return {"name": tenant.name, **_tenant_quota(tenant), "suspended": tenant.suspended}


@transaction.atomic
def tenant_retry(*, tenant: Tenant) -> Tenant:
    """Queue provisioning again for a failed tenant (atomic claim: failed -> provisioning)."""
    with audit_tenant_change("tenant.retry", tenant, state_snapshot(tenant)) as done:
        claimed = Tenant.objects.filter(pk=tenant.pk, state=TenantState.FAILED).update(
            state=TenantState.PROVISIONING, state_reason="", state_changed_at=timezone.now()
        )
        if not claimed:
            raise Conflict(f"Only a failed tenant can be retried; this one is {tenant.state}.")
        tenant.refresh_from_db()
        tenant_set_state(tenant, TenantState.PROVISIONING)
        done.after = state_snapshot(tenant)
    _enqueue(tasks.tenant_provision_task, tenant.pk)
    return tenant


def tenant_requeue(*, tenant: Tenant) -> None:
    """Queue provisioning or deletion again (after a restart); both tasks are idempotent."""
    if tenant.state == TenantState.PROVISIONING:
        _enqueue(tasks.tenant_provision_task, tenant.pk)
    elif tenant.state == TenantState.DELETING:
        _enqueue(tasks.tenant_delete_task, tenant.pk)


@transaction.atomic
def tenant_set_suspended(*, tenant: Tenant, suspended: bool) -> Tenant:
    """Suspend (read-only, functions scaled to zero, calls refused) or resume a tenant.

    Idempotent; a task brings the data plane in line with the flag afterwards."""
    action = "tenant.suspend" if suspended else "tenant.resume"
    with audit_tenant_change(action, tenant, {"suspended": tenant.suspended}) as done:
        Tenant.objects.filter(pk=tenant.pk).update(suspended=suspended)
        tenant.suspended = suspended
        done.after = {"suspended": suspended}
    schema = tenant.schema_name
    transaction.on_commit(lambda: notifier.tenant_event(schema, "tenant.suspended", suspended=suspended))
    if tenant.state == TenantState.READY:
        _enqueue(tasks.tenant_suspension_task, tenant.pk)
    return tenant


@transaction.atomic
def tenant_set_quota(
    *, tenant: Tenant, quota: dict[str, object] | None = None, internet_egress: bool | None = None
) -> Tenant:
    """Change the tenant's quota ceiling (``quota`` overrides some fields; the rest stay) and
    network options, then re-apply its ResourceQuota, LimitRange and policies. ValidationFailed
    names a bad field."""
    with audit_tenant_change("tenant.quota", tenant, _tenant_quota(tenant)) as done:
        if quota is not None:
            tenant.quota = _quota_overrides(tenant, quota)
        if internet_egress is not None:
            tenant.internet_egress = internet_egress
        tenant.save(update_fields=["quota", "internet_egress"])
        done.after = _tenant_quota(tenant)
    if tenant.state == TenantState.READY:
        _enqueue(tasks.tenant_apply_task, tenant.pk)
    schema = tenant.schema_name
    transaction.on_commit(lambda: notifier.tenant_event(schema, "tenant.quota", quota=tenant.quota))
    return tenant


def _quota_overrides(tenant: Tenant, quota: dict[str, object]) -> dict[str, Any]:
    """The tenant's overrides of the default quota once ``quota`` is applied on top of them."""
    try:
        applied = tenant_manifests.quota_from(quota, tenant_quota(tenant))
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise ValidationFailed(f"Invalid quota: {exc}", detail={f"quota.{field}": [str(exc)]}) from None
    defaults = dataclasses.asdict(tenant_manifests.TenantQuota())
    return {k: v for k, v in dataclasses.asdict(applied).items() if defaults[k] != v}


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    name: str | None = None,
    quota: dict[str, object] | None = None,
    internet_egress: bool | None = None,
    suspended: bool | None = None,
) -> Tenant:
    """Rename, change the quota and network options, suspend or resume: what is given changes,
    all or nothing. One record; the quota and suspension changes are its effects."""
    with audit_tenant_change("tenant.update", tenant, _tenant_settings(tenant)) as done:
        if quota is not None or internet_egress is not None:
            tenant = tenant_set_quota(tenant=tenant, quota=quota, internet_egress=internet_egress)
        if name is not None:
            tenant.name = name
            tenant.save(update_fields=["name"])
        if suspended is not None:
            tenant = tenant_set_suspended(tenant=tenant, suspended=suspended)
        done.after = _tenant_settings(tenant)
    return tenant


@transaction.atomic
def tenant_delete_request(*, tenant: Tenant, confirm: str) -> Tenant:
    """Start deleting a tenant; ``confirm`` must repeat its slug. Runs as a task."""
    if confirm != tenant.slug:
        raise ValidationFailed(
            "Type the tenant's slug to confirm deletion.", detail={"confirm": [tenant.slug]}
        )
    with audit_tenant_change("tenant.delete", tenant, state_snapshot(tenant)) as done:
        claimed = Tenant.objects.filter(pk=tenant.pk).exclude(state=TenantState.DELETING)
        if claimed.update(state=TenantState.DELETING, state_changed_at=timezone.now()):
            tenant.refresh_from_db()
            tenant_set_state(tenant, TenantState.DELETING)
            _enqueue(tasks.tenant_delete_task, tenant.pk)
        done.after = state_snapshot(tenant)
    return tenant


# ---------------------------------------------------------------- members


@dataclass(frozen=True)
class NewMember:
    membership: Membership
    initial_password: str | None  # set only when the user was created: shown once


def check_assignable(role: str) -> Role:
    if role not in [r.value for r in TENANT_ROLES]:
        raise ValidationFailed("Unknown role.", detail={"role": [f"One of {TENANT_ROLES}."]})
    return Role(role)


def _find_or_create_user(username: str, email: str) -> tuple[User, str | None]:
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(username=username, email=email, password=password)
    # Whoever added them has seen it: they choose their own at first sign-in (tenants/passwords.py).
    PasswordChangeRequired.objects.create(user=user)
    return user, password


@transaction.atomic
def membership_add(*, tenant: Tenant, username: str, role: str, email: str = "") -> NewMember:
    """Add a user (created with a one-time password when new) to the tenant with ``role``."""
    role = check_assignable(role)
    if not username:
        raise ValidationFailed("A username is required.", detail={"username": ["Required."]})
    user, password = _find_or_create_user(username, email)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict("This user is already a member.", detail={"username": ["Already a member."]})
    with _member_change("member.add", tenant, username) as done:
        membership = Membership.objects.create(tenant=tenant, user=user, role=role)
        done.after = {"role": role}
    schema = tenant.schema_name
    transaction.on_commit(lambda: notifier.tenant_event(schema, "member.added", username=username, role=role))
    return NewMember(membership=membership, initial_password=password)


def _member_change(
    action: str, tenant: Tenant, username: str, before: dict[str, Any] | None = None
) -> AbstractContextManager[audit.Change]:
    return audit.change(action, object_type="member", object_name=username, before=before, tenant=tenant)


def _ensure_an_admin_remains(membership: Membership) -> None:
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.ADMIN)
    if membership.role == Role.ADMIN and not others.exclude(pk=membership.pk).exists():
        raise Conflict("A tenant must keep at least one tenant admin.")


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role; their tokens above the new role are revoked."""
    new_role = check_assignable(role)
    if new_role != Role.ADMIN:
        _ensure_an_admin_remains(membership)
    schema, username = membership.tenant.schema_name, membership.user.username
    with _member_change("member.update", membership.tenant, username, {"role": membership.role}) as done:
        membership.role = new_role
        membership.save(update_fields=["role"])
        for token in _live_tokens(membership):
            if rank(token.role) > rank(new_role):
                token_revoke(token=token)
        done.after = {"role": new_role}
    transaction.on_commit(
        lambda: notifier.tenant_event(schema, "member.changed", username=username, role=new_role)
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member and revoke their tokens in this tenant (the record's effects)."""
    _ensure_an_admin_remains(membership)
    schema, username = membership.tenant.schema_name, membership.user.username
    with _member_change("member.remove", membership.tenant, username, {"role": membership.role}):
        for token in _live_tokens(membership):
            token_revoke(token=token)
        membership.delete()
    transaction.on_commit(lambda: notifier.tenant_event(schema, "member.removed", username=username))


def _live_tokens(membership: Membership) -> QuerySet[ApiToken]:
    """The member's tokens in the membership's tenant that are not revoked."""
    return ApiToken.objects.filter(
        tenant_id=membership.tenant_id, user_id=membership.user_id, revoked_at__isnull=True
    )


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # returned once, never stored


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed(
            "The expiry must be in the future.", detail={"expires_at": ["Must be in the future."]}
        )


@transaction.atomic
def token_create(
    *, tenant: Tenant | None, user: User, name: str, role: str, expires_at: datetime | None = None
) -> IssuedToken:
    """Issue a token for ``user`` in ``tenant`` (None: a platform token of a platform admin).

    A token's role may not exceed the user's own role there.
    """
    _check_expiry(expires_at)
    if role not in Role.values:
        raise ValidationFailed("Unknown role.", detail={"role": [f"One of {Role.values}."]})
    if tenant is None:
        if role != Role.PLATFORM_ADMIN or not is_platform_admin(user):
            raise ValidationFailed("Only platform admins get platform tokens.", detail={"role": [role]})
    elif role == Role.PLATFORM_ADMIN or not at_least(member_role(user, tenant), role):
        raise ValidationFailed("A token cannot have more rights than its owner.", detail={"role": [role]})
    new = tokens.generate()
    with _token_change("token.create", tenant, new.key_id) as done:
        token = ApiToken.objects.create(
            tenant=tenant, user=user, name=name or "token", role=role,
            key_id=new.key_id, digest=new.digest, expires_at=expires_at,
        )  # fmt: skip
        done.after = _token_settings(token)
    if tenant is not None:
        schema, payload = tenant.schema_name, {"name": token.name, "key_id": token.key_id}
        transaction.on_commit(lambda: notifier.tenant_event(schema, "token.created", **payload))
    return IssuedToken(token=token, secret=new.secret)


def _token_change(
    action: str, tenant: Tenant | None, key_id: str, before: dict[str, Any] | None = None
) -> AbstractContextManager[audit.Change]:
    """A token's change: in its tenant's chain, or the platform's for a platform token."""
    return audit.change(
        action, object_type="token", object_name=key_id, before=before, tenant=tenant, platform=tenant is None
    )


def _token_settings(token: ApiToken) -> dict[str, Any]:
    """What a record shows of a token: never its secret or digest."""
    return {"name": token.name, "role": token.role, "expires_at": token.expires_at}


@transaction.atomic
def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token. Idempotent: revoking twice keeps the first time (the second record shows
    no change)."""
    with _token_change("token.revoke", token.tenant, token.key_id, {"revoked_at": token.revoked_at}) as done:
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            if token.tenant is not None:
                schema, key_id = token.tenant.schema_name, token.key_id
                transaction.on_commit(lambda: notifier.tenant_event(schema, "token.revoked", key_id=key_id))
        done.after = {"revoked_at": token.revoked_at}
    return token


def token_touch(*, token: ApiToken, every: timedelta = timedelta(seconds=60)) -> None:
    """Record use, at most once per ``every`` so a busy token does not write per request."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= every:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def user_get(*, username: str) -> User:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user {username!r}.")
    return user
