"""Replay: a function's captured failed requests, sent straight to one version (not through an
alias), once each, with each answer compared to the original.

What is captured, and how it is redacted before it is stored, is the data plane's
(runtime/captures.py, dataplane.manifests.CapturePolicy): a header or field that held a secret
was stored as ``[redacted]`` and is left out of the replayed request (the result names it).

**Once each**: before a request is sent, its result is saved as ``sending`` in its own
transaction; the answer then replaces it. A run resumed after its worker died (a redelivered task,
or the beat sweep) marks a result left ``sending`` as ``lost`` instead of sending it again. So no
captured request reaches the function twice, and none is dropped without saying so.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from audit import services as audit
from core import notifier
from core.errors import Conflict, DomainError, NotFound
from dataplane import manifests
from dataplane.backends import get_backend
from dataplane.backends.base import (
    BackendError,
    CapturedRequest,
    CapturesNotRecorded,
    FunctionAnswer,
    PermanentError,
)
from dataplane.retry import TRANSIENT
from functions import selectors as function_selectors
from functions.models import Function
from functions.services import versions
from releases.models import ACTIVE_STATES, Replay, ReplayState, Rollout
from runtime.captures import redact_body
from tenants.selectors import current_tenant

REPLAY_TASK = "releases.replay"
REDACTED = "[redacted]"
KEPT_REPLAYS = 50  # per function: older ones are removed when a new one is made
MAX_DIFF_LINES = 200
# Beyond the function's own timeout, how long an answer may take: a cold start, the runtime's work.
ANSWER_MARGIN_S = 30
# What a direct call may raise: the data plane away (transient) or refusing (the version is gone).
UNANSWERED: tuple[type[Exception], ...] = (*TRANSIENT, PermanentError)
STUCK_AFTER = timedelta(minutes=5)


class CapturesUnavailable(DomainError):
    status = 503
    code = "captures_unavailable"


@contextmanager
def _data_plane() -> Iterator[None]:
    """The data plane's answers as the API's: it keeps no captures (Kubernetes) 409, it cannot
    be reached now 503; never a 500."""
    try:
        yield
    except CapturesNotRecorded as exc:
        raise Conflict(str(exc), code="replay_unavailable") from None
    except BackendError as exc:
        raise CapturesUnavailable(f"Captured requests are unavailable now: {exc}") from None


def captures(function: Function) -> list[CapturedRequest]:
    """The function's captured requests, oldest first: those of its own lifetime (a function
    deleted and created again under its name does not inherit the old one's). Conflict when the
    data plane keeps none (Kubernetes); CapturesUnavailable when it cannot be read now."""
    born = function.created_at.timestamp()
    with _data_plane():
        found = get_backend().captures(current_tenant().namespace, function.name)
    return [capture for capture in found if capture.time >= born]


@transaction.atomic
def captures_delete(*, function: Function, ids: list[str] | None = None) -> int:
    """Remove some (``ids``) or all of the function's captured requests; how many went."""
    with audit.change("capture.delete", object_type="function", object_name=function.name) as change:
        with _data_plane():
            deleted = get_backend().captures_delete(current_tenant().namespace, function.name, ids)
        change.after = {"deleted": deleted, "which": "all" if ids is None else sorted(ids)}
    return deleted


@transaction.atomic
def replay_create(
    *, function: Function, version: int, capture_ids: list[str] | None = None, user: str = ""
) -> Replay:
    """Queue a replay of the captured requests (all, or ``capture_ids`` in the order given)
    against ``version``. Conflict unless that version is on the data plane (an alias or trigger
    refers to it); NotFound for a capture id the function does not have."""
    target = versions.version_get(function=function, number=version)
    if target.number not in {v.number for v in function_selectors.referenced_versions(function=function)}:
        raise Conflict(f"Version {version} is not deployed: point an alias or a trigger at it first.",
                       code="not_deployed", detail={"version": [str(version)]})  # fmt: skip
    found = [c.id for c in captures(function)]
    chosen = found if capture_ids is None else list(dict.fromkeys(capture_ids))
    missing = [c for c in chosen if c not in found]
    if missing:
        raise NotFound("No such captured request.", detail={"captures": missing})
    with audit.change("replay.create", object_type="replay", object_name=function.name) as change:
        replay = Replay.objects.create(function=function, version=target, captures=chosen, created_by=user)
        change.object_name = f"{function.name}#{replay.pk}"
        change.after = {"version": target.number, "captures": len(chosen)}
    _prune(function)
    schema, pk = connection.schema_name, replay.pk  # type: ignore[attr-defined]
    transaction.on_commit(lambda: current_app.send_task(REPLAY_TASK, (schema, pk)))
    return replay


