"""How a refusal reaches a person on a page: in words (never a Python dict), each field's
problem under its field, and the framed error page (the API's paths keep the JSON shape).

The API sends a refusal as ``{"error": {"code", "message", "detail"}}`` with ``detail`` a dict
of field names to messages (core/errors.py); pages say the same thing as sentences, naming
each field by its label. Every page view formats refusals here, so none shows ``{'name': [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import messages
from django.forms.utils import pretty_name
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.errors import DomainError, ValidationFailed, error_response, wants_json

# Detail keys of problems that belong to no one field (Django's and DRF's names).
NON_FIELD_KEYS = frozenset({"__all__", "non_field_errors"})

Labels = Mapping[str, str]


def in_words(detail: Any, labels: Labels | None = None) -> str:
    """A refusal's detail as sentences: ``{"name": ["Too long."]}`` is ``Name: Too long.``;
    a list is its items in turn; a field is named by its label in ``labels`` (a form's), else
    by its key made readable (``canary_weight`` is "Canary weight"). Empty for no detail."""
    if detail is None:
        return ""
    if isinstance(detail, Mapping):
        parts = [_entry(str(key), value, labels or {}) for key, value in detail.items()]
        return " ".join(part for part in parts if part)
    if isinstance(detail, list | tuple | set | frozenset):
        return " ".join(_sentence(in_words(item)) for item in detail if in_words(item))
    return _sentence(str(detail))


def _entry(key: str, value: Any, labels: Labels) -> str:
    words = in_words(value)
    if not words or key in NON_FIELD_KEYS:
        return words
    return f"{field_label(key, labels)}: {words}"


def field_label(key: str, labels: Labels | None = None) -> str:
    """How a detail key is named to a person: the form's label, else the key's last part
    (``quota.memory_limits`` is "Memory limits") made readable."""
    labels = labels or {}
    name = key if key in labels else key.rsplit(".", 1)[-1]
    return labels.get(name) or pretty_name(name)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?:)" else f"{text}."


def error_text(error: DomainError, labels: Labels | None = None) -> str:
    """The refusal's message, then what its detail adds in words (a field whose problem the
    message already states is not said twice)."""
    detail = error.detail
    if isinstance(detail, Mapping):
        detail = {k: v for k, v in detail.items() if in_words(v).rstrip(".") not in error.message}
    elif in_words(detail).rstrip(".") in error.message:
        detail = None
    extra = in_words(detail, labels)
    return f"{_sentence(error.message)} {extra}".strip()


def form_labels(form: forms.BaseForm) -> dict[str, str]:
    return {name: str(field.label or pretty_name(name)) for name, field in form.fields.items()}


def form_errors(form: forms.BaseForm) -> dict[str, list[str]]:
    """A bound, invalid form's errors as a refusal's detail (the API's shape)."""
    return {field: [str(message) for message in errors] for field, errors in form.errors.items()}


def form_refusal(what: str, form: forms.BaseForm) -> ValidationFailed:
    """The refusal of an invalid form: ``what`` happened or to do, then each field's problem in
    words (a page that redirects cannot show them under the fields: the message says them)."""
    detail = form_errors(form)
    return ValidationFailed(f"{_sentence(what)} {in_words(detail, form_labels(form))}".strip(), detail=detail)


def attach(form: forms.BaseForm, error: DomainError) -> None:
    """Put each field's problem of the refusal under that field of ``form`` (a key such as
    ``quota.pods`` finds the field ``pods``); problems of no field of the form stay with the
    message."""
    if not isinstance(error.detail, Mapping):
        return
    for key, value in error.detail.items():
        name = key if key in form.fields else key.rsplit(".", 1)[-1]
        shown = [str(message) for message in form.errors.get(name) or []] if form.is_bound else []
        new = [words for item in _as_list(value) if (words := in_words(item)) and words not in shown]
        if name in form.fields and new:  # the form's own problems are there already
            form.add_error(name, new)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def refuse(request: HttpRequest, error: DomainError, form: forms.BaseForm | None = None) -> None:
    """Tell the person on the page: the refusal in words as an error message, and, when the
    page shows ``form`` again, each field's problem under its field."""
    labels = form_labels(form) if form is not None else None
    if form is not None:
        attach(form, error)
    messages.error(request, error_text(error, labels))


def size_in_words(size: int) -> str:
    """``10485760`` is "10 MiB"; ``1536`` is "1.5 KiB"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def error_page(request: HttpRequest, status: int, code: str, message: str | None = None) -> HttpResponse:
    """The answer to a request that cannot be served: the API's JSON error shape on its paths
    (``message`` is then required), otherwise ``<status>.html`` inside the portal's frame
    (whose own wording stands in for a missing ``message``)."""
    if wants_json(request):
        return error_response(status, code, message or "Request failed.")
    return render(
        request, f"{status}.html", {"message": message, "back": same_site_path(request)}, status=status
    )


def same_site_path(request: HttpRequest) -> str:
    """The request's path as a link that stays on this site: ``//evil.example/x`` or
    ``/\\evil.example`` would be read by a browser as another host."""
    return "/" + request.path.lstrip("/\\")


def refuse_form(request: HttpRequest, what: str, form: forms.BaseForm) -> None:
    """Tell the person on the page that ``form`` was refused: ``what`` happened, then each
    field's problem in words (the page shows them under the fields too)."""
    messages.error(request, form_refusal(what, form).message)
