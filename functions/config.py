"""A function's settings (executor, scaling, timeouts, resources, environment variables), declared once.

Everything else is derived from SETTINGS: the model fields and their validation
(``model_field``), the API fields (``serializer_fields``), the settings form (``form_fields``),
the manifest input (``functions/specs.py``) and what a version freezes (``frozen`` / ``thawed``).
Adding a setting is one line here plus its migration.

A version's configuration is stored as it was when the version was published, with
``config_version``. ``thawed`` reads any stored configuration, older ones included: a setting
added since gets its default, one removed since is dropped. So a version published before a
setting existed still loads, deploys and shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from rest_framework import serializers

from core.api.fields import StrictCharField
from runtime.worker import environment, volumes

# 1: the keys of FunctionSpec as of the first release (no "config_version" stored).
# 2: "config_version" stored; settings missing from a stored config take their defaults.
CONFIG_VERSION = 2

entrypoint_validator = RegexValidator(
    r"^([A-Za-z_][A-Za-z0-9_]*)?(\.[A-Za-z_][A-Za-z0-9_]*)*$",
    "Use '' (main.main), 'func' (main.func) or 'package.module.func'.",
)


# Environment variables: the runtime's rules (runtime/worker/environment.py: POSIX names, some
# reserved for the platform, no NUL) and the portal's limits, Lambda's: names of at most 128
# characters, 4 KiB of names and values in all.
ENV_NAME_MAX = 128
ENV_MAX_BYTES = 4096


def check_environment_variables(value: object) -> dict[str, str]:
    """``value`` as environment variables (a dict of str to str), or ValidationError saying what
    is wrong with which variable. The model, the API and the form call it."""
    if not isinstance(value, Mapping):
        raise ValidationError("Give an object of names to values.")
    errors = [reason for name, text in value.items() if (reason := _variable_error(name, text))]
    if not errors and _text_bytes(value) > ENV_MAX_BYTES:
        errors.append(f"Names and values take {_text_bytes(value)} bytes in all; at most {ENV_MAX_BYTES}.")
    if errors:
        raise ValidationError(errors)
    return dict(value)


def _variable_error(name: object, text: object) -> str | None:
    if isinstance(name, str) and len(name) > ENV_NAME_MAX:
        return f"{name[:20]}...: a name has at most {ENV_NAME_MAX} characters."
    reason = environment.problem(name, text)
    return None if reason is None else f"{reason}."


def _text_bytes(value: Mapping[str, str]) -> int:
    return sum(len(name.encode()) + len(text.encode()) for name, text in value.items())


def environment_variables_text(value: Mapping[str, str]) -> str:
    """``NAME=value`` lines by name, the form's text for ``value`` (PostgreSQL's jsonb keeps no order)."""
    return "\n".join(f"{name}={value[name]}" for name in sorted(value))


def parse_lines(text: str, word: str = "NAME") -> dict[str, str]:
    """A form's ``NAME=value`` lines (blank lines skipped) as a dict; ValidationError naming a
    line without '=' or a name given twice. The caller checks the names and values."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep:
            raise ValidationError(f"Line {number}: write {word}=value.")
        if name in found:
            raise ValidationError(f"Line {number}: {name} is given twice.")
        found[name] = value
    return found


def parse_environment_variables_text(text: str) -> dict[str, str]:
    """The settings form's ``NAME=value`` lines as environment variables (``parse_lines``)."""
    return check_environment_variables(parse_lines(text))


class EnvironmentVariablesFormField(forms.CharField):
    """``NAME=value`` lines in a textarea; cleans to a dict."""

    def __init__(self, **kwargs: Any) -> None:
        widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})
        super().__init__(widget=widget, strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return environment_variables_text(value) if isinstance(value, Mapping) else value

    def clean(self, value: Any) -> dict[str, str]:
        return parse_environment_variables_text(str(super().clean(value) or ""))


class EnvironmentVariablesField(serializers.DictField):
    """The API's environment variables: an object of names to string values."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(allow_blank=True, trim_whitespace=False), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError("Give an object of names to values.")
        try:
            return check_environment_variables(data)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


# A function names at most MAX_OBJECT_NAMES Secrets and as many ConfigMaps, each a DNS label.
MAX_OBJECT_NAMES = 16
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def check_object_names(value: object) -> list[str]:
    """``value`` as a list of Secret or ConfigMap names (DNS labels, each once, at most
    ``MAX_OBJECT_NAMES``), or ValidationError. Whether they exist is the services' to check."""
    if not isinstance(value, list | tuple):
        raise ValidationError("Give a list of names.")
    errors = [f"{name!r}: a name is a DNS label (a-z, 0-9, '-')." for name in value
              if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name)]  # fmt: skip
    if len(value) > MAX_OBJECT_NAMES:
        errors.append(f"At most {MAX_OBJECT_NAMES} names.")
    if not errors and len(set(value)) != len(value):
        errors.append("A name is given twice.")
    if errors:
        raise ValidationError(errors)
    return list(value)


