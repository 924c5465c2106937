"""``{{ name|quota_label }}``: a quota's name in words, for pages rendered with raw quota names
(the tenant's quota page gets its rows from functions.quotas.usage)."""

from __future__ import annotations

from django import template

from tenants import forms

register = template.Library()


@register.filter
def quota_label(name: str) -> str:
    return forms.quota_label(name)
