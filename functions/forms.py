from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.utils.choices import BaseChoiceIterator

from core.feedback import size_in_words
from core.names import NAME_MESSAGE, name_validator
from functions import config, runtimes, starters
from functions.models import Environment, QueueKind, TargetKind
from functions.services.triggers import METHODS


class NameField(forms.CharField):
    """A name (core.names) whose length is checked by the portal, not by the browser: an input's
    ``maxlength`` silently drops what is typed or pasted past it, so an 80-character name would
    arrive cut to 40. Past the limit it is refused in words instead."""

    def __init__(self, **kwargs: Any) -> None:
        too_long = "Too long: a name has at most %(limit_value)d characters (this one has %(show_value)d)."
        messages = {"max_length": too_long}
        super().__init__(
            max_length=40,
            validators=[name_validator],
            help_text=NAME_MESSAGE,
            error_messages=messages,
            **kwargs,
        )

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)
        return attrs


def environment_picker() -> forms.ModelChoiceField:
    """The tenant's environments by name (a function runs on one); empty keeps the current one,
    or for a new function the default."""
    return forms.ModelChoiceField(
        queryset=Environment.objects.order_by("name"), to_field_name="name", required=False,
        empty_label=None, label="Environment",
        help_text="Its Python version and warm pool: see the environments page.",
    )  # fmt: skip


class _ReadOnce(BaseChoiceIterator):
    """A model choice field's choices, read from the database the first time they are asked
    for (not when the form is made), then kept for the rest of the form's life."""

    def __init__(self, field: forms.ModelChoiceField) -> None:
        self.field = field
        self.read: list[Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.read is None:
            # iter(): list() of the iterator itself would ask its length first (a COUNT query)
            self.read = list(iter(self.field.iterator(self.field)))
        return iter(self.read)


def read_environments_once(form: forms.Form) -> None:
    """The environment picker reads the environments once, when it is rendered: Django's Select
    would read them twice (its first choice, to know whether it may say ``required``, then all
    of them)."""
    field = form.fields["environment"]
    assert isinstance(field, forms.ModelChoiceField)  # environment_picker()'s
    field.widget.choices = _ReadOnce(field)


class FunctionCreateForm(forms.Form):
    name = NameField()
    starter = forms.ChoiceField(
        choices=starters.CHOICES, initial=starters.DEFAULT, label="Start from", required=False
    )
    environment = environment_picker()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        read_environments_once(self)

    def clean_starter(self) -> str:
        return self.cleaned_data.get("starter") or starters.DEFAULT


class EnvironmentForm(forms.Form):
    """An environment's settings (functions.services.functions.ENVIRONMENT_FIELDS), as changed on
    its page; the images follow the version as the API's do (runtimes.follow)."""

    runtime_version = forms.ChoiceField(
        label="Python", choices=runtimes.CHOICES, initial=runtimes.DEFAULT_VERSION
    )
    image = forms.CharField(
        max_length=255, required=False,
        help_text="Empty or one of the portal's Python images: the version's image. Any other is kept as is.",
    )  # fmt: skip
    builder_image = forms.CharField(max_length=255, required=False, help_text="Empty: no builder.")
    poolsize = forms.IntegerField(label="Pool size", min_value=0, max_value=50, initial=3,
                                  help_text="Warm workers kept ready for the first calls.")  # fmt: skip
    memory_mb = forms.IntegerField(label="Memory (MiB)", min_value=64, required=False)
    cpu_millis = forms.IntegerField(label="CPU (millicores)", min_value=10, required=False)


class EnvironmentCreateForm(EnvironmentForm):
    """A new environment: its builder is the version's (it is changed on the environment's page)."""

    name = NameField()
    field_order = ["name", "runtime_version", "image", "poolsize", "memory_mb", "cpu_millis"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["builder_image"]


class SettingsForm(forms.Form):
    """The function's environment, and every setting of functions/config.py."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["environment"] = environment_picker()
        read_environments_once(self)
        self.fields.update(config.form_fields())


class UploadForm(forms.Form):
    file = forms.FileField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The limit a bigger upload is refused with (413, core/middleware.py), said beforehand.
        limit = size_in_words(settings.MAX_REQUEST_BYTES)
        self.fields[
            "file"
        ].help_text = f"One .py file, or a .zip (optionally with requirements.txt); at most {limit}."


def offer_targets(form: forms.BaseForm, *, numbers: list[int] | None, aliases: list[str] | None) -> None:
    """Turn a form's free-text version and alias fields into pickers of what exists (the page's
    forms; a posted form keeps its plain fields, whose values the service checks anyway).
    ``numbers`` newest first; a field that may stay empty offers "none"."""
    pickers = {"version": numbers, "canary_version": numbers, "alias": aliases}
    for name, values in pickers.items():
        field = form.fields.get(name)
        if field is None or values is None:
            continue
        choices = [(str(v), f"v{v}" if isinstance(v, int) else v) for v in values]
        if not field.required or not choices:
            choices.insert(0, ("", "none" if choices else f"no {name.replace('_', ' ')} yet"))
        field.widget = forms.Select(choices=choices)


class AliasForm(forms.Form):
    name = forms.CharField(max_length=30, widget=forms.TextInput(attrs={"list": "alias-names"}),
                           help_text="A new name, or an existing alias's to change it.")  # fmt: skip
    version = forms.IntegerField(min_value=1)
    canary_version = forms.IntegerField(min_value=1, required=False)
    canary_weight = forms.IntegerField(min_value=0, max_value=100, required=False)


class CompareForm(forms.Form):
    """The compare page's two pickers: the draft and each version (``numbers``, newest first)."""

    base = forms.ChoiceField(label="Base")
    head = forms.ChoiceField(label="Head")

    def __init__(self, *args: Any, numbers: list[int], draft_revision: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("draft", f"draft (revision {draft_revision})"), *((f"v{n}", f"v{n}") for n in numbers)]
        for name in ("base", "head"):
            picker = self.fields[name]
            assert isinstance(picker, forms.ChoiceField)
            picker.choices = choices


class PublishForm(forms.Form):
    """Publish the built draft as a version (the Versions tab), with what changed."""

    description = forms.CharField(
        max_length=200, required=False, label="What changed",
        widget=forms.TextInput(attrs={"placeholder": "Fixed the greeting"}),
        help_text="Optional, at most 200 characters: shown in the versions table.",
    )  # fmt: skip


class RestoreForm(forms.Form):
    """Restore a version into the draft (the Versions table's confirmed button)."""

    version = forms.IntegerField(min_value=1)


class TriggerForm(forms.Form):
    name = forms.CharField(max_length=50)
    path = forms.CharField(max_length=200, initial="/")
    methods = forms.MultipleChoiceField(choices=[(m, m) for m in METHODS], initial=["GET", "POST"],
                                        widget=forms.CheckboxSelectMultiple)  # fmt: skip
    is_prefix = forms.BooleanField(required=False)
    target_kind = forms.ChoiceField(choices=TargetKind.choices)
    alias = forms.CharField(max_length=30, required=False)
    version = forms.IntegerField(min_value=1, required=False)


def _json_object(raw: str | None, what: str) -> dict[str, str]:
    try:
        value: Any = json.loads(raw or "{}")
    except ValueError:
        raise forms.ValidationError(f"{what} must be a JSON object.") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise forms.ValidationError(f"{what} must be a JSON object of strings.")
    return value


class TimeTriggerForm(forms.Form):
    name = forms.CharField(max_length=50)
    cron = forms.CharField(
        max_length=120,
        initial="@every 1m",
        help_text="5 fields, or 6 with leading seconds; @hourly; @every 90s. UTC.",
    )
    method = forms.ChoiceField(choices=[(m, m) for m in METHODS], initial="POST")
    subpath = forms.CharField(max_length=200, initial="/")
    target_kind = forms.ChoiceField(choices=TargetKind.choices, initial=TargetKind.DRAFT)
    alias = forms.CharField(max_length=30, required=False)
    version = forms.IntegerField(min_value=1, required=False)


class QueueTriggerForm(forms.Form):
    name = forms.CharField(max_length=50)
    mq_type = forms.ChoiceField(choices=QueueKind.choices, label="Broker")
    topic = forms.CharField(max_length=200)
    resp_topic = forms.CharField(max_length=200, required=False, label="Response topic")
    error_topic = forms.CharField(max_length=200, required=False, label="Error topic")
    max_retries = forms.IntegerField(min_value=0, max_value=10, initial=3)
    content_type = forms.CharField(max_length=100, initial="application/json")
    target_kind = forms.ChoiceField(choices=TargetKind.choices, initial=TargetKind.DRAFT)
    alias = forms.CharField(max_length=30, required=False)
    version = forms.IntegerField(min_value=1, required=False)
    connection = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"host": "amqp://user:pass@broker:5672/"}'}),
        required=False, help_text="The broker's secret keys as JSON (write-only).",
    )  # fmt: skip
    metadata = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, initial="{}",
                               help_text="KEDA scaler metadata as JSON.")  # fmt: skip

    def clean_connection(self) -> dict[str, str]:
        return _json_object(self.cleaned_data.get("connection"), "The connection")

    def clean_metadata(self) -> dict[str, str]:
        return _json_object(self.cleaned_data.get("metadata"), "The metadata")