object_name_validator = RegexValidator(
    f"^{OBJECT_NAME.pattern}$", "A name is a DNS label: a-z, 0-9 and '-', at most 63, not at either end."
)
# Values of a Secret or ConfigMap: the runtime's rules (runtime/worker/volumes.py: keys are file
# names, 1 MiB in all, a Kubernetes object's bound), text values.


def check_object_data(value: object) -> dict[str, str]:
    """``value`` as the data of a Secret or ConfigMap, or ValidationError naming the key."""
    if not isinstance(value, Mapping) or not value:
        raise ValidationError("Give an object of at least one key to its value.")
    errors: list[str] = []
    for key, text in value.items():
        if volumes.key_problem(key) is not None:
            errors.append(f"{key!r}: a key is {volumes.KEY_RULE} (a file name).")
        elif not isinstance(text, str):
            errors.append(f"{key}: a value is a string.")
        elif "\0" in text:
            errors.append(f"{key}: a value cannot hold a NUL character.")
    if not errors and _text_bytes(value) > volumes.MAX_OBJECT_BYTES:
        errors.append(f"Keys and values take {_text_bytes(value)} bytes; at most {volumes.MAX_OBJECT_BYTES}.")
    if errors:
        raise ValidationError(errors)
    return dict(value)


class ObjectNamesFormField(forms.CharField):
    """Names separated by commas; cleans to a list."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def clean(self, value: Any) -> list[str]:
        text = str(super().clean(value) or "")
        return check_object_names([name.strip() for name in text.split(",") if name.strip()])


class ObjectNamesField(serializers.ListField):
    """The API's list of Secret or ConfigMap names."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.CharField(), **kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        names = super().to_internal_value(data)
        try:
            return check_object_names(names)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class Executor(models.TextChoices):
    POOLMGR = "poolmgr", "Pool manager (warm pool)"
    NEWDEPLOY = "newdeploy", "New deployment (dedicated, scales)"


@dataclass(frozen=True)
class Setting:
    """One setting. A number has ``minimum``/``maximum`` (None: unbounded, and ``default=None``
    means "not set": the environment's or the tenant's limit applies); text has ``max_length``."""

    name: str
    label: str
    default: int | str | dict[str, str] | list[str] | None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    choices: tuple[tuple[str, str], ...] = ()
    validators: tuple[RegexValidator, ...] = ()
    small: bool = False  # stored as a PositiveSmallIntegerField
    mapping: bool = False  # environment variables: names to values (check_environment_variables)
    names: bool = False  # a list of the tenant's Secrets or ConfigMaps, by name (check_object_names)

    @property
    def is_text(self) -> bool:
        return self.max_length is not None

    def fresh_default(self) -> Any:
        """The default, a new dict or list for a mapping or names (never one shared by every function)."""
        if isinstance(self.default, dict):
            return dict(self.default)
        if isinstance(self.default, list):
            return list(self.default)
        return self.default

    def bounds(self) -> list[MinValueValidator | MaxValueValidator]:
        found: list[MinValueValidator | MaxValueValidator] = []
        if self.minimum:  # a positive integer field already refuses < 0
            found.append(MinValueValidator(self.minimum))
        if self.maximum is not None:
            found.append(MaxValueValidator(self.maximum))
        return found


