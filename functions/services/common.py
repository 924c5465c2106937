"""Helpers shared by the function services."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import ValidationError
from django.db import models

from audit import services as audit
from core.errors import ValidationFailed

T = TypeVar("T")
Settings = Callable[[T], dict[str, Any]]


def full_clean(instance: models.Model, *, exclude: list[str] | None = None) -> None:
    """Model validation as a ValidationFailed whose detail names each bad field."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=True, validate_constraints=False)
    except ValidationError as exc:
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise ValidationFailed("The request has invalid fields.", detail=detail) from None


@dataclass
class Recording(Generic[T]):
    """The audit record of a change to one object, being made: ``done(obj)`` puts ``obj``'s
    settings in the record as they are after the change, and returns ``obj``."""

    change: audit.Change
    settings: Settings[T]

    def done(self, obj: T) -> T:
        self.change.after = self.settings(obj)
        return obj


@contextmanager
def recorded(
    action: str, *, object_type: str, object_name: str, settings: Settings[T], before: T | None = None
) -> Iterator[Recording[T]]:
    """``audit.change`` of one object, its record holding ``settings(obj)`` before (``before``,
    None for a new object) and after (``Recording.done``). A change that combines services
    (changes.py) opens the same record as the service it calls: the service's then folds into it,
    and only what else the change did (its deployments) is listed as effects."""
    snapshot = settings(before) if before is not None else None
    with audit.change(action, object_type=object_type, object_name=object_name, before=snapshot) as change:
        yield Recording(change, settings)
