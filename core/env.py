"""Typed readers for environment variables: the only place settings come from.

Every reader fails at start-up with a message naming the variable, so a typo in a
deployment is caught before the first request. A secret may instead be given as
``NAME_FILE`` (a path whose content is the value), as Docker and Kubernetes mount them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_path}: {exc}") from exc
    return os.environ.get(name)


def env_str(name: str, default: str | object = _MISSING) -> str:
    value = _raw(name)
    if value is None:
        if default is _MISSING:
            raise ImproperlyConfigured(f"{name} must be set")
        return str(default)
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_str_map(name: str, default: dict[str, str]) -> dict[str, str]:
    """A JSON object of strings, e.g. ``{"3.12": "registry/python-env-3.12:1.35"}``, laid over
    ``default``: the keys it names replace theirs, the others keep their default."""
    value = _raw(name)
    if value is None:
        return dict(default)
    try:
        given = json.loads(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {value!r}") from None
    if not isinstance(given, dict) or not all(isinstance(v, str) and v for v in given.values()):
        raise ImproperlyConfigured(f"{name} must be a JSON object of non-empty strings, got {value!r}")
    return {**default, **given}


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
