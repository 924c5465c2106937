"""The portal's REST API over HTTP (httpx) with a bearer token: the client's only way in.

Every error answer becomes a CliError carrying the API's ``message`` and ``detail`` (the
portal's one error shape, ``{"error": {"code", "message", "detail"}}``) and the exit code of
its status; connection errors and timeouts exit 6.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from cli import __version__
from cli.config import Profile
from cli.errors import FAILED, UNAVAILABLE, CliError, code_for_status, detail_lines

TIMEOUT_S = 60.0  # a test call waits for the function (its own timeout defaults to 60 s)


class Api:
    """Calls under ``<url>/t/<tenant>/api/v1/``; paths are relative to it (``functions/``)."""

    def __init__(self, profile: Profile, timeout: float = TIMEOUT_S) -> None:
        self.profile = profile
        self.http = httpx.Client(
            base_url=f"{profile.url}/t/{profile.tenant}/api/v1/",
            headers={"Authorization": f"Bearer {profile.token}", "User-Agent": f"faas-cli/{__version__}"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to a call; CliError for an error status, a redirect, or no answer."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise CliError(f"{self.profile.url} did not answer in time ({error}).", UNAVAILABLE) from error
        except httpx.TransportError as error:
            raise CliError(f"Cannot reach {self.profile.url}: {error}.", UNAVAILABLE) from error
        if response.is_redirect:
            # The API never redirects; a redirect means the URL is not a portal's (or not its root).
            where = response.headers.get("location", "")
            raise CliError(f"{response.request.url} redirects to {where}: is the portal URL right?", FAILED)
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON (None for 204)."""
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.json("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.json("POST", path, json=body)

    def items(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every object of a list, following the pages (``?limit=&offset=``; ``next`` is a URL)."""
        page = self.get(path, **params)
        while True:
            if not isinstance(page, dict) or "results" not in page:
                yield from page or []  # an unpaginated list
                return
            yield from page["results"]
            if not page.get("next"):
                return
            page = self.json("GET", page["next"])

    def close(self) -> None:
        self.http.close()


def api_error(response: httpx.Response) -> CliError:
    """The CliError for an error answer, in the API's words when it used its error shape."""
    code = code_for_status(response.status_code)
    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return CliError(f"{status} from {response.request.url}.", code)
    message = str(error.get("message") or status)
    return CliError(f"{message} ({status})", code, detail_lines(error.get("detail")))
