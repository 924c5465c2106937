"""The function workspace: one page per function in tabs (Code, Test, Monitor, Logs, Versions
and aliases, Triggers, Configuration), each its own URL, under a header that always shows the
function's state and URLs.

A tab is rendered inside ``functions/workspace.html`` (the whole page) or, when htmx asks for
the tab panel only (``HX-Target: tab-panel``: a tab link or a form inside the panel),
``functions/workspace_partial.html``: the panel, and the header and tab bar again for htmx to
swap out of band. Either way the same template and context, so a page without JavaScript works
the same. A refused form is shown again, bound, with each field's problem under its field and
the refusal's status (400, 409 …); to htmx with 200 and that status in ``X-Refused-Status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers

from core.errors import DomainError
from functions import selectors
from functions.models import Deployment, DeploymentState, Function, Trigger
from tenants.selectors import current_tenant


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url_name: str


TABS = (
    Tab("code", "Code", "function-detail"),
    Tab("test", "Test", "function-test"),
    Tab("monitor", "Monitor", "function-metrics"),
    Tab("logs", "Logs", "function-logs"),
    Tab("versions", "Versions and aliases", "function-versions"),
    Tab("triggers", "Triggers", "function-triggers"),
    Tab("configuration", "Configuration", "function-configuration"),
)
TAB_BY_KEY = {tab.key: tab for tab in TABS}

# The header's words for a deployment under way.
_UNDER_WAY = {
    DeploymentState.QUEUED: "deploying (queued)",
    DeploymentState.BUILDING: "deploying (building)",
    DeploymentState.APPLYING: "deploying (applying)",
    DeploymentState.WAITING: "deploying (waiting for it to answer)",
}


class FormRefused(Exception):
    """A form of a tab was refused: shown again under ``key`` with the refusal's problems under
    its fields (core/feedback.py: ``refuse``)."""

    def __init__(self, key: str, form: forms.BaseForm, error: DomainError) -> None:
        super().__init__(error.message)
        self.key, self.form, self.error = key, form, error


def function_state(function: Function, deployments: list[Deployment] | None = None) -> dict[str, Any]:
    """What the header says of the function: its newest deployment's state in words (live,
    deploying, failed with the reason, or never deployed), and whether an older deployment
    still serves when the newest failed. Two queries at most; none for the newest when the tab
    has already read ``deployments`` (the newest first)."""
    newest: Deployment | None = (
        function.deployments.order_by("-created_at").first()
        if deployments is None
        else next(iter(deployments), None)
    )
    if newest is None:
        return {"state": "not-deployed", "state_text": "not deployed yet", "state_reason": ""}
    if newest.state == DeploymentState.LIVE:
        return {"state": "live", "state_text": "live", "state_reason": "", "deployment": newest}
    if newest.state == DeploymentState.FAILED:
        serving = function.deployments.filter(state=DeploymentState.LIVE).exists()
        note = " The previous deployment still answers." if serving else ""
        return {"state": "failed", "state_text": "failed", "state_reason": f"{newest.reason}{note}".strip(),
                "deployment": newest}  # fmt: skip
    text = _UNDER_WAY.get(DeploymentState(newest.state), "deploying")
    return {"state": "deploying", "state_text": text, "state_reason": "", "deployment": newest}


def tab_links(function: Function, current: str) -> list[dict[str, Any]]:
    return [
        {"key": tab.key, "label": tab.label, "current": tab.key == current,
         "url": reverse(tab.url_name, kwargs={"name": function.name})}
        for tab in TABS
    ]  # fmt: skip


def header_context(
    function: Function, tab: str, triggers: list[Trigger] | None = None,
    deployments: list[Deployment] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The header every tab shares: state (from ``deployments``, the newest first, when the tab
    read them), URLs (of ``triggers``, else read here), tabs."""
    if triggers is None:
        triggers = list(selectors.trigger_list(function=function))
    tenant = current_tenant()
    return {
        "function": function,
        "tab": TAB_BY_KEY[tab],
        "tabs": tab_links(function, tab),
        "urls": selectors.function_urls(triggers=triggers, tenant_slug=tenant.slug),
        **function_state(function, deployments),
    }


def panel_only(request: HttpRequest) -> bool:
    """htmx asks for the tab panel alone (a tab link or a form in the panel), not a history
    restore (which needs the whole page)."""
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and htmx.target == "tab-panel" and not htmx.history_restore_request


def render_tab(
    request: HttpRequest, function: Function, tab: str, template: str, context: dict[str, Any],
    status: int = 200, triggers: list[Trigger] | None = None,
) -> HttpResponse:  # fmt: skip
    """``template`` of tab ``tab`` with ``context``, under the header (whole page or, to htmx,
    the panel alone). A tab that lists the function's deployments (``deployments``, the newest
    first) spares the header its own query."""
    partial = panel_only(request)
    frame = "functions/workspace_partial.html" if partial else "functions/workspace.html"
    deployments = context.get("deployments")
    context = {**header_context(function, tab, triggers, deployments), **context, "frame": frame}
    # To htmx, a refused form shown again is a panel like any other (a 4xx would be logged as a
    # failed load in the browser's console): 200, with the refusal's status in a header.
    response = render(request, template, context, status=200 if partial else status)
    if partial:
        response["X-Workspace-Panel"] = "1"  # static/src/main.js: anything else is a whole page
        if status >= 400:
            response["X-Refused-Status"] = str(status)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])  # two answers to one URL
    return response
