"""Accessibility and console checks for browser tests: axe-core (npm, a dev dependency that
`make setup` installs) run inside the page, and the page's console errors collected.

axe is evaluated through the DevTools protocol (``page.evaluate``), not a ``<script>`` tag, so a
Content-Security-Policy that forbids inline scripts does not stop the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
# What the portal must have none of; "minor" and "moderate" findings are reported, not failed.
FAILING_IMPACTS = ("serious", "critical")


def axe_violations(page: Page, impacts: tuple[str, ...] = FAILING_IMPACTS) -> list[dict[str, Any]]:
    """The axe-core violations of ``impacts`` on the page as it is now (WCAG 2.x A and AA rules
    and axe's best practices), each as {id, impact, help, targets}."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [node["target"] for node in v["nodes"]][:5]}
        for v in found
        if v["impact"] in impacts
    ]  # fmt: skip


class ConsoleErrors:
    """The console errors and uncaught exceptions of a page, from the moment it is attached."""

    def __init__(self, page: Page) -> None:
        self.found: list[tuple[str, str]] = []  # (text, the URL it is about)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.found.append((f"uncaught: {error}", "")))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.found.append((message.text, message.location.get("url", "")))

    @property
    def errors(self) -> list[str]:
        return [text for text, _ in self.found]

    def errors_besides(self, *, document: str) -> list[str]:
        """The errors, less Chromium's "Failed to load resource" for ``document`` itself (an
        error page's own status); a failed fetch or script of that page still counts."""
        own = "Failed to load resource"
        return [text for text, url in self.found if not (url == document and text.startswith(own))]
