"""Accessibility, console and Content-Security-Policy checks for browser tests: axe-core (npm, a
dev dependency that `make setup` installs) run inside the page, the page's console errors
collected, and every browser context made to fail on closing if a page broke the policy.

axe is evaluated through the DevTools protocol (``page.evaluate``), not a ``<script>`` tag, so a
Content-Security-Policy that forbids inline scripts does not stop the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

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


# Chromium reports a refused script, style, image, fetch... as a console error that names the
# policy; the event is the standard report, also for what the console does not name (a worker).
CSP_CONSOLE = "Content Security Policy"
CSP_EVENT = "securitypolicyviolation:"
CSP_LISTENER = f"""
document.addEventListener("securitypolicyviolation", (event) => {{
  const on = event.target instanceof Element ? event.target.outerHTML.slice(0, 160) : "the document";
  console.error("{CSP_EVENT} " + event.effectiveDirective + " refused " + (event.blockedURI || "inline") +
    " on " + on + " from " + event.sourceFile + ":" + event.lineNumber);
}});
"""


class CspViolations(AssertionError):
    """A page of the context broke the Content-Security-Policy."""


def refuse_csp_violations(context: BrowserContext) -> BrowserContext:
    """Make ``context.close()`` raise CspViolations, after closing, if any page of the context
    broke the Content-Security-Policy while it was open: pytest-playwright's fixtures and the
    tests close every context they open, so each test fails with the violations listed."""
    found: list[str] = []
    context.add_init_script(CSP_LISTENER)  # runs before the page's scripts, outside the policy

    def collect(message: ConsoleMessage) -> None:
        if CSP_CONSOLE in message.text or message.text.startswith(CSP_EVENT):
            found.append(f"{message.page.url if message.page else '?'}: {message.text}")

    context.on("console", collect)
    close = context.close

    def close_then_check(*args: Any, **kwargs: Any) -> None:
        close(*args, **kwargs)
        if found:
            raise CspViolations("Content-Security-Policy violations:\n" + "\n".join(found))

    setattr(context, "close", close_then_check)  # noqa: B010 (a method replaced, as pytest-playwright does)
    return context


def refuse_csp_violations_in(browser: Browser) -> Browser:
    """Every context ``browser`` makes from now on refuses violations (refuse_csp_violations):
    the contexts of pytest-playwright's ``page`` fixture and those tests make themselves."""
    new_context = browser.new_context

    def checked_context(*args: Any, **kwargs: Any) -> BrowserContext:
        return refuse_csp_violations(new_context(*args, **kwargs))

    def checked_page(*args: Any, **kwargs: Any) -> Page:
        context = checked_context(*args, **kwargs)
        page = context.new_page()
        close_page = page.close

        def close_both(*args: Any, **kwargs: Any) -> None:
            close_page(*args, **kwargs)
            context.close()  # as Browser.new_page's own page does: it owns its context

        setattr(page, "close", close_both)  # noqa: B010
        return page

    setattr(browser, "new_context", checked_context)  # noqa: B010
    setattr(browser, "new_page", checked_page)  # noqa: B010
    return browser
