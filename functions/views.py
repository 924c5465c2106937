"""Function pages: the list, and each function's workspace (functions/workspace.py): its tabs
Code, Test, Versions and aliases, Triggers and Configuration (Monitor and Logs are in
metrics/views.py). Every tab takes the page's forms; one that is refused is shown again with its
problems under its fields."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django import forms as django_forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode

from core.errors import DomainError, NotFound
from core.feedback import error_text, form_labels, form_refusal, in_words, refuse
from dataplane.backends.base import BackendError
from functions import code_panel, config, forms, quotas, selectors, starters, workspace
from functions.models import (
    Alias,
    ConfigMap,
    Environment,
    Function,
    Invocation,
    QueueTrigger,
    Secret,
    TimeTrigger,
    Trigger,
    Version,
)
from functions.services import (
    changes,
    configuration,
    deadletters,
    deployments,
    events,
    functions,
    invocations,
    versions,
)
from functions.workspace import FormRefused
from tenants.pages import tenant_page


def _user(request: HttpRequest) -> str:
    return str(getattr(request.user, "username", ""))


def _checked(form: django_forms.Form, key: str, what: str) -> dict[str, Any]:
    """The valid form's data, else the refusal that shows ``form`` again under ``key``."""
    if not form.is_valid():
        raise FormRefused(key, form, form_refusal(what, form))
    return form.cleaned_data


@contextmanager
def _refusing(key: str, form: django_forms.Form) -> Iterator[None]:
    """A service's refusal (a name taken, a bad path …) shown under ``form``'s fields."""
    try:
        yield
    except DomainError as error:
        raise FormRefused(key, form, error) from error


@tenant_page()
def function_list(request: HttpRequest) -> HttpResponse:
    # A viewer gets no new function form (nor its query of the environments).
    creates = request.tenant_role != "viewer"  # type: ignore[attr-defined]
    form = forms.FunctionCreateForm(request.POST or None) if creates else None
    if form is not None and request.method == "POST" and form.is_valid():
        try:
            function = functions.function_create(
                name=form.cleaned_data["name"], starter=form.cleaned_data["starter"],
                environment=form.cleaned_data["environment"],
            )  # fmt: skip
        except DomainError as error:  # e.g. the name is taken: said under the name
            refuse(request, error, form)
        else:
            starter = starters.STARTERS[form.cleaned_data["starter"]].label
            draft = (
                "a hello-world draft"
                if form.cleaned_data["starter"] == starters.DEFAULT
                else f"the {starter} starter"
            )
            messages.success(request, f"Function {function.name} created with {draft}.")
            return redirect("function-detail", name=function.name)
    search = request.GET.get("q", "").strip()[:50]  # a name has at most 40 characters
    context = {
        "listed": selectors.function_list(search=search, page=request.GET.get("page")),
        "form": form,
    }
    return render(request, "functions/list.html", context)


def _upload(request: HttpRequest, function: Function) -> str:
    form = forms.UploadForm(request.POST, request.FILES)
    upload = _checked(form, "upload_form", "Choose a file to upload")["file"]
    with _refusing("upload_form", form):
        functions.draft_upload(function=function, filename=upload.name or "", data=upload.read())
    return f"Uploaded {upload.name}. Deploy to build it."


def _settings(request: HttpRequest, function: Function) -> str:
    form = forms.SettingsForm(request.POST)
    data = _checked(form, "settings_form", "Check the settings")
    if data["environment"] is None:  # not sent: the function keeps its environment
        del data["environment"]
    with _refusing("settings_form", form):
        changes.function_update_and_deploy(function=function, user=_user(request), **data)
    return "Settings saved; redeploying."


def _deploy(request: HttpRequest, function: Function) -> str:
    deployments.deployment_create(function=function, cause="deploy", user=_user(request))
    return "Deployment queued."


def _publish(request: HttpRequest, function: Function) -> str:
    form = forms.PublishForm(request.POST, auto_id="publish-%s")
    description = _checked(form, "publish_form", "Check what changed")["description"]
    with _refusing("publish_form", form):  # no build yet: said, and the description kept
        version = versions.version_publish(function=function, description=description, user=_user(request))
    return f"Published version {version.number}."


