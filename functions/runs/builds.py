"""The worker side of a build: the draft, checked, with requirements installed, zipped and
stored with its sha256. build_create (builds.py) queues it; a deployment runs it inline."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone

from audit import services as audit
from core import notifier
from functions import builder, runtimes
from functions.build_sandbox import BuildSandbox, SandboxUnavailable
from functions.models import Build, BuildState, Draft, Function


def build_new(*, function: Function) -> Build:
    """Record a queued build of the draft as it is now (the caller runs or queues it)."""
    revision = Draft.objects.values_list("revision", flat=True).get(function=function)
    return Build.objects.create(function=function, draft_revision=revision)


def _push(build: Build, kind: str, **data: object) -> None:
    schema = connection.schema_name  # type: ignore[attr-defined]
    # To the function's group: its page streams the build log and the deployment together.
    notifier.function_event(schema, build.function_id, kind, build=build.pk, **data)


def build_run(*, build_id: int) -> Build | None:
    """Run a queued build. Idempotent by an atomic claim (queued -> running); a build left
    running by a killed worker is claimed again only by ``build_resume``. None if gone."""
    claimed = Build.objects.filter(pk=build_id, state=BuildState.QUEUED).update(
        state=BuildState.RUNNING, started_at=timezone.now()
    )
    build = Build.objects.select_related("function__environment").filter(pk=build_id).first()
    if build is None or not claimed:
        return build
    draft = Draft.objects.get(function=build.function)
    if draft.revision != build.draft_revision:
        return _finish(build, BuildState.FAILED, "the draft changed before the build started", "")
    _keep_source(build, draft)
    source = builder.SourceSpec(
        files=dict(draft.files) or None, archive=bytes(draft.archive) if draft.archive else None
    )
    lines: list[str] = []

    def on_log(line: str) -> None:
        lines.append(line)
        _push(build, "build.log", line=line)

    try:
        sandbox = BuildSandbox(settings.BUILD_UID) if settings.BUILD_SANDBOX else None
    except SandboxUnavailable as exc:
        return _finish(build, BuildState.FAILED, f"builds cannot be sandboxed on this machine: {exc}", "")
    build.python_version = build.function.environment.runtime_version
    with tempfile.TemporaryDirectory(prefix="build-") as workdir:
        try:
            result = builder.build(
                source, workdir=Path(workdir), sandbox=sandbox, timeout_s=settings.BUILD_TIMEOUT_S,
                on_log=on_log, python=runtimes.interpreter(build.python_version),
            )  # fmt: skip
        except builder.BuildFailed as exc:
            return _finish(build, BuildState.FAILED, exc.reason, exc.log)
    suffix = ".zip" if result.is_zip else ".py"
    build.archive.save(f"{result.sha256}{suffix}", ContentFile(result.archive), save=False)
    build.sha256, build.size = result.sha256, result.size
    return _finish(build, BuildState.SUCCEEDED, "", result.log)


def _keep_source(build: Build, draft: Draft) -> None:
    """Keep on ``build`` the draft it builds (the revision it was made for: the caller checked
    it), so a version published from it can be compared and restored; saved by ``_finish``."""
    build.source_files = dict(draft.files) if not draft.archive else {}
    build.source_archive = bytes(draft.archive) if draft.archive else None
    build.source_archive_name = draft.archive_name


def build_name(build: Build) -> str:
    """A build as the audit trail names it: ``<function>#<id>``."""
    return f"{build.function.name}#{build.pk}"


@transaction.atomic
def _finish(build: Build, state: str, reason: str, log: str) -> Build:
    """End the build claimed by build_run, with its audit record ("build.finish", in the same
    transaction). The claim made this run the build's only one: it ends once, with one record."""
    before = {"state": build.state}
    with audit.change(
        "build.finish", object_type="build", object_name=build_name(build), before=before
    ) as done:
        build.state, build.reason, build.log, build.finished_at = (
            state,
            reason[:2000],
            log[-200_000:],
            timezone.now(),
        )
        build.save()
        done.after = {"state": state}
    _push(build, "build.state", state=state, reason=build.reason)
    return build
