from __future__ import annotations

import dataclasses
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm, UsernameField

from audit.selectors import OBJECT_TYPES, Filters
from dataplane.namespaces import TenantQuota
from tenants.roles import TENANT_ROLES

ROLE_CHOICES = [(r.value, r.label) for r in TENANT_ROLES]


class TenantCreateForm(forms.Form):
    slug = forms.CharField(max_length=40, help_text="Lowercase letters, digits and '-'.")
    name = forms.CharField(max_length=100, required=False)


class ConfirmDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=40, label="Type the tenant's slug to confirm")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, help_text="Where you will send the invitation link.")
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class InvitationSignupForm(UserCreationForm):
    """A new account made from an invitation link: Django's own form (its password validators);
    the e-mail address is the invitation's, so nobody types it."""

    class Meta:
        model = get_user_model()
        fields = ("username",)
        field_classes = {"username": UsernameField}


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )


# Each TenantQuota field in words, for the platform admin's quota form and the tenant's quota page
# (the quota_label filter); a field missing here shows its own name.
QUOTA_LABELS = {
    "cpu_requests": "CPU requested, all pods",
    "cpu_limits": "CPU limit, all pods",
    "memory_requests": "Memory requested, all pods",
    "memory_limits": "Memory limit, all pods",
    "pods": "Pods",
    "functions": "Functions",
    "packages": "Packages",
    "httptriggers": "HTTP triggers",
    "timetriggers": "Scheduled (time) triggers",
    "messagequeuetriggers": "Message queue triggers",
    "environments": "Environments",
    "secrets": "Secrets",
    "configmaps": "ConfigMaps",
    "concurrency": "Requests in flight",
    "captured_requests": "Captured failed requests",
    "package_size": "Package size, largest archive",
    "max_container_cpu": "CPU per container, at most",
    "max_container_memory": "Memory per container, at most",
    "default_container_cpu_request": "Default CPU request per container",
    "default_container_cpu_limit": "Default CPU limit per container",
    "default_container_memory_request": "Default memory request per container",
    "default_container_memory_limit": "Default memory limit per container",
}


def quota_label(name: str) -> str:
    return QUOTA_LABELS.get(name, name)


def _quota_unit(name: str) -> str:
    """What a quantity field takes, in its label: Kubernetes quantities, so units are free."""
    return "cores, e.g. 2 or 500m" if "cpu" in name else "bytes, e.g. 512Mi or 4Gi"


class QuotaForm(forms.Form):
    """Every TenantQuota field, plus internet egress; validated by quota_from in the service."""

    def __init__(self, *args: Any, quota: TenantQuota, internet_egress: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in dataclasses.fields(TenantQuota):
            value = getattr(quota, field.name)
            label = quota_label(field.name)
            if isinstance(value, int):
                self.fields[field.name] = forms.IntegerField(label=label, min_value=0, initial=value)
            else:
                label = f"{label} ({_quota_unit(field.name)})"
                self.fields[field.name] = forms.CharField(label=label, max_length=20, initial=value)
        self.fields["internet_egress"] = forms.BooleanField(
            label="Internet egress allowed", required=False, initial=internet_egress
        )


_LOCAL_MINUTE = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows


class AuditFilterForm(forms.Form):
    actor = forms.CharField(max_length=150, required=False, help_text="A username, system, or a token id")
    object_type = forms.ChoiceField(
        choices=[("", "any"), *((t, t) for t in OBJECT_TYPES)], required=False, label="Object type"
    )
    object = forms.CharField(max_length=200, required=False, help_text="The start of its name")
    action = forms.CharField(max_length=48, required=False, help_text="function.update, or function.")
    since = forms.DateTimeField(
        required=False, label="Since (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=_LOCAL_MINUTE),
    )  # fmt: skip
    until = forms.DateTimeField(
        required=False, label="Until (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=_LOCAL_MINUTE),
    )  # fmt: skip
    # The "Older" link's cursor: the last id the page showed (never rendered in the form).
    before = forms.IntegerField(min_value=1, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            self.add_error("until", "Must be later than since.")
        return data

    def filters(self) -> Filters:
        data = self.cleaned_data
        return Filters(
            actor=data["actor"], object_type=data["object_type"], object_name=data["object"],
            action=data["action"], since=data["since"], until=data["until"],
        )  # fmt: skip
