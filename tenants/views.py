"""Pages: the platform admin's tenants, a tenant's dashboard, members and tokens, and the audit
trails (a tenant's, the platform's)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from audit import selectors as audit_selectors
from audit.models import AuditRecord
from audit.selectors import Filters, as_dict
from core.errors import DomainError
from core.feedback import refuse, refuse_form
from core.users import User, is_platform_admin
from tenants import forms, invitations, selectors, services
from tenants.models import Membership
from tenants.pages import tenant_page
from tenants.roles import Role, at_least


def _platform_admin(request: HttpRequest) -> bool:
    return is_platform_admin(request.user)


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _fail(request: HttpRequest, error: DomainError, form: Any = None) -> None:
    """The refusal in words, and each field's problem under that field of ``form``."""
    refuse(request, error, form)


# ---------------------------------------------------------------- platform admin


@login_required
def platform_tenants(request: HttpRequest) -> HttpResponse:
    if not _platform_admin(request):
        return render(request, "403.html", {"message": "Platform admins only."}, status=403)
    form = forms.TenantCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = services.tenant_create(admin=_user(request), **form.cleaned_data)
        except DomainError as error:
            _fail(request, error, form)
        else:
            messages.success(request, f"Tenant {tenant.slug} is being provisioned.")
            return redirect("platform-tenant", slug=tenant.slug)
    tenants = selectors.tenant_queryset()
    return render(request, "platform/tenants.html", {"form": form, "tenants": tenants})


_PLATFORM_ACTIONS = ("suspend", "resume", "retry", "delete", "quota")


def _quota_form(tenant: Any, data: Any = None) -> forms.QuotaForm:
    return forms.QuotaForm(data, quota=selectors.tenant_quota(tenant), internet_egress=tenant.internet_egress)


def _save_quota(request: HttpRequest, tenant: Any) -> HttpResponse | None:
    """Save the quota; when it is refused, the page again with each problem under its field."""
    form = _quota_form(tenant, request.POST)
    if not form.is_valid():
        refuse_form(request, "The quota was not saved", form)
        return _tenant_page(request, tenant, quota_form=form, status=400)
    data = dict(form.cleaned_data)
    egress = bool(data.pop("internet_egress"))
    try:
        services.tenant_set_quota(tenant=tenant, quota=data, internet_egress=egress)
    except DomainError as error:  # a quantity Kubernetes would refuse, or limits below requests
        _fail(request, error, form)
        return _tenant_page(request, tenant, quota_form=form, status=error.status)
    messages.success(request, f"Quota of {tenant.slug} saved; applying it.")
    return None


def _platform_action(request: HttpRequest, tenant: Any, action: str) -> HttpResponse | None:
    if action == "delete":
        form = forms.ConfirmDeleteForm(request.POST)
        confirm = form.data.get("confirm", "")
        services.tenant_delete_request(tenant=tenant, confirm=confirm)
        messages.success(request, f"Tenant {tenant.slug} is being deleted.")
        return redirect("platform-tenants")
    if action == "quota":
        return _save_quota(request, tenant)
    if action == "retry":
        services.tenant_retry(tenant=tenant)
    else:
        services.tenant_set_suspended(tenant=tenant, suspended=action == "suspend")
    messages.success(request, f"Tenant {tenant.slug}: {action} done.")
    return None


@login_required
def platform_tenant(request: HttpRequest, slug: str) -> HttpResponse:
    if not _platform_admin(request):
        return render(request, "403.html", {"message": "Platform admins only."}, status=403)
    tenant = get_object_or_404(selectors.tenant_queryset(), slug=slug)
    action = request.POST.get("action", "")
    if request.method == "POST" and action in _PLATFORM_ACTIONS:
        try:
            response = _platform_action(request, tenant, action)
        except DomainError as error:
            _fail(request, error)
        else:
            if response is not None:
                return response
        return redirect("platform-tenant", slug=tenant.slug)
    return _tenant_page(request, tenant)


def _tenant_page(
    request: HttpRequest, tenant: Any, *, quota_form: forms.QuotaForm | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "tenant": tenant,
        "delete_form": forms.ConfirmDeleteForm(),
        "quota_form": quota_form or _quota_form(tenant),
    }
    return render(request, "platform/tenant.html", context, status=status)


# ---------------------------------------------------------------- tenant pages


