"""The data-plane interface: the same Fission objects go to the local runtime or a cluster.

Errors are our own types: callers retry ``TransientError`` with backoff and report
``PermanentError`` (a refused object, a missing permission) to the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class BackendError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(BackendError):
    """Timeouts, 429, 5xx, connection refused: worth retrying."""


class PermanentError(BackendError):
    """The data plane refused the request (invalid object, forbidden): retrying won't help."""


class NotFound(BackendError):
    pass


@dataclass(frozen=True)
class InvokeResult:
    status: int
    headers: dict[str, str]
    body: bytes
    duration_ms: float
    request_id: str


@dataclass(frozen=True)
class LogRecord:
    time: float
    namespace: str
    function: str
    request_id: str
    stream: str
    message: str


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def apply(self, objects: list[dict[str, Any]]) -> None:
        """Create or replace each object, in order. Idempotent."""

    def delete(self, ref: ObjectRef) -> None:
        """Delete one object; a missing object is not an error."""

    def list_objects(self, namespace: str, kind: str, labels: dict[str, str]) -> list[ObjectRef]:
        """Objects of ``kind`` in ``namespace`` carrying all of ``labels``."""

    def delete_namespace(self, namespace: str) -> None:
        """Remove everything of a tenant from the data plane. Idempotent."""

    def wait_ready(self, namespace: str, functions: list[str], timeout_s: float) -> None:
        """Return once the functions can serve; TransientError when not yet after timeout."""

    def invoke(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> InvokeResult:
        """Call through the router like real traffic."""

    def logs(self, namespace: str, *, request_id: str | None = None, limit: int = 200) -> list[LogRecord]:
        """Recent log records of the namespace, optionally of one request."""
