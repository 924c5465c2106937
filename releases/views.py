"""The function page's rollouts panel and its captured-requests-and-replay panel: loaded (and
reloaded on each ``rollout.changed`` / ``replay.changed`` event) by htmx, so the page never waits
for them; their forms answer with the panel itself."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from core.errors import DomainError
from core.feedback import error_text
from dataplane.retry import TRANSIENT
from functions.models import Alias, Function, Version
from functions.services import captures as capture_services
from releases import selectors
from releases.forms import CaptureForm, ReplayForm, RolloutForm
from releases.models import Rollout
from releases.services import replays
from releases.services import rollouts as services
from tenants.pages import tenant_page
from tenants.roles import Role, at_least

RECENT = 5
STEERING = {
    "pause": services.rollout_pause,
    "resume": services.rollout_resume,
    "promote": services.rollout_promote,
    "abort": services.rollout_abort,
}


def _form(function: Function, data: Any = None) -> RolloutForm:
    aliases = list(Alias.objects.filter(function=function).values_list("name", flat=True))
    return RolloutForm(data, aliases=aliases, versions=_versions(function))


def _panel(request: HttpRequest, function: Function, *, form: RolloutForm | None = None, error: str = "",
           status: int = 200) -> HttpResponse:  # fmt: skip
    rollouts = list(selectors.rollout_list(function=function)[:50])
    active = [r for r in rollouts if r.active]
    context = {
        "function": function, "active": active, "recent": [r for r in rollouts if not r.active][:RECENT],
        "form": form or _form(function), "error": error,
    }  # fmt: skip
    response = render(request, "releases/_rollouts.html", context, status=status)
    response["X-Partial-Answer"] = "1"  # static/src/main.js: swapped in whatever its status
    return response


def _answer(request: HttpRequest, function: Function, **panel: Any) -> HttpResponse:
    """The panel for htmx; for a plain form post, back to the function's page."""
    if request.headers.get("HX-Request") or panel.get("status", 200) >= 400:
        return _panel(request, function, **panel)
    return redirect("function-versions", name=function.name)  # the rollouts are on that tab


def _user(request: HttpRequest) -> str:
    return str(getattr(request.user, "username", ""))


@tenant_page()
def rollout_panel(request: HttpRequest, name: str) -> HttpResponse:
    function = get_object_or_404(Function, name=name)
    if request.method != "POST":
        return _panel(request, function)
    form = _form(function, request.POST)
    if not form.is_valid():
        return _answer(request, function, form=form, status=400)
    try:
        services.rollout_start(function=function, user=_user(request), **form.service_arguments())
    except DomainError as error:
        return _answer(request, function, form=form, error=error_text(error), status=error.status)
    return _answer(request, function)


@tenant_page()
def rollout_steer(request: HttpRequest, name: str, pk: int, verb: str) -> HttpResponse:
    function = get_object_or_404(Function, name=name)
    rollout = get_object_or_404(Rollout, pk=pk, function=function)
    service = STEERING.get(verb)
    if request.method != "POST" or service is None:
        return render(request, "404.html", status=404)
    try:
        service(rollout=rollout, user=_user(request))
    except DomainError as error:
        return _answer(request, function, error=error_text(error), status=error.status)
    return _answer(request, function)


def _capture_panel(request: HttpRequest, function: Function, *, error: str = "", status: int = 200,
                   form: CaptureForm | None = None) -> HttpResponse:  # fmt: skip
    settings = capture_services.capture_settings(function)
    initial = {**settings, "codes": ", ".join(map(str, settings["codes"]))}
    context: dict[str, Any] = {
        "function": function, "settings": settings, "form": form or CaptureForm(initial=initial),
        "error": error, "replay_form": ReplayForm(versions=_versions(function)), "captures": [],
        "replays": [], "unavailable": "",
    }  # fmt: skip
    if at_least(Role(request.tenant_role), Role.DEVELOPER):  # type: ignore[attr-defined]
        try:
            context["captures"] = [selectors.capture_shown(c) for c in replays.captures(function)]
        except DomainError as exc:  # the data plane keeps none (Kubernetes)
            context["unavailable"] = exc.message
        except TRANSIENT as exc:  # it cannot be read now
            context["unavailable"] = f"Captured requests cannot be read now: {exc}"
        context["replays"] = list(selectors.replay_list(function=function)[:RECENT])
    response = render(request, "releases/_captures.html", context, status=status)
    response["X-Partial-Answer"] = "1"
    return response


def _versions(function: Function) -> list[int]:
    return list(Version.objects.filter(function=function).values_list("number", flat=True))


def _capture_change(request: HttpRequest, function: Function) -> HttpResponse:
    action, user = request.POST.get("action", ""), _user(request)
    if action == "settings":
        form = CaptureForm(request.POST)
        if not form.is_valid():
            return _capture_panel(request, function, form=form, status=400)
        capture_services.capture_update_and_deploy(function=function, user=user, **form.cleaned_data)
    elif action == "replay":
        replay_form = ReplayForm(request.POST, versions=_versions(function))
        if not replay_form.is_valid():
            return _capture_panel(request, function, error="Pick a version to replay against.", status=400)
        replays.replay_create(function=function, version=replay_form.cleaned_data["version"], user=user)
    elif action == "purge":
        replays.captures_delete(function=function)
    else:
        return render(request, "404.html", status=404)
    return _capture_panel(request, function)


@tenant_page()
def capture_panel(request: HttpRequest, name: str) -> HttpResponse:
    """The function page's "Captured requests and replay" panel; its forms answer with it."""
    function = get_object_or_404(Function, name=name)
    if request.method != "POST":
        return _capture_panel(request, function)
    try:
        return _capture_change(request, function)
    except DomainError as error:
        return _capture_panel(request, function, error=error_text(error), status=error.status)