def _restore(request: HttpRequest, function: Function) -> str:
    form = forms.RestoreForm(request.POST)
    number = _checked(form, "restore_form", "Choose the version to restore")["version"]
    draft = changes.version_restore_and_deploy(function=function, number=number, user=_user(request))
    return f"Version {number} restored into the draft (revision {draft.revision}); deploying."


def _alias(request: HttpRequest, function: Function) -> str:
    form = forms.AliasForm(request.POST, auto_id="alias-%s")
    data = _checked(form, "alias_form", "Check the alias: name and version are required")
    with _refusing("alias_form", form):
        alias = changes.alias_set_and_deploy(
            function=function, user=_user(request), name=data["name"], version=data["version"],
            canary_version=data.get("canary_version"), canary_weight=data.get("canary_weight") or 0,
        )  # fmt: skip
    return f"Alias {alias.name} saved; redeploying."


def _trigger(request: HttpRequest, function: Function) -> str:
    """Add an HTTP trigger, or (``original`` names one) change it, its name included."""
    original = request.POST.get("original", "")
    existing = function.triggers.filter(name=original).first() if original else None
    if original and existing is None:
        raise NotFound(f"No HTTP trigger {original!r}: it was deleted meanwhile.")
    key = f"edit:{original}" if existing else "trigger_form"
    form = forms.TriggerForm(request.POST, auto_id=_trigger_auto_id(original))
    data = _checked(form, key, "Check the trigger")
    with _refusing(key, form):
        trigger = changes.trigger_save_and_deploy(
            function=function, user=_user(request), name=data["name"], methods=data["methods"],
            path=data["path"], is_prefix=data["is_prefix"], trigger=existing, **_target(data),
        )  # fmt: skip
    return f"Trigger {trigger.name} {'changed' if existing else 'added'}; redeploying."


def _trigger_auto_id(original: str) -> str:
    """The new-trigger form's ids, or those of the row's edit form (one per trigger)."""
    return f"edit_http_{original}-%s" if original else "trigger-%s"


def _target(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "target_kind": data["target_kind"],
        "alias": data.get("alias") or None,
        "version": data.get("version"),
    }


def _time_trigger(request: HttpRequest, function: Function) -> str:
    original = request.POST.get("original", "")
    key = f"edit-time:{original}" if original else "time_trigger_form"
    form = forms.TimeTriggerForm(request.POST, auto_id=f"edit_time_{original}-%s" if original else "time-%s")
    data = _checked(form, key, "Check the time trigger")
    # The row's edit form names the trigger it changes; the new one changes one of the same name.
    existing = function.time_triggers.filter(name=original or data["name"]).first()
    if original and existing is None:
        raise NotFound(f"No time trigger {original!r}: it was deleted meanwhile.")
    with _refusing(key, form):
        trigger = changes.time_trigger_save_and_deploy(
            function=function, user=_user(request), name=data["name"], cron=data["cron"],
            method=data["method"], subpath=data["subpath"], trigger=existing, **_target(data),
        )  # fmt: skip
    fires = ", ".join(moment.strftime("%Y-%m-%d %H:%M:%S") for moment in events.upcoming(trigger.cron))
    return f"Time trigger {trigger.name} saved; redeploying. Next fires (UTC): {fires}."


def _queue_trigger(request: HttpRequest, function: Function) -> str:
    original = request.POST.get("original", "")
    key = f"edit-queue:{original}" if original else "queue_trigger_form"
    form = forms.QueueTriggerForm(
        request.POST, auto_id=f"edit_queue_{original}-%s" if original else "queue-%s"
    )
    data = _checked(form, key, "Check the queue trigger")
    existing = function.queue_triggers.filter(name=original or data["name"]).first()
    if original and existing is None:
        raise NotFound(f"No queue trigger {original!r}: it was deleted meanwhile.")
    with _refusing(key, form):
        trigger = changes.queue_trigger_save_and_deploy(
            function=function, user=_user(request), name=data["name"], mq_type=data["mq_type"],
            topic=data["topic"], resp_topic=data["resp_topic"], error_topic=data["error_topic"],
            max_retries=data["max_retries"], content_type=data["content_type"], metadata=data["metadata"],
            connection=data["connection"] or None, trigger=existing, **_target(data),
        )  # fmt: skip
    return f"Queue trigger {trigger.name} saved; redeploying."


