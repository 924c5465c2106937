"""Writes about tenants, memberships and API tokens (CONVENTIONS.md 2)."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import Task
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

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
    Tenant,
    TenantState,
)
from tenants.provisioning import tenant_set_state
from tenants.roles import TENANT_ROLES, Role, at_least, rank

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
    tenant = Tenant.objects.create(slug=slug, name=name or slug, schema_name=schema_name_for(slug))
    Domain.objects.create(domain=slug, tenant=tenant, is_primary=True)
    if admin is not None and not is_platform_admin(admin):
        Membership.objects.create(user=admin, tenant=tenant, role=Role.ADMIN)
    _enqueue(tasks.tenant_provision_task, tenant.pk)
    return tenant


@transaction.atomic
def tenant_retry(*, tenant: Tenant) -> Tenant:
    """Queue provisioning again for a failed tenant (atomic claim: failed -> provisioning)."""
    claimed = Tenant.objects.filter(pk=tenant.pk, state=TenantState.FAILED).update(
        state=TenantState.PROVISIONING, state_reason="", state_changed_at=timezone.now()
    )
    if not claimed:
        raise Conflict(f"Only a failed tenant can be retried; this one is {tenant.state}.")
    tenant.refresh_from_db()
    tenant_set_state(tenant, TenantState.PROVISIONING)
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
    Tenant.objects.filter(pk=tenant.pk).update(suspended=suspended)
    tenant.suspended = suspended
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
    if quota is not None:
        try:
            manifests_quota = tenant_manifests.quota_from(
                quota, tenant_manifests.quota_from(tenant.quota or {})
            )
        except ValueError as exc:
            field = str(exc).split(":", 1)[0]
            raise ValidationFailed(f"Invalid quota: {exc}", detail={f"quota.{field}": [str(exc)]}) from None
        defaults = dataclasses.asdict(tenant_manifests.TenantQuota())
        tenant.quota = {k: v for k, v in dataclasses.asdict(manifests_quota).items() if defaults[k] != v}
    if internet_egress is not None:
        tenant.internet_egress = internet_egress
    tenant.save(update_fields=["quota", "internet_egress"])
    if tenant.state == TenantState.READY:
        _enqueue(tasks.tenant_apply_task, tenant.pk)
    schema = tenant.schema_name
    transaction.on_commit(lambda: notifier.tenant_event(schema, "tenant.quota", quota=tenant.quota))
    return tenant


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
    all or nothing."""
    if quota is not None or internet_egress is not None:
        tenant = tenant_set_quota(tenant=tenant, quota=quota, internet_egress=internet_egress)
    if name is not None:
        tenant.name = name
        tenant.save(update_fields=["name"])
    if suspended is not None:
        tenant = tenant_set_suspended(tenant=tenant, suspended=suspended)
    return tenant


@transaction.atomic
def tenant_delete_request(*, tenant: Tenant, confirm: str) -> Tenant:
    """Start deleting a tenant; ``confirm`` must repeat its slug. Runs as a task."""
    if confirm != tenant.slug:
        raise ValidationFailed(
            "Type the tenant's slug to confirm deletion.", detail={"confirm": [tenant.slug]}
        )
    claimed = Tenant.objects.filter(pk=tenant.pk).exclude(state=TenantState.DELETING)
    if claimed.update(state=TenantState.DELETING, state_changed_at=timezone.now()):
        tenant.refresh_from_db()
        tenant_set_state(tenant, TenantState.DELETING)
        _enqueue(tasks.tenant_delete_task, tenant.pk)
    return tenant


# ---------------------------------------------------------------- members


@dataclass(frozen=True)
class NewMember:
    membership: Membership
    initial_password: str | None  # set only when the user was created: shown once


def _check_assignable(role: str) -> Role:
    if role not in [r.value for r in TENANT_ROLES]:
        raise ValidationFailed("Unknown role.", detail={"role": [f"One of {TENANT_ROLES}."]})
    return Role(role)


def _find_or_create_user(username: str, email: str) -> tuple[User, str | None]:
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(12)
    return user_model.objects.create_user(username=username, email=email, password=password), password


@transaction.atomic
def membership_add(*, tenant: Tenant, username: str, role: str, email: str = "") -> NewMember:
    """Add a user (created with a one-time password when new) to the tenant with ``role``."""
    role = _check_assignable(role)
    if not username:
        raise ValidationFailed("A username is required.", detail={"username": ["Required."]})
    user, password = _find_or_create_user(username, email)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict("This user is already a member.", detail={"username": ["Already a member."]})
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    schema = tenant.schema_name
    transaction.on_commit(lambda: notifier.tenant_event(schema, "member.added", username=username, role=role))
    return NewMember(membership=membership, initial_password=password)


def _ensure_an_admin_remains(membership: Membership) -> None:
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.ADMIN)
    if membership.role == Role.ADMIN and not others.exclude(pk=membership.pk).exists():
        raise Conflict("A tenant must keep at least one tenant admin.")


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role; their tokens above the new role are revoked."""
    new_role = _check_assignable(role)
    if new_role != Role.ADMIN:
        _ensure_an_admin_remains(membership)
    membership.role = new_role
    membership.save(update_fields=["role"])
    for token in ApiToken.objects.filter(
        tenant_id=membership.tenant_id, user_id=membership.user_id, revoked_at__isnull=True
    ):
        if rank(token.role) > rank(new_role):
            token_revoke(token=token)
    schema, username = membership.tenant.schema_name, membership.user.username
    transaction.on_commit(
        lambda: notifier.tenant_event(schema, "member.changed", username=username, role=new_role)
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Remove a member and revoke their tokens in this tenant."""
    _ensure_an_admin_remains(membership)
    ApiToken.objects.filter(
        tenant_id=membership.tenant_id, user_id=membership.user_id, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    schema, username = membership.tenant.schema_name, membership.user.username
    membership.delete()
    transaction.on_commit(lambda: notifier.tenant_event(schema, "member.removed", username=username))


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
    token = ApiToken.objects.create(
        tenant=tenant, user=user, name=name or "token", role=role,
        key_id=new.key_id, digest=new.digest, expires_at=expires_at,
    )  # fmt: skip
    if tenant is not None:
        schema, payload = tenant.schema_name, {"name": token.name, "key_id": token.key_id}
        transaction.on_commit(lambda: notifier.tenant_event(schema, "token.created", **payload))
    return IssuedToken(token=token, secret=new.secret)


@transaction.atomic
def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token. Idempotent: revoking twice keeps the first time."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        if token.tenant is not None:
            schema, key_id = token.tenant.schema_name, token.key_id
            transaction.on_commit(lambda: notifier.tenant_event(schema, "token.revoked", key_id=key_id))
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
