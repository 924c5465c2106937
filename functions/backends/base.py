"""The data-plane interface: the same Fission objects go to the local runtime or a cluster.

Errors are our own types: callers retry ``TransientError`` with backoff and report
``PermanentError`` (a refused object, a missing permission) to the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tenants.manifests import TenantQuota


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


class Conflict(TransientError):
    """A concurrent change or a stale write (409): reading and writing again resolves it."""


class Forbidden(PermanentError):
    """The portal's own credentials may not do this (401/403): an operator must grant it."""


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

    def provision_tenant(self, slug: str, quota: TenantQuota, *, internet_egress: bool) -> None:
        """Create or update the tenant's namespace, quota and fences. Idempotent."""

    def delete_namespace(self, namespace: str) -> None:
        """Remove everything of a tenant from the data plane. Idempotent."""

    def wait_ready(self, namespace: str, functions: list[str], timeout_s: float) -> None:
        """Return once the functions can serve; TransientError when not yet after timeout."""

    def invoke(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> InvokeResult:
        """Call through the router like real traffic."""

    def logs(
        self,
        namespace: str,
        *,
        request_id: str | None = None,
        function: str | None = None,
        since: float | None = None,
        limit: int = 200,
    ) -> list[LogRecord]:
        """Recent log records of the namespace, of one request or one portal function if given,
        written at or after ``since`` (epoch seconds)."""
