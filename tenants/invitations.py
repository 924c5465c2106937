"""Invitations: how a person joins a tenant.

A tenant admin invites an e-mail address with a role and gets a link to pass on, shown once. The
admin never looks users up: the answer is the same whether an account with that address exists
anywhere or not, no account is created or changed, and nobody joins a tenant they did not accept.
Whoever opens the link sees the tenant's name and the role, and accepts signed in (any account:
the link is the credential, as a team-invite link is) or by creating their account on that page.
A link works once, until it expires (``INVITATION_TTL``) or an admin withdraws it; every other
link (unknown, used, expired, withdrawn, malformed) gets the same answer, which says which of
these it might be without saying which it is.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from audit import services as audit
from core import notifier
from core.errors import Conflict, ValidationFailed
from core.users import User
from tenants import tokens
from tenants.models import Invitation, Membership, Tenant
from tenants.services import check_assignable

INVITATION_TTL = timedelta(days=7)


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    secret: str  # the link's secret: in this answer only


def _change(
    action: str, tenant: Tenant, invitation: Invitation, before: dict[str, Any] | None = None
) -> AbstractContextManager[audit.Change]:
    """An invitation's record names it by its e-mail address (what the admins know it by) and
    never holds its secret or digest."""
    return audit.change(
        action, object_type="invitation", object_name=invitation.email, before=before, tenant=tenant
    )


def _shown(invitation: Invitation) -> dict[str, Any]:
    return {"email": invitation.email, "role": invitation.role, "expires_at": invitation.expires_at}


@transaction.atomic
def invitation_create(*, tenant: Tenant, email: str, role: str, invited_by: User | None) -> IssuedInvitation:
    """Invite ``email`` to ``tenant`` as ``role``; nothing about any account is read."""
    checked = check_assignable(role)
    if not email:
        raise ValidationFailed("An e-mail address is required.", detail={"email": ["Required."]})
    new = tokens.generate(tokens.INVITATION_PREFIX)
    invitation = Invitation(
        tenant=tenant, email=email, role=checked, key_id=new.key_id, digest=new.digest,
        invited_by=invited_by, expires_at=timezone.now() + INVITATION_TTL,
    )  # fmt: skip
    with _change("invitation.create", tenant, invitation) as done:
        invitation.save()
        done.after = _shown(invitation)
    return IssuedInvitation(invitation=invitation, secret=new.secret)


def link(request: HttpRequest, secret: str) -> str:
    """The link to pass on: outside any tenant, since its holder is not a member yet."""
    path = reverse("invitation", args=[secret], urlconf=settings.PUBLIC_SCHEMA_URLCONF)
    return request.build_absolute_uri(path)


def pending(*, tenant: Tenant) -> QuerySet[Invitation]:
    """The tenant's invitations that can still be accepted, newest first."""
    return Invitation.objects.filter(
        tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("invited_by")


def invitation_open(secret: str) -> Invitation | None:
    """The invitation ``secret`` opens, if it can still be accepted; else None, whatever the reason."""
    key_id = tokens.parse_key_id(secret, tokens.INVITATION_PREFIX)
    if key_id is None:
        return None
    invitation = Invitation.objects.select_related("tenant").filter(key_id=key_id).first()
    if invitation is None or not tokens.matches(secret, invitation.digest):
        return None
    usable = invitation.accepted_at is None and invitation.revoked_at is None
    if not usable or invitation.expires_at <= timezone.now() or invitation.tenant.suspended:
        return None
    return invitation


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """``user`` joins the invitation's tenant with its role; the invitation is used up."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.accepted_at is not None or locked.revoked_at is not None:
        raise Conflict("This invitation was already used or withdrawn.")
    tenant = invitation.tenant
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict(f"You are already a member of {tenant.name}.")
    with _change("invitation.accept", tenant, locked, {"state": "pending"}) as done:
        try:
            with transaction.atomic():
                membership = Membership.objects.create(tenant=tenant, user=user, role=locked.role)
        except IntegrityError as error:  # the same user accepting two links at once
            raise Conflict(f"You are already a member of {tenant.name}.") from error
        locked.accepted_at, locked.accepted_by = timezone.now(), user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        done.after = {"state": "accepted", "username": user.username, "role": locked.role}
    schema, username, role = tenant.schema_name, user.username, locked.role
    transaction.on_commit(lambda: notifier.tenant_event(schema, "member.added", username=username, role=role))
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Withdraw a pending invitation: its link stops working. Idempotent."""
    if invitation.revoked_at is not None or invitation.accepted_at is not None:
        return invitation
    with _change("invitation.revoke", invitation.tenant, invitation, {"state": "pending"}) as done:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        done.after = {"state": "withdrawn"}
    return invitation