def _delete_event_trigger(request: HttpRequest, function: Function) -> str:
    name, kind = request.POST.get("name", ""), request.POST.get("kind", "")
    trigger: TimeTrigger | QueueTrigger | None = None
    if kind == "time":
        trigger = function.time_triggers.filter(name=name).first()
    elif kind == "queue":
        trigger = function.queue_triggers.filter(name=name).first()
    if trigger is None:
        raise NotFound(f"No {kind or 'such'} trigger {name!r}.")
    changes.event_trigger_delete_and_deploy(trigger=trigger, user=_user(request))
    return f"Trigger {name} deleted; redeploying."


def _selected(request: HttpRequest) -> list[str] | None:
    """One dead letter (a row's button) or, without an id, all of them."""
    chosen = request.POST.get("id", "")
    return [chosen] if chosen else None


def _redrive(request: HttpRequest, function: Function) -> str:
    request_ids = deadletters.dead_letters_redrive(function=function, ids=_selected(request))
    return f"Queued {len(request_ids)} dead letter{'s' if len(request_ids) != 1 else ''} again."


def _purge(request: HttpRequest, function: Function) -> str:
    purged = deadletters.dead_letters_purge(function=function, ids=_selected(request))
    return f"Purged {purged} dead letter{'s' if purged != 1 else ''}."


def _delete_alias(request: HttpRequest, function: Function) -> str:
    alias = get_object_or_404(function.aliases.all(), name=request.POST.get("name", ""))
    changes.alias_delete_and_deploy(alias=alias, user=_user(request))
    return f"Alias {alias.name} deleted; redeploying."


def _delete_trigger(request: HttpRequest, function: Function) -> str:
    trigger = get_object_or_404(function.triggers.all(), name=request.POST.get("name", ""))
    changes.trigger_delete_and_deploy(trigger=trigger, user=_user(request))
    return f"Trigger {trigger.name} deleted; redeploying."


ACTIONS: dict[str, Callable[[HttpRequest, Function], str]] = {
    **code_panel.CODE_ACTIONS, "upload": _upload, "settings": _settings, "deploy": _deploy,
    "publish": _publish, "restore": _restore, "alias": _alias, "trigger": _trigger,
    "time_trigger": _time_trigger,
    "queue_trigger": _queue_trigger, "delete_event_trigger": _delete_event_trigger, "redrive": _redrive,
    "purge": _purge, "delete_alias": _delete_alias, "delete_trigger": _delete_trigger,
}  # fmt: skip


def _dead_letters(function: Function) -> dict[str, Any]:
    """The newest dead letters; none shown (with a note) when the data plane cannot be read now."""
    try:
        return deadletters.dead_letter_page(function=function, limit=20)
    except BackendError as exc:
        return {"items": [], "next": None, "total": 0, "error": exc.message}


def _event_triggers(function: Function) -> dict[str, Any]:
    """The function's time and queue triggers, each with the data plane's status (``status``) and,
    for a schedule, its next fire times."""
    time_status = events.event_statuses("TimeTrigger")
    queue_status = events.event_statuses("MessageQueueTrigger")
    time_triggers = list(function.time_triggers.select_related("alias", "version"))
    for trigger in time_triggers:
        trigger.status = time_status.get(trigger.name)  # type: ignore[attr-defined]
        trigger.next_fires = events.upcoming(trigger.cron, 3)  # type: ignore[attr-defined]
    queue_triggers = list(function.queue_triggers.select_related("alias", "version"))
    for queue_trigger in queue_triggers:
        queue_trigger.status = queue_status.get(queue_trigger.name)  # type: ignore[attr-defined]
    return {"time_triggers": time_triggers, "queue_triggers": queue_triggers}