def _prune(function: Function) -> None:
    """Keep the newest KEPT_REPLAYS replays, and any an active rollout's gate waits for."""
    newest_first = Replay.objects.filter(function=function).order_by("-created_at")
    old = list(newest_first.values_list("pk", flat=True)[KEPT_REPLAYS:])
    gating = Rollout.objects.filter(state__in=ACTIVE_STATES, replay__isnull=False).values_list(
        "replay", flat=True
    )
    Replay.objects.filter(pk__in=old).exclude(pk__in=list(gating)).delete()


def replay_run(*, replay_id: int) -> Replay | None:
    """Send each captured request of the replay that has no result yet; idempotent (see the
    module's docstring). None when the replay is gone, or another run of it is alive: one run
    at a time holds a PostgreSQL advisory lock, which a killed worker's connection lets go."""
    key = f"{connection.schema_name}.replay.{replay_id}"  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        if not cursor.fetchone()[0]:
            return None
    try:
        return _run(replay_id)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _run(replay_id: int) -> Replay | None:
    replay = _claim(replay_id)
    if replay is None or replay.state == ReplayState.FINISHED:
        return replay
    try:
        stored = {c.id: c for c in captures(replay.function)}
    except Conflict as exc:
        stored, unavailable = {}, exc.message
    else:
        unavailable = ""
    for capture_id in replay.captures:
        if not _has_result(replay.pk, capture_id):
            _send(replay, capture_id, stored.get(capture_id), unavailable)
    return _finish(replay.pk)


def _claim(replay_id: int) -> Replay | None:
    """queued -> running (an atomic claim); a replay found running was resumed: what it left
    ``sending`` is ``lost``."""
    with transaction.atomic():
        replay = (
            Replay.objects.select_for_update()
            .select_related("function", "version")
            .filter(pk=replay_id)
            .first()
        )
        if replay is None or replay.state == ReplayState.FINISHED:
            return replay
        if replay.state == ReplayState.RUNNING:
            replay.results = [_lost(r) if r["state"] == "sending" else r for r in replay.results]
        replay.state = ReplayState.RUNNING
        replay.save(update_fields=["state", "results", "updated_at"])
        return replay


def _lost(result: dict[str, Any]) -> dict[str, Any]:
    note = "the worker stopped while it was being sent: not sent again (it may or may not have arrived)"
    return {**result, "state": "lost", "passed": False, "note": note}


def _has_result(replay_id: int, capture_id: str) -> bool:
    results = Replay.objects.values_list("results", flat=True).get(pk=replay_id)
    return any(r["capture"] == capture_id for r in results)


def _record(replay_id: int, result: dict[str, Any]) -> None:
    """Put ``result`` in (replacing the capture's earlier one) in its own transaction."""
    with transaction.atomic():
        replay = Replay.objects.select_for_update().get(pk=replay_id)
        replay.results = [r for r in replay.results if r["capture"] != result["capture"]] + [result]
        replay.save(update_fields=["results", "updated_at"])
        _push(replay)


def _send(replay: Replay, capture_id: str, capture: CapturedRequest | None, unavailable: str) -> None:
    base: dict[str, Any] = {"capture": capture_id}
    if capture is None:
        note = unavailable or "no longer captured (removed, or past its retention)"
        _record(replay.pk, {**base, "state": "gone", "passed": None, "note": note})
        return
    base |= {
        "method": capture.method, "path": capture.path, "original_status": capture.status,
        "original_duration_ms": capture.duration_ms, "fission_function": capture.fission_function,
    }  # fmt: skip
    if capture.body_truncated:
        note = "its body was over the capture limit: it cannot be sent as it came"
        _record(replay.pk, {**base, "state": "skipped", "passed": None, "note": note})
        return
    headers = [(name, value) for name, value in capture.headers if value != REDACTED]
    dropped = sorted({name for name, value in capture.headers if value == REDACTED})
    _record(replay.pk, {**base, "state": "sending", "passed": None})
    _record(
        replay.pk,
        {**base, **unredacted(_answer(replay, capture, headers), dropped), "dropped_headers": dropped},
    )