class InvokeForm(forms.Form):
    method = forms.ChoiceField(choices=[(m, m) for m in METHODS], initial="GET")
    path = forms.CharField(max_length=500, initial="/")
    headers = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, initial="{}")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, strip=False)
    invocation_type = forms.ChoiceField(
        choices=[("RequestResponse", "Wait for the answer"), ("Event", "Asynchronous (queued, 202 at once)")],
        initial="RequestResponse", required=False, label="Invocation",
    )  # fmt: skip

    def clean_invocation_type(self) -> str:
        return self.cleaned_data.get("invocation_type") or "RequestResponse"

    def clean_headers(self) -> dict[str, str]:
        raw = self.cleaned_data.get("headers") or "{}"
        try:
            value: Any = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("Headers must be a JSON object.") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("Headers must be a JSON object of strings.")
        return value


class SavedEventForm(InvokeForm):
    """The test panel's request, saved under a name."""

    event_name = NameField(label="Event name")


class TenantObjectForm(forms.Form):
    """A Secret or ConfigMap by name, with every value as ``KEY=value`` lines (replaces them all)."""

    name = forms.CharField(max_length=63, validators=[config.object_name_validator],
                           help_text="A DNS label; an existing name is replaced.")  # fmt: skip
    values = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}), strip=False,
        help_text="KEY=value, one per line (a key is a file name).",
    )  # fmt: skip

    def clean_values(self) -> dict[str, str]:
        return config.check_object_data(config.parse_lines(str(self.cleaned_data["values"]), "KEY"))