Overrides = dict[str, Any]  # a refused form, under its context key, shown again bound


def _target_forms(
    versions: list[Version], aliases: list[Alias], overrides: Overrides, *keys: str
) -> dict[str, Any]:
    """The forms of ``keys`` that point at a version or an alias, with pickers of the function's
    own (``versions`` newest first, as the tabs list them); a refused one as it was sent."""
    numbers = [version.number for version in versions]
    names = sorted(alias.name for alias in aliases)
    built: dict[str, django_forms.Form] = {key: overrides.get(key) or _NEW_FORMS[key]() for key in keys}
    for form in built.values():
        forms.offer_targets(form, numbers=numbers, aliases=names)
    return {**built, "alias_names": names}


_NEW_FORMS: dict[str, Callable[[], django_forms.Form]] = {
    # Each its own ids: several forms of a tab have a "version" field.
    "alias_form": lambda: forms.AliasForm(auto_id="alias-%s"),
    "trigger_form": lambda: forms.TriggerForm(auto_id="trigger-%s"),
    "time_trigger_form": lambda: forms.TimeTriggerForm(auto_id="time-%s"),
    "queue_trigger_form": lambda: forms.QueueTriggerForm(auto_id="queue-%s"),
}


def _first_path(triggers: list[Trigger]) -> dict[str, str]:
    """The test panel's path to start from: the first HTTP trigger's, ``triggers`` in the order
    of their paths (the call needs a route)."""
    trigger = next((t for t in triggers if not t.is_prefix), None)
    return {"path": trigger.path} if trigger is not None else {}


def _code_context(
    request: HttpRequest, function: Function, overrides: Overrides, triggers: list[Trigger]
) -> dict[str, Any]:
    can_edit = request.tenant_role != "viewer"  # type: ignore[attr-defined]
    return {
        **code_panel.code_context(function, selected=request.GET.get("file"), can_edit=can_edit),
        **code_panel.refused_context(request, overrides.get("refused")),
        "upload_form": overrides.get("upload_form") or forms.UploadForm(),
        "deployments": list(selectors.deployment_list(function=function)[:10]),  # the newest first
        "builds": selectors.build_list(function=function)[:5],
    }


def _test_context(
    request: HttpRequest, function: Function, overrides: Overrides, triggers: list[Trigger]
) -> dict[str, Any]:
    return {
        "invoke_form": forms.InvokeForm(initial=_first_path(triggers)),
        "invocations": [_with_headers_json(i) for i in selectors.invocation_list(function=function)[:10]],
        **_saved_events(function),
    }


def _versions_context(
    request: HttpRequest, function: Function, overrides: Overrides, triggers: list[Trigger]
) -> dict[str, Any]:
    versions = list(selectors.version_rows(function=function))
    aliases = list(selectors.alias_list(function=function))
    return {
        "versions": versions,
        "aliases": aliases,
        "publish_form": overrides.get("publish_form") or forms.PublishForm(auto_id="publish-%s"),
        **_target_forms(versions, aliases, overrides, "alias_form"),
    }


def _triggers_context(
    request: HttpRequest, function: Function, overrides: Overrides, triggers: list[Trigger]
) -> dict[str, Any]:
    versions = list(selectors.version_rows(function=function))
    aliases = list(selectors.alias_list(function=function))
    context = {
        "triggers": triggers,
        **_target_forms(
            versions, aliases, overrides, "trigger_form", "time_trigger_form", "queue_trigger_form"
        ),
        **_event_triggers(function),
        "dead_letters": _dead_letters(function),
    }
    offer = {"numbers": [v.number for v in versions], "aliases": sorted(a.name for a in aliases)}
    _edit_forms(context, overrides, offer)
    return context


