"""Errors of the runtime, each with the HTTP status the control API and router answer."""

from __future__ import annotations


class RuntimeProblem(Exception):
    status = 500
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidObject(RuntimeProblem):
    """An object fails validation; ``field`` is its JSON path, e.g. ``spec.methods[0]``."""

    status = 422
    code = "invalid"


class NotFound(RuntimeProblem):
    status = 404
    code = "not_found"


class Conflict(RuntimeProblem):
    status = 409
    code = "conflict"


class PackageUnavailable(RuntimeProblem):
    """The archive cannot be fetched, or its checksum does not match."""

    status = 422
    code = "package_unavailable"
