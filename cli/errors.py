"""Exit codes a script can use, and the one exception that carries one to ``main``.

Every failure the client knows about becomes a ``CliError``: ``main`` prints its message to stderr
and exits with its code, so a user never sees a Python traceback.
"""

from __future__ import annotations

from typing import Any

OK = 0
FAILED = 1  # the operation ran and failed: a deployment failed, a diff has changes, a call answered >= 400
USAGE = 2  # bad options or arguments (Click's own code for usage errors)
AUTH = 3  # 401/403: no token, a bad or expired token, or a role too low
NOT_FOUND = 4  # 404: no such function, object or tenant (a tenant you are not a member of looks the same)
INVALID = 5  # 400/409/413/422 and other 4xx: the portal refused the input; nothing changed
UNAVAILABLE = 6  # 5xx, 429, connection errors, timeouts: try again later

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the operation failed (a deployment failed, `spec diff` found changes, a test "
    "call answered >= 400); 2 usage error; 3 authentication or permission (401/403); 4 not found (404); "
    "5 conflict or validation (400/409/422); 6 server or network unavailable (5xx, connection errors)."
)


class CliError(Exception):
    """A failure to report in words (``message``, then ``lines``) and exit with ``code``."""

    def __init__(self, message: str, code: int = FAILED, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.lines = lines or []


def code_for_status(status: int) -> int:
    """The exit code for an HTTP error status (see EXIT_CODES_HELP)."""
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status == 429 or status >= 500:
        return UNAVAILABLE
    return INVALID


def detail_lines(detail: Any, prefix: str = "") -> list[str]:
    """The API error's ``detail`` in words, one line per message, each naming where it applies:
    ``{"specs/f.yaml": {"spec.name": ["Required."]}}`` gives ``specs/f.yaml: spec.name: Required.``."""
    if isinstance(detail, dict):
        return [line for key, value in detail.items() for line in detail_lines(value, f"{prefix}{key}: ")]
    if isinstance(detail, list):
        return [line for value in detail for line in detail_lines(value, prefix)]
    if detail is None or detail == "":
        return []
    return [f"{prefix}{detail}"]