def _edit_forms(context: dict[str, Any], overrides: Overrides, offer: dict[str, Any]) -> None:
    """Each trigger row's edit form (``row.edit_form``), filled with what the trigger is now; a
    refused one as it was sent."""
    rows = (("", context["triggers"], forms.TriggerForm, _trigger_initial),
            ("time", context["time_triggers"], forms.TimeTriggerForm, _time_trigger_initial),
            ("queue", context["queue_triggers"], forms.QueueTriggerForm, _queue_trigger_initial))  # fmt: skip
    for kind, triggers, form_class, initial in rows:
        prefix = f"edit_{kind or 'http'}_"  # "_": a name has none, so no two rows share an id
        key_prefix = f"edit-{kind}:" if kind else "edit:"
        for row in triggers:
            form = overrides.get(f"{key_prefix}{row.name}") or form_class(
                initial=initial(row), auto_id=f"{prefix}{row.name}-%s"
            )
            forms.offer_targets(form, **offer)
            row.edit_form = form
            row.edit_open = f"{key_prefix}{row.name}" in overrides


def _target_initial(trigger: Trigger | TimeTrigger | QueueTrigger) -> dict[str, Any]:
    return {"target_kind": trigger.target_kind, "alias": trigger.alias.name if trigger.alias else "",
            "version": trigger.version.number if trigger.version else None}  # fmt: skip


def _trigger_initial(trigger: Trigger) -> dict[str, Any]:
    return {"name": trigger.name, "path": trigger.path, "methods": trigger.methods,
            "is_prefix": trigger.is_prefix, **_target_initial(trigger)}  # fmt: skip


def _time_trigger_initial(trigger: TimeTrigger) -> dict[str, Any]:
    return {"name": trigger.name, "cron": trigger.cron, "method": trigger.method, "subpath": trigger.subpath,
            **_target_initial(trigger)}  # fmt: skip


def _queue_trigger_initial(trigger: QueueTrigger) -> dict[str, Any]:
    """The connection is write-only: never shown, and an empty one keeps the trigger's own."""
    return {"name": trigger.name, "mq_type": trigger.mq_type, "topic": trigger.topic,
            "resp_topic": trigger.resp_topic, "error_topic": trigger.error_topic,
            "max_retries": trigger.max_retries, "content_type": trigger.content_type,
            "metadata": json.dumps(trigger.metadata), **_target_initial(trigger)}  # fmt: skip


def _configuration_context(
    request: HttpRequest, function: Function, overrides: Overrides, triggers: list[Trigger]
) -> dict[str, Any]:
    return {
        "settings_form": overrides.get("settings_form")
        or forms.SettingsForm(initial={"environment": function.environment.name, **config.current(function)})
    }


ContextBuilder = Callable[[HttpRequest, Function, Overrides, list[Trigger]], dict[str, Any]]


def _act(request: HttpRequest, function: Function) -> HttpResponse | tuple[Overrides, int]:
    """A form of a tab was sent: done (redirect back to the tab, the outcome in a message), or
    refused (the form to show again, and the status to answer)."""
    name = request.POST.get("action", "")
    if name == "delete_function":
        deployments.function_delete(function=function)
        messages.success(request, f"Function {function.name} deleted; its objects are being removed.")
        return redirect("function-list")
    action = ACTIONS.get(name)
    if action is None:
        messages.error(request, f"Nothing to do: {name or 'no action'} is not something this page does.")
        return {}, 400
    try:
        messages.success(request, action(request, function))
    except FormRefused as refused:
        refuse(request, refused.error, refused.form)
        return {refused.key: refused.form}, refused.error.status
    except DomainError as error:
        refuse(request, error)
        return {"refused": error}, error.status  # a panel may show it under the field sent
    selected = getattr(request, "selected_file", None)  # the code panel keeps its file open
    return redirect(f"{request.path}?{urlencode({'file': selected})}" if selected else request.path)


def _tab(key: str, template: str, build: ContextBuilder) -> Callable[..., HttpResponse]:
    """A workspace tab's view: GET shows it; POST does one of ACTIONS, then shows it again."""

    @tenant_page()
    def view(request: HttpRequest, name: str) -> HttpResponse:
        # The draft (its files, an uploaded zip's bytes) only for the Code tab and the actions.
        reads_draft = key == "code" or request.method == "POST"
        related = ("environment", "draft") if reads_draft else ("environment",)
        function = get_object_or_404(Function.objects.select_related(*related), name=name)
        overrides: Overrides = {}
        status = 200
        if request.method == "POST":
            outcome = _act(request, function)
            if isinstance(outcome, HttpResponse):
                return outcome
            overrides, status = outcome
        triggers = list(selectors.trigger_list(function=function))  # the header's URLs, and tabs'
        context = build(request, function, overrides, triggers)
        return workspace.render_tab(
            request, function, key, template, context, status=status, triggers=triggers
        )

    view.__name__ = view.__qualname__ = f"function_{key}_tab"
    return view


