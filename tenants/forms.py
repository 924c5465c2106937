from __future__ import annotations

from django import forms

from tenants.roles import TENANT_ROLES

ROLE_CHOICES = [(r.value, r.label) for r in TENANT_ROLES]


class TenantCreateForm(forms.Form):
    slug = forms.CharField(max_length=40, help_text="Lowercase letters, digits and '-'.")
    name = forms.CharField(max_length=100, required=False)


class ConfirmDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=40, label="Type the tenant's slug to confirm")


class MemberAddForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