def _answer(replay: Replay, capture: CapturedRequest, headers: list[tuple[str, str]]) -> dict[str, Any]:
    name = manifests.fission_name(replay.function.name, replay.version.number)
    try:
        answer = get_backend().call_function(
            current_tenant().namespace, name, method=capture.method, path=capture.path, headers=headers,
            body=capture.body, timeout_s=float(replay.function.timeout_s) + ANSWER_MARGIN_S,
        )  # fmt: skip
    except UNANSWERED as exc:
        return {"state": "error", "passed": False, "note": f"not answered: {exc}"}
    return {"state": "done", "status": answer.status, "duration_ms": round(answer.duration_ms, 3),
            "request_id": answer.request_id, "passed": passes(replay.function, answer.status),
            "body_diff": body_diff(capture, answer)}  # fmt: skip


def unredacted(result: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """A 401 or 403 to a request sent without its redacted headers says nothing about the fix:
    it fails, saying why (a replay gate never passes on it)."""
    if dropped and result.get("status") in (401, 403):
        status, sent_without = result["status"], ", ".join(dropped)
        note = f"answered {status} without its redacted {sent_without}: inconclusive, counted as failing"
        return {**result, "passed": False, "note": note}
    return result


def passes(function: Function, status: int) -> bool:
    """A replayed request passes when its answer is neither a server error nor one of the statuses
    the function captures (the failure did not happen again)."""
    if status >= 500:
        return False
    policy = manifests.CapturePolicy(function=function.name, codes=tuple(function.capture_codes) or ("5xx",))
    return not policy.matches(status)


def body_diff(capture: CapturedRequest, answer: FunctionAnswer) -> str:
    """The unified diff of the original answer's body and the replayed one ("" when equal)."""
    before = capture.response_body.decode("utf-8", "replace").splitlines()
    # Redacted as the captured answer was: a secret the new answer holds is not stored either.
    raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    after = redact_body(raw_headers, answer.body).decode("utf-8", "replace").splitlines()
    lines = list(difflib.unified_diff(before, after, "original", "replayed", lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)


def _finish(replay_id: int) -> Replay:
    with transaction.atomic():
        replay = Replay.objects.select_for_update().select_related("function", "version").get(pk=replay_id)
        if replay.state != ReplayState.FINISHED:
            replay.passed, replay.summary = _verdict(replay.results)
            replay.state, replay.finished_at = ReplayState.FINISHED, timezone.now()
            replay.save(update_fields=["passed", "summary", "state", "finished_at", "updated_at"])
            _push(replay)
        return replay


def _verdict(results: list[dict[str, Any]]) -> tuple[bool, str]:
    sent = [r for r in results if r["state"] in ("done", "error", "lost")]
    failing = [r for r in sent if not r.get("passed")]
    if not sent:
        return True, "no captured request to replay" if not results else "no request could be sent as it came"
    summary = f"{len(sent) - len(failing)} of {len(sent)} replayed requests pass"
    if failing:
        first = failing[0]
        shown = f"{first.get('method', '')} {first.get('path', '')} -> {first.get('status', first['state'])}"
        summary += f"; {len(failing)} still fail (first: {shown})"
    return not failing, summary


def _push(replay: Replay) -> None:
    schema, function_id = connection.schema_name, replay.function_id  # type: ignore[attr-defined]
    data = {"replay": replay.pk, "state": replay.state, "passed": replay.passed, "done": len(replay.results),
            "of": len(replay.captures)}  # fmt: skip
    transaction.on_commit(lambda: notifier.function_event(schema, function_id, "replay.changed", **data))


def replays_stuck() -> list[int]:
    """Replays of the current schema queued or running with no change for a while (a lost task)."""
    cutoff = timezone.now() - STUCK_AFTER
    unfinished = Replay.objects.exclude(state=ReplayState.FINISHED).filter(updated_at__lt=cutoff)
    return list(unfinished.values_list("pk", flat=True))