function_detail = _tab("code", "functions/tabs/code.html", _code_context)
function_test = _tab("test", "functions/tabs/test.html", _test_context)
function_versions = _tab("versions", "functions/tabs/versions.html", _versions_context)
function_triggers = _tab("triggers", "functions/tabs/triggers.html", _triggers_context)
function_configuration = _tab("configuration", "functions/tabs/configuration.html", _configuration_context)


@tenant_page()
def function_compare(request: HttpRequest, name: str) -> HttpResponse:
    """Two of the function's versions, or a version and the draft, side by side: per file the
    unified diff, and the settings that differ. By default the latest version and the draft."""
    function = get_object_or_404(Function.objects.select_related("environment", "draft"), name=name)
    numbers = list(selectors.version_list(function=function).values_list("number", flat=True))
    base = _ref(request.GET.get("base")) or (f"v{numbers[0]}" if numbers else selectors.DRAFT)
    head = _ref(request.GET.get("head")) or selectors.DRAFT
    form = forms.CompareForm(
        initial={"base": base, "head": head}, numbers=numbers, draft_revision=function.draft.revision
    )
    picked = {number for ref in (base, head) if (number := _number(ref)) is not None}
    context: dict[str, Any] = {"function": function, "form": form, "base": base, "head": head,
                               "restorable": sorted(picked & set(numbers), reverse=True)}  # fmt: skip
    try:
        comparison = selectors.version_compare(function=function, base=base, head=head)
    except DomainError as error:  # a bad reference, no such version, its code not kept
        context["error"] = error.message
        return render(request, "functions/compare.html", context, status=error.status)
    context.update(comparison=comparison, config_rows=_config_rows(comparison.config))
    return render(request, "functions/compare.html", context)


def _ref(value: str | None) -> str:
    """A picked side as the pickers name it: "draft", "v3" (also for "3"); anything else as
    given (the comparison refuses it, naming it)."""
    text = (value or "").strip()
    return f"v{text}" if text.isascii() and text.isdigit() else text


def _number(ref: str) -> int | None:
    """The version a picked side names; None for the draft or anything else."""
    try:
        return selectors.version_ref(ref, field="base")
    except DomainError:
        return None


_LABELS = {"name": "Name", "environment": "Environment", **{s.name: s.label for s in config.SETTINGS}}


def _config_rows(changed: dict[str, list[Any]]) -> list[dict[str, str]]:
    """The settings that differ as table rows: label, and each side's value as text."""
    return [
        {"name": name, "label": _LABELS.get(name, name), "before": _setting_text(old),
         "after": _setting_text(new)}
        for name, (old, new) in changed.items()
    ]  # fmt: skip


def _setting_text(value: Any) -> str:
    if value is None:
        return "not set"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@tenant_page()
def function_invoke(request: HttpRequest, name: str) -> HttpResponse:
    """The test panel's call (htmx): the result fragment."""
    function = get_object_or_404(Function, name=name)
    form = forms.InvokeForm(request.POST)
    if not form.is_valid():
        return _invocation_refused(request, in_words(form.errors, form_labels(form)), 400)
    try:
        invocation = invocations.invocation_create(
            function=function, user=_user(request), **form.cleaned_data
        )
    except DomainError as error:  # a path or header the service refuses: shown like the form's own
        return _invocation_refused(request, error_text(error, form_labels(form)), error.status)
    context = {
        "function": function,
        "invocation": invocation,
        "body": _readable_body(invocation),
        "history_row": _with_headers_json(invocation),
    }
    return render(request, "functions/_invocation.html", context)