@tenant_page()
def dashboard(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    context = {
        "members_count": selectors.membership_list(tenant=tenant).count(),
        "tokens_count": selectors.token_list(tenant=tenant).filter(revoked_at__isnull=True).count(),
    }
    return render(request, "tenants/dashboard.html", context)


# The session's key for a new invitation's link, until the members page shows it once.
_NEW_INVITATION = "tenants.new_invitation"


def _invite(request: HttpRequest, tenant: Any) -> None:
    """Invite an address; the link waits in the session for the next page (never in a banner)."""
    form = forms.InviteForm(request.POST)
    if not form.is_valid():
        refuse_form(request, "The invitation was not made", form)
        return
    issued = invitations.invitation_create(tenant=tenant, invited_by=_user(request), **form.cleaned_data)
    email = issued.invitation.email
    messages.success(request, f"Invitation for {email} made: send them the link below.")
    request.session[f"{_NEW_INVITATION}.{tenant.schema_name}"] = {
        "email": email,
        "url": invitations.link(request, issued.secret),
    }


def _members_post(request: HttpRequest, tenant: Any) -> None:
    action = request.POST.get("action")
    if action == "invite":
        _invite(request, tenant)
        return
    if action == "withdraw":
        invitation = get_object_or_404(invitations.pending(tenant=tenant), pk=_pk(request, "invitation"))
        invitations.invitation_revoke(invitation=invitation)
        messages.success(request, f"Invitation for {invitation.email} withdrawn: its link no longer works.")
        return
    membership = get_object_or_404(Membership, pk=_pk(request, "membership"), tenant=tenant)
    if action == "role":
        role_form = forms.MemberRoleForm(request.POST)
        if role_form.is_valid():
            services.membership_set_role(membership=membership, role=role_form.cleaned_data["role"])
            messages.success(request, f"{membership.user.username} is now {membership.get_role_display()}.")
    elif action == "remove":
        services.membership_remove(membership=membership)
        messages.success(request, f"{membership.user.username} removed.")


def _pk(request: HttpRequest, field: str) -> int:
    """A posted row id; anything but digits is no row at all (404), never a 500."""
    value = request.POST.get(field, "")
    if not value.isdigit():
        raise Http404
    return int(value)


@never_cache  # the page after an invitation carries its link
@tenant_page(write_role=Role.ADMIN)
def members(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    if request.method == "POST":
        try:
            _members_post(request, tenant)
        except DomainError as error:
            _fail(request, error)
        return redirect("tenant-members")
    can_manage = at_least(request.tenant_role, Role.ADMIN)  # type: ignore[attr-defined]
    context = {
        "memberships": selectors.membership_list(tenant=tenant),
        "invitations": invitations.pending(tenant=tenant) if can_manage else [],
        "invite_form": forms.InviteForm(),
        "role_choices": forms.ROLE_CHOICES,
        "can_manage": can_manage,
        "invitation_days": invitations.INVITATION_TTL.days,
        "new_invitation": request.session.pop(f"{_NEW_INVITATION}.{tenant.schema_name}", None),  # once
    }
    return render(request, "tenants/members.html", context)


def _token_revoke(request: HttpRequest, tenant: Any, is_admin: bool) -> HttpResponse:
    """Revoke; htmx swaps in the token's row, a plain form gets a redirect."""
    queryset = selectors.token_list(tenant=tenant, user=None if is_admin else _user(request))
    token = get_object_or_404(queryset, pk=request.POST.get("token"))
    services.token_revoke(token=token)
    if getattr(request, "htmx", False):
        return render(request, "tenants/_token_row.html", {"t": token})
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("tenant-tokens")


def _token_create(request: HttpRequest, tenant: Any) -> str | None:
    """Create a token; returns its secret to show once."""
    form = forms.TokenCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Check the token's details.")
        return None
    issued = services.token_create(tenant=tenant, user=_user(request), **form.cleaned_data)
    return issued.secret


@never_cache  # the answer to a create carries the new secret: never store it anywhere
@tenant_page(write_role=Role.VIEWER)
def tokens_page(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    is_admin = at_least(request.tenant_role, Role.ADMIN)  # type: ignore[attr-defined]
    new_secret = None
    if request.method == "POST" and request.POST.get("action") == "revoke":
        return _token_revoke(request, tenant, is_admin)
    if request.method == "POST":
        try:
            new_secret = _token_create(request, tenant)
        except DomainError as error:
            _fail(request, error)
        if new_secret is None:
            return redirect("tenant-tokens")
    context = {
        "tokens": selectors.token_list(tenant=tenant, user=None if is_admin else _user(request)),
        "form": forms.TokenCreateForm(initial={"role": Role.VIEWER}),
        "new_secret": new_secret,
    }
    return render(request, "tenants/tokens.html", context)


# ---------------------------------------------------------------- the audit trail

AUDIT_PAGE_SIZE = 50


def _value(value: Any) -> str:
    """A setting's value in a cell: text as it is, nothing as "—", anything else as JSON."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _audit_row(values: dict[str, Any]) -> dict[str, Any]:
    changes = [(name, _value(pair[0]), _value(pair[1])) for name, pair in values["changes"].items()]
    return {**values, "at": datetime.fromisoformat(values["at"]), "change_list": changes}


Trail = Callable[[Filters], QuerySet[AuditRecord]]
Show = Callable[[dict[str, Any]], dict[str, Any]]


def _audit_page(
    request: HttpRequest, template: str, *, trail: Trail, show: Show, socket_url: str, export_url: str
) -> HttpResponse:
    """One page of a trail, newest first: the filter form, "Older" by the last id shown, the
    export of the same filters, and the live socket's URL and filters (first page only)."""
    form = forms.AuditFilterForm(request.GET or None)
    context: dict[str, Any] = {
        "form": form,
        "rows": [],
        "live": {},
        "socket_url": socket_url,
        "export_url": export_url,
    }
    if form.is_bound and not form.is_valid():
        return render(request, template, context, status=400)
    filters = form.filters() if form.is_bound else Filters()
    records = trail(filters)
    before = form.cleaned_data.get("before") if form.is_bound else None
    if before:
        records = records.filter(id__lt=before)
    page = list(records[: AUDIT_PAGE_SIZE + 1])
    context["rows"] = [_audit_row(show(as_dict(record))) for record in page[:AUDIT_PAGE_SIZE]]
    kept = request.GET.copy()
    kept.pop("before", None)
    context["export_query"] = kept.urlencode()
    if len(page) > AUDIT_PAGE_SIZE:
        kept["before"] = str(page[AUDIT_PAGE_SIZE - 1].pk)
        context["older_query"] = kept.urlencode()
    if not before:  # new records belong on the first page only
        context["live"] = {**asdict(filters), "since": _iso(filters.since), "until": _iso(filters.until)}
    return render(request, template, context)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


@tenant_page(read_role=Role.ADMIN, write_role=Role.ADMIN)
@require_safe
def audit_page(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    return _audit_page(
        request, "tenants/audit.html",
        trail=functools.partial(audit_selectors.tenant_trail, tenant.pk), show=audit_selectors.as_tenant_sees,
        socket_url=f"/t/{tenant.slug}/ws/audit/", export_url=f"/t/{tenant.slug}/api/v1/audit/export/",
    )  # fmt: skip


@login_required
@require_safe
def platform_audit(request: HttpRequest) -> HttpResponse:
    if not _platform_admin(request):
        return render(request, "403.html", {"message": "Platform admins only."}, status=403)
    return _audit_page(
        request, "platform/audit.html", trail=audit_selectors.platform_trail, show=lambda values: values,
        socket_url="/ws/platform/audit/", export_url="/api/v1/audit/export/",
    )  # fmt: skip


# ---------------------------------------------------------------- invitation links


@never_cache  # the page is the link's: never stored on the way
def invitation(request: HttpRequest, secret: str) -> HttpResponse:
    """An invitation's page: join signed in, or create an account and join. Every link that
    cannot be accepted gets the same 404 page, whatever the reason (tenants/invitations.py)."""
    found = invitations.invitation_open(secret)
    if found is None:
        days = {"invitation_days": invitations.INVITATION_TTL.days}
        return render(request, "tenants/invitation_invalid.html", days, status=404)
    signed_in = request.user.is_authenticated
    signup = forms.InvitationSignupForm(request.POST if request.method == "POST" and not signed_in else None)
    if request.method == "POST":
        user = _user(request) if signed_in else _signup(signup, found)
        if user is not None:
            return _join(request, found, user, signed_in)
    context = {"invitation": found, "signup_form": signup, "signed_in": signed_in}
    return render(request, "tenants/invitation.html", context)


def _signup(form: forms.InvitationSignupForm, found: Any) -> User | None:
    """The account made from the form (its e-mail is the invitation's), or None: the form shows why."""
    if not form.is_valid():
        return None
    user: User = form.save(commit=False)
    user.email = found.email
    user.save()
    return user


def _join(request: HttpRequest, found: Any, user: User, signed_in: bool) -> HttpResponse:
    try:
        invitations.invitation_accept(invitation=found, user=user)
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("home")
    if not signed_in:
        auth_login(request, user)
    messages.success(request, f"You joined {found.tenant.name} as {found.get_role_display()}.")
    return redirect(f"/t/{found.tenant.slug}/")