SETTINGS: tuple[Setting, ...] = (
    Setting("entrypoint", "Entrypoint", "main", max_length=200, validators=(entrypoint_validator,)),
    Setting("executor", "Executor", Executor.POOLMGR.value, max_length=16, choices=tuple(Executor.choices)),
    Setting("min_scale", "Min scale", 0, minimum=0, maximum=100, small=True),
    Setting("max_scale", "Max scale", 1, minimum=1, maximum=100, small=True),
    Setting("target_cpu", "Target CPU (%)", 80, minimum=1, maximum=100, small=True),
    # Fission's own default is 500 pods; a tenant's quota reserves concurrency x memory.
    Setting("concurrency", "Concurrency", 3, minimum=1, maximum=5000),
    Setting("requests_per_pod", "Requests per pod", 1, minimum=1, maximum=1000),
    Setting("timeout_s", "Timeout (s)", 60, minimum=1, maximum=3600),
    Setting("idle_timeout_s", "Idle timeout (s)", 120, minimum=1, maximum=86400),
    Setting("memory_mb", "Memory limit (MB)", None, minimum=64),
    Setting("cpu_millis", "CPU limit (millicores)", None, minimum=10),
    # Asynchronous invocations (Lambda's model): retries after the first attempt fails, and how
    # old an event may get in the queue before it goes to the dead letters unrun.
    Setting("async_retries", "Async retries", 2, minimum=0, maximum=2, small=True),
    Setting("async_max_event_age_s", "Async max event age (s)", 21600, minimum=60, maximum=21600),
    # Delivered to the function's process (runtime) or as a ConfigMap (Kubernetes): docs/configuration.md.
    Setting("environment_variables", "Environment variables", {}, mapping=True),
    # The tenant's Secrets and ConfigMaps the function reads, as Fission mounts them:
    # /secrets/<namespace>/<name>/<key> and /configs/<namespace>/<name>/<key> (docs/configuration.md).
    Setting("secrets", "Secrets", [], names=True),
    Setting("configmaps", "Config maps", [], names=True),
)
NAMES = tuple(setting.name for setting in SETTINGS)
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def model_field(name: str) -> Any:
    """The model field of setting ``name``, with its default and validation."""
    setting = _BY_NAME[name]
    if setting.mapping:
        return models.JSONField(default=dict, blank=True, validators=[check_environment_variables])
    if setting.names:
        return models.JSONField(default=list, blank=True, validators=[check_object_names])
    if setting.is_text:
        return models.CharField(
            max_length=setting.max_length or 0, default=setting.default, blank=not setting.choices,
            choices=list(setting.choices) or None, validators=list(setting.validators),
        )  # fmt: skip
    field = models.PositiveSmallIntegerField if setting.small else models.PositiveIntegerField
    if setting.default is None:
        return field(null=True, blank=True, validators=setting.bounds())
    return field(default=setting.default, validators=setting.bounds())


def serializer_fields() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """The API's fields, each optional (a create takes the defaults, an update changes what it names)."""
    return {setting.name: _serializer_field(setting) for setting in SETTINGS}


def _serializer_field(setting: Setting) -> serializers.Field[Any, Any, Any, Any]:
    if setting.mapping:
        return EnvironmentVariablesField(required=False)
    if setting.names:
        return ObjectNamesField(required=False)
    if setting.choices:
        return serializers.ChoiceField(choices=list(setting.choices), required=False)
    if setting.is_text:
        validators = list(setting.validators)
        return StrictCharField(max_length=setting.max_length or 0, required=False, allow_blank=True,
                               validators=validators)  # fmt: skip
    return serializers.IntegerField(required=False, allow_null=setting.default is None, **_limits(setting))


def _limits(setting: Setting) -> dict[str, Any]:
    limits = {"min_value": setting.minimum, "max_value": setting.maximum}
    return {key: value for key, value in limits.items() if value is not None}


def form_fields() -> dict[str, forms.Field]:
    """The settings form's fields, labelled."""
    return {setting.name: _form_field(setting) for setting in SETTINGS}


def _form_field(setting: Setting) -> forms.Field:
    if setting.names:
        return ObjectNamesFormField(
            required=False, label=setting.label, help_text="Names, separated by commas."
        )
    if setting.mapping:
        return EnvironmentVariablesFormField(required=False, label=setting.label,
                                             help_text="NAME=value, one per line.")  # fmt: skip
    if setting.choices:
        return forms.ChoiceField(choices=list(setting.choices), label=setting.label)
    if setting.is_text:
        return forms.CharField(
            max_length=setting.max_length,
            required=False,
            label=setting.label,
            validators=list(setting.validators),
        )
    return forms.IntegerField(
        min_value=setting.minimum, max_value=setting.maximum, required=setting.default is not None,
        label=setting.label,
    )  # fmt: skip


def current(instance: Any) -> dict[str, Any]:
    """The settings of a function (or anything with the same attributes) as they are now."""
    return {name: getattr(instance, name) for name in NAMES}


def frozen(values: dict[str, Any]) -> dict[str, Any]:
    """What a version stores: ``values`` (name, environment and the settings) and the version."""
    return {**values, "config_version": CONFIG_VERSION}


def thawed(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a stored configuration of any version: a setting it lacks gets its
    default, a key no longer known is dropped. ``name`` and ``environment`` pass through."""
    known: dict[str, Any] = {key: config[key] for key in ("name", "environment") if key in config}
    return {**known, **{s.name: config[s.name] if s.name in config else s.fresh_default() for s in SETTINGS}}