def _with_headers_json(invocation: Invocation) -> Invocation:
    """A history row can send its request again: its headers as the form takes them (JSON)."""
    invocation.headers_json = json.dumps(invocation.request_headers)  # type: ignore[attr-defined]
    return invocation


@tenant_page()
def function_saved_events(request: HttpRequest, name: str) -> HttpResponse:
    """The test panel's saved events (htmx): save the panel's request under a name, or delete one;
    answers the list again, with what happened (or why not) in words."""
    function = get_object_or_404(Function, name=name)
    status, said = 200, ""
    if request.method == "POST":
        status, said = _saved_event_change(request, function)
    context = {"function": function, **_saved_events(function), "said": said, "refused": status >= 400}
    response = render(request, "functions/_saved_events.html", context, status=status)
    response["X-Partial-Answer"] = "1"
    return response


def _saved_event_change(request: HttpRequest, function: Function) -> tuple[int, str]:
    if request.POST.get("event_action") == "delete":
        name = request.POST.get("event_name", "")
        event = function.saved_events.filter(name=name).first()
        if event is None:  # deleted meanwhile, or none picked: said in place
            return (
                404,
                f"No saved event {name!r}: pick one of the list." if name else "Pick a saved event first.",
            )
        invocations.saved_event_delete(event=event)
        return 200, f"Event {event.name} deleted."
    form = forms.SavedEventForm(request.POST)
    if not form.is_valid():
        return 400, in_words(form.errors, form_labels(form))
    data = form.cleaned_data
    try:
        event = invocations.saved_event_save(
            function=function, name=data["event_name"], method=data["method"], path=data["path"],
            headers=data["headers"], body=data["body"], user=_user(request),
        )  # fmt: skip
    except DomainError as error:
        return error.status, error_text(error, form_labels(form))
    return 200, f"Saved as {event.name}: anyone in the tenant can send it again."


def _saved_events(function: Function) -> dict[str, Any]:
    shown = [
        {"name": e.name, "method": e.method, "path": e.path, "headers": json.dumps(e.headers), "body": e.body}
        for e in function.saved_events.all()
    ]
    return {"saved_events": shown}


def _invocation_refused(request: HttpRequest, problem: str, status: int) -> HttpResponse:
    """Why the call was not made, in place of the last result (htmx swaps it: X-Partial-Answer)."""
    response = render(request, "functions/_invocation.html", {"problem": problem}, status=status)
    response["X-Partial-Answer"] = "1"
    return response


def _readable_body(invocation: Invocation) -> str:
    """The answer's body as shown: JSON indented (when it says or looks like JSON), else as sent."""
    body = invocation.response_body
    kind = next((v for k, v in invocation.response_headers.items() if k.lower() == "content-type"), "")
    if "json" not in kind.lower() and not body.lstrip().startswith(("{", "[")):
        return body
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


# ---------------------------------------------------------------- environments


@tenant_page()
def environment_list(request: HttpRequest) -> HttpResponse:
    """The tenant's environments with their version, image, pool and users; a new one."""
    form = forms.EnvironmentCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            environment = functions.environment_create(**form.cleaned_data)
        except DomainError as error:
            refuse(request, error, form)
        else:
            messages.success(request, f"Environment {environment.name} created.")
            return redirect("environment-list")
    usage = selectors.environment_usage()
    rows = [{"environment": e, "functions": usage.get(e.name, [])} for e in selectors.environment_list()]
    return render(request, "functions/environments.html", {"rows": rows, "form": form})


@tenant_page()
def environment_edit(request: HttpRequest, name: str) -> HttpResponse:
    """One environment: change it (redeploys its functions) or delete it (refused while used)."""
    environment = get_object_or_404(Environment, name=name)
    if request.method == "POST" and request.POST.get("action") == "delete":
        return _environment_delete(request, environment)
    form = forms.EnvironmentForm(request.POST or None, initial=_environment_initial(environment))
    if request.method == "POST" and form.is_valid():
        try:
            changes.environment_update_and_deploy(
                environment=environment, user=_user(request), **form.cleaned_data
            )
        except DomainError as error:
            refuse(request, error, form)
            environment.refresh_from_db()  # the refused change was rolled back
        else:
            messages.success(request, f"Environment {name} saved; any function deployed with it redeploys.")
            return redirect("environment-edit", name=name)
    users = selectors.environment_usage().get(name, [])
    context = {"environment": environment, "form": form, "users": users}
    return render(request, "functions/environments_edit.html", context)


