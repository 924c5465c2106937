"""Template filters shared by the pages."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def epoch(value: float | int | None) -> datetime | None:
    """An epoch-seconds number as an aware UTC datetime (for the ``date`` filter)."""
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)