_SAVE = {"secret": changes.secret_save_and_deploy, "configmap": changes.configmap_save_and_deploy}


@tenant_page()
def configuration_page(request: HttpRequest) -> HttpResponse:
    """The tenant's Secrets (names and keys: a value is never shown) and ConfigMaps, which
    functions they are used by; save one (replaces its values; redeploys its users) or delete one
    (refused while used)."""
    forms_by_kind = {kind: forms.TenantObjectForm(prefix=kind) for kind in _SAVE}
    if request.method == "POST":
        kind, action = request.POST.get("kind", ""), request.POST.get("action", "")
        if kind in _SAVE and action == "delete":
            return _tenant_object_delete(request, kind, request.POST.get("name", ""))
        if kind in _SAVE:
            form = forms_by_kind[kind] = forms.TenantObjectForm(request.POST, prefix=kind)
            if form.is_valid() and _tenant_object_save(request, kind, form):
                return redirect("tenant-configuration")
    users = selectors.object_usages()  # configuration.usages' answer, in a fixed number of queries
    context = {
        "secrets": [(s, users["secrets"].get(s.name, [])) for s in selectors.secret_list()],
        "configmaps": [(c, users["configmaps"].get(c.name, [])) for c in selectors.configmap_list()],
        "secret_form": forms_by_kind["secret"], "configmap_form": forms_by_kind["configmap"],
    }  # fmt: skip
    return render(request, "functions/configuration.html", context)


def _tenant_object_save(request: HttpRequest, kind: str, form: forms.TenantObjectForm) -> bool:
    values = form.cleaned_data
    try:
        _SAVE[kind](name=values["name"], data=values["values"], user=_user(request))
    except DomainError as error:
        refuse(request, error, form)
        return False
    what = "Secret" if kind == "secret" else "ConfigMap"
    messages.success(request, f"{what} {values['name']} saved; the functions that use it redeploy.")
    return True


def _tenant_object_delete(request: HttpRequest, kind: str, name: str) -> HttpResponse:
    model: type[Secret] | type[ConfigMap] = Secret if kind == "secret" else ConfigMap
    try:
        configuration.delete(get_object_or_404(model, name=name))
    except DomainError as error:  # in use: the message names the functions
        refuse(request, error)
    else:
        messages.success(request, f"{model.__name__} {name} deleted.")
    return redirect("tenant-configuration")


def _environment_initial(environment: Environment) -> dict[str, Any]:
    return {field: getattr(environment, field) for field in functions.ENVIRONMENT_FIELDS}


def _environment_delete(request: HttpRequest, environment: Environment) -> HttpResponse:
    try:
        functions.environment_delete(environment=environment)
    except DomainError as error:  # in use: the message names the functions
        refuse(request, error)
        return redirect("environment-edit", name=environment.name)
    messages.success(request, f"Environment {environment.name} deleted.")
    return redirect("environment-list")


# ---------------------------------------------------------------- the tenant's quota


@tenant_page()
def quota_page(request: HttpRequest) -> HttpResponse:
    rows = [{**row, **_shown(row)} for row in quotas.usage()]
    return render(request, "tenants/quota.html", {"rows": rows})


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    def show(value: int) -> str:
        if row["unit"] == "bytes":
            return f"{value / 2**20:.0f} MiB" if value >= 2**20 else f"{value / 1024:.1f} KiB"
        return f"{value / 1000:g} cores" if row["unit"] == "millicores" else str(value)

    percent = round(100 * row["used"] / row["limit"]) if row["limit"] else (100 if row["used"] else 0)
    return {"used_shown": show(row["used"]), "limit_shown": show(row["limit"]), "percent": min(percent, 100)}
