"""Versions you can compare (issue 15, deliver 3): builds keep the code they built; a per-file
unified diff and a configuration diff between any two versions or a version and the draft;
restoring a version into the draft; publishing a draft identical to the latest version refused."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from django_tenants.utils import tenant_context

from audit.models import AuditRecord
from core.errors import Conflict, ValidationFailed
from functions import diffs
from functions.archives import ArchiveLimits
from functions.models import Build, BuildState, Deployment, Draft, Function, Version
from functions.runs import builds as build_runs
from functions.services import changes, versions
from functions.services import functions as function_services
from testsupport.fixtures import error_of

API = "/t/acme/api/v1/functions/hello"
PAGE = "/t/acme/functions/hello"
V1 = {"main.py": "def main():\n    return 'one'\n", "util.py": "X = 1\n", "old.py": "gone = True\n"}
V2 = {"main.py": "def main():\n    return 'two'\n", "util.py": "X = 1\n", "new.py": "fresh = True\n"}


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------- diffs.py (pure)


def _by_path(files: list[diffs.FileDiff]) -> dict[str, diffs.FileDiff]:
    return {f.path: f for f in files}


def test_file_diffs_say_added_removed_changed_and_unchanged() -> None:
    found = _by_path(
        diffs.file_diffs(diffs.Source(V1), diffs.Source(V2), base_label="v1", head_label="draft")
    )
    assert {path: (f.status, f.kind) for path, f in found.items()} == {
        "main.py": ("changed", "text"),
        "new.py": ("added", "text"),
        "old.py": ("removed", "text"),
        "util.py": ("unchanged", "text"),
    }
    assert found["main.py"].diff.splitlines() == [
        "--- v1/main.py",
        "+++ draft/main.py",
        "@@ -1,2 +1,2 @@",
        " def main():",
        "-    return 'one'",
        "+    return 'two'",
    ]
    assert found["new.py"].diff.splitlines()[-1] == "+fresh = True"
    assert found["old.py"].diff.splitlines()[-1] == "-gone = True"
    assert found["util.py"].diff == ""
    marks = [mark for mark, _ in found["main.py"].marked_lines()]
    assert marks == ["file", "file", "hunk", "context", "removed", "added"]


def test_the_other_direction_swaps_added_and_removed() -> None:
    found = _by_path(
        diffs.file_diffs(diffs.Source(V2), diffs.Source(V1), base_label="draft", head_label="v1")
    )
    assert (found["new.py"].status, found["old.py"].status) == ("removed", "added")
    assert "-    return 'two'" in found["main.py"].diff.splitlines()


def test_a_removed_line_that_looks_like_a_header_is_marked_removed() -> None:
    found = diffs.file_diffs(
        diffs.Source({"a.sql": "-- one\nx\n"}), diffs.Source({"a.sql": "x\n"}), base_label="a", head_label="b"
    )
    assert ("removed", "--- one") in found[0].marked_lines()


def test_only_the_final_newline_changed_still_shows() -> None:
    (found,) = diffs.file_diffs(
        diffs.Source({"m.py": "x = 1\n"}), diffs.Source({"m.py": "x = 1"}), base_label="a", head_label="b"
    )
    assert found.status == "changed"
    assert "\\ No newline at end of file" in found.diff.splitlines()
    assert ("note", "\\ No newline at end of file") in found.marked_lines()


def test_a_zip_is_read_through_the_archive_checks_and_compared_with_inline_files() -> None:
    archive = _zip({"main.py": V2["main.py"].encode(), "lib/": b"", "lib/data.bin": b"\x00\x01\x02",
                    "util.py": b"X = 1\n"})  # fmt: skip
    found = _by_path(
        diffs.file_diffs(diffs.Source(V1), diffs.Source(archive=archive), base_label="v1", head_label="v2")
    )
    assert {path: (f.status, f.kind) for path, f in found.items()} == {
        "lib/data.bin": ("added", "binary"),
        "main.py": ("changed", "text"),
        "old.py": ("removed", "text"),
        "util.py": ("unchanged", "text"),
    }
    assert found["lib/data.bin"].diff == ""  # binary: said, never shown
    assert "+    return 'two'" in found["main.py"].diff.splitlines()


def test_a_zip_over_the_archive_limits_is_refused_not_read() -> None:
    archive = _zip({f"f{n}.py": b"x\n" for n in range(5)})
    with pytest.raises(ValidationFailed) as refused:
        diffs.file_diffs(
            diffs.Source(), diffs.Source(archive=archive), base_label="a", head_label="b",
            limits=ArchiveLimits(max_files=3),
        )  # fmt: skip
    assert refused.value.code == "archive_too_many_files"


def test_binary_and_oversize_files_say_whether_they_changed_without_content() -> None:
    big = "x" * (diffs.MAX_FILE_BYTES + 1)
    base = diffs.Source({"big.txt": big, "same.txt": big, "bad.txt": "caf\u00e9"})
    head = diffs.Source(archive=_zip({"big.txt": (big + "y").encode(), "same.txt": big.encode(),
                                      "bad.txt": b"caf\xe9"}, zipfile.ZIP_STORED))  # fmt: skip
    found = _by_path(diffs.file_diffs(base, head, base_label="a", head_label="b"))
    assert (found["big.txt"].status, found["big.txt"].kind, found["big.txt"].diff) == (
        "changed",
        "too_large",
        "",
    )
    assert (found["same.txt"].status, found["same.txt"].kind) == ("unchanged", "too_large")
    assert (found["bad.txt"].status, found["bad.txt"].kind, found["bad.txt"].diff) == (
        "changed",
        "binary",
        "",
    )


def test_config_diff_lists_only_changed_fields_in_the_settings_order() -> None:
    before = {"name": "hello", "environment": "python", "timeout_s": 60, "memory_mb": None,
              "environment_variables": {"A": "1"}, "secrets": ["db"]}  # fmt: skip
    after = {**before, "timeout_s": 30, "memory_mb": 128, "environment_variables": {"A": "2"},
             "secrets": ("db",)}  # fmt: skip
    changed = diffs.config_diff(before, after)
    assert changed == {
        "timeout_s": [60, 30],
        "memory_mb": [None, 128],
        "environment_variables": [{"A": "1"}, {"A": "2"}],
    }  # a tuple of the same names is the same setting
    assert list(changed) == ["timeout_s", "memory_mb", "environment_variables"]


# ---------------------------------------------------------------- the database side


def _fresh(function: Function) -> Function:
    return Function.objects.select_related("environment").get(pk=function.pk)


def _built(function: Function, *, kept: bool = True) -> Build:
    """A succeeded build of the draft as it is, keeping its code (as build_run does) unless
    ``kept`` is False (a build made before builds kept it); its sha256 is the code's."""
    function = _fresh(function)
    draft = Draft.objects.get(function=function)
    archive = bytes(draft.archive) if draft.archive else None
    digest = hashlib.sha256(archive or json.dumps(draft.files, sort_keys=True).encode()).hexdigest()
    source: dict[str, Any] = {}
    if kept:
        source = {"source_files": {} if archive else dict(draft.files), "source_archive": archive,
                  "source_archive_name": draft.archive_name}  # fmt: skip
    return Build.objects.create(
        function=function, draft_revision=draft.revision, state=BuildState.SUCCEEDED, sha256=digest,
        python_version=function.environment.runtime_version, **source,
    )  # fmt: skip


def _publish(function: Function, files: dict[str, str], *, kept: bool = True, **settings: Any) -> Version:
    function_services.draft_update_files(function=function, files=files)
    if settings:
        function_services.function_update(function=_fresh(function), **settings)
    _built(function, kept=kept)
    return versions.version_publish(function=_fresh(function))


@pytest.fixture
def acme(world: Any) -> Any:
    with tenant_context(world.acme):
        yield world


@pytest.fixture
def two(acme: Any, hello: Function) -> Function:
    """``hello`` with v1 (V1, timeout 60) and v2 (V2, timeout 30, GREETING=hi); the draft is v2's
    code with timeout 45."""
    _publish(hello, V1)
    _publish(hello, V2, timeout_s=30, environment_variables={"GREETING": "hi"})
    function_services.function_update(function=_fresh(hello), timeout_s=45)
    return _fresh(hello)


@pytest.mark.django_db
def test_a_build_keeps_the_inline_files_it_built(acme: Any, hello: Function) -> None:
    function_services.draft_update_files(function=hello, files={"main.py": V1["main.py"]})
    build = build_runs.build_run(build_id=build_runs.build_new(function=_fresh(hello)).pk)
    assert build is not None
    assert build.state == BuildState.SUCCEEDED, build.log
    build.refresh_from_db()
    assert (build.source_files, build.source_archive, build.source_archive_name) == (
        {"main.py": V1["main.py"]}, None, ""
    )  # fmt: skip


@pytest.mark.django_db
def test_a_build_keeps_the_uploaded_zip_it_built(acme: Any, hello: Function) -> None:
    archive = _zip({"main.py": V2["main.py"].encode(), "util.py": b"X = 1\n"})
    function_services.draft_upload(function=hello, filename="code.zip", data=archive)
    build = build_runs.build_run(build_id=build_runs.build_new(function=_fresh(hello)).pk)
    assert build is not None
    assert build.state == BuildState.SUCCEEDED, build.log
    build.refresh_from_db()
    assert build.source_archive is not None
    assert (bytes(build.source_archive), build.source_archive_name, build.source_files) == (
        archive,
        "code.zip",
        {},
    )


@pytest.mark.django_db
def test_a_build_of_a_changed_draft_keeps_nothing(acme: Any, hello: Function) -> None:
    build = build_runs.build_new(function=hello)
    function_services.draft_update_files(function=hello, files={"main.py": "x = 2\n"})
    finished = build_runs.build_run(build_id=build.pk)
    assert finished is not None
    assert finished.state == BuildState.FAILED
    finished.refresh_from_db()
    assert (finished.source_files, finished.source_archive) == ({}, None)


@pytest.mark.django_db
def test_compare_a_version_and_the_draft_both_ways(world: Any, api: Any, two: Function) -> None:
    vera = api(world.vera)
    forward = vera.get(f"{API}/versions/compare/?base=v1&head=draft")
    assert forward.status_code == 200, forward.content
    body = forward.json()
    assert (body["base"], body["head"]) == ("v1", "draft")
    files = {f["path"]: f for f in body["files"]}
    assert {path: f["status"] for path, f in files.items()} == {
        "main.py": "changed", "new.py": "added", "old.py": "removed", "util.py": "unchanged",
    }  # fmt: skip
    assert "+    return 'two'" in files["main.py"]["diff"].splitlines()
    assert body["config"] == {"timeout_s": [60, 45], "environment_variables": [{}, {"GREETING": "hi"}]}
    back = vera.get(f"{API}/versions/compare/?base=draft&head=1").json()
    assert (back["base"], back["head"]) == ("draft", "v1")
    assert {f["path"]: f["status"] for f in back["files"]}["new.py"] == "removed"
    assert back["config"]["timeout_s"] == [45, 60]


@pytest.mark.django_db
def test_compare_two_versions(world: Any, api: Any, two: Function) -> None:
    body = api(world.vera).get(f"{API}/versions/compare/?base=v2&head=v1").json()
    assert {f["path"]: f["status"] for f in body["files"]}["old.py"] == "added"
    assert body["config"] == {"timeout_s": [30, 60], "environment_variables": [{"GREETING": "hi"}, {}]}


@pytest.mark.django_db
def test_compare_a_zip_version_with_the_draft(world: Any, api: Any, acme: Any, hello: Function) -> None:
    archive = _zip({"main.py": V2["main.py"].encode(), "util.py": b"X = 2\n"})
    function_services.draft_upload(function=hello, filename="code.zip", data=archive)
    _built(hello)
    versions.version_publish(function=_fresh(hello))
    function_services.draft_update_files(function=hello, files={"main.py": V2["main.py"]})
    body = api(world.vera).get(f"{API}/versions/compare/?base=v1&head=draft").json()
    assert {f["path"]: f["status"] for f in body["files"]} == {"main.py": "unchanged", "util.py": "removed"}
    assert "-X = 2" in next(f["diff"] for f in body["files"] if f["path"] == "util.py").splitlines()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("base=v1&head=draft", 409, "source_not_kept"),
        ("base=draft&head=v1", 409, "source_not_kept"),
        ("base=v9&head=draft", 404, "not_found"),
        ("base=v0&head=draft", 400, "invalid"),
        ("base=latest&head=draft", 400, "invalid"),
        ("head=draft", 400, "invalid"),
        ("base=v99999999999999999999&head=draft", 400, "invalid"),
        ("base=v1%0A&head=draft", 400, "invalid"),
        ("base=draft&head=%F0%9F%92%A5", 400, "invalid"),
        ("base=%00&head=draft", 400, "malformed"),  # the portal refuses a NUL in any request
    ],
)
def test_compare_refusals_are_errors_not_500s(world: Any, api: Any, acme: Any, hello: Function, query: str,
                                              status: int, code: str) -> None:  # fmt: skip
    _publish(hello, V1, kept=False)
    response = api(world.vera).get(f"{API}/versions/compare/?{query}")
    assert response.status_code == status, response.content
    error = error_of(response)
    assert error["code"] == code
    if code == "source_not_kept":
        assert "Version 1 was built before the portal kept" in error["message"]


@pytest.mark.django_db
def test_restore_puts_code_and_settings_back_with_one_record_and_a_deployment(
    world: Any, api: Any, two: Function, django_capture_on_commit_callbacks: Any
) -> None:
    revision = Draft.objects.get(function=two).revision
    since = AuditRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with django_capture_on_commit_callbacks(execute=False):
        response = api(world.bob).post(f"{API}/versions/1/restore/")
    assert response.status_code == 200, response.content
    assert (response.json()["files"], response.json()["revision"]) == (V1, revision + 1)
    draft = Draft.objects.get(function=two)
    assert (draft.files, draft.archive, draft.revision) == (V1, None, revision + 1)
    function = _fresh(two)
    assert (function.timeout_s, function.environment_variables) == (60, {})
    records = list(AuditRecord.objects.filter(id__gt=since, tenant_id=world.acme.pk))
    assert [(r.action, r.object_type, r.object_name) for r in records] == [
        ("version.restore", "version", "hello/v1")
    ]
    assert records[0].changes["revision"] == [revision, revision + 1]
    assert records[0].changes["timeout_s"] == [45, 60]
    assert records[0].changes["files"] == [sorted(V2), sorted(V1)]
    assert V1["main.py"] not in json.dumps(records[0].changes)  # file names, never the code
    (deployment,) = Deployment.objects.filter(function=function)
    assert (deployment.state, deployment.cause, deployment.requested_by) == (
        "queued",
        "version 1 restored",
        "bob",
    )
    assert records[0].effects == [f"deployment.create hello#{deployment.pk}"]


@pytest.mark.django_db
def test_restore_a_zip_version(acme: Any, hello: Function, django_capture_on_commit_callbacks: Any) -> None:
    archive = _zip({"main.py": V2["main.py"].encode()})
    function_services.draft_upload(function=hello, filename="code.zip", data=archive)
    _built(hello)
    versions.version_publish(function=_fresh(hello))
    function_services.draft_update_files(function=hello, files={"main.py": "x = 1\n"})
    with django_capture_on_commit_callbacks(execute=False):
        draft = changes.version_restore_and_deploy(function=_fresh(hello), number=1, user="alice")
    draft.refresh_from_db()
    assert draft.archive is not None
    assert (bytes(draft.archive), draft.archive_name, draft.files) == (archive, "code.zip", {})


@pytest.mark.django_db
def test_restore_refusals_change_nothing(world: Any, api: Any, acme: Any, hello: Function) -> None:
    _publish(hello, V1, kept=False)
    revision = Draft.objects.get(function=hello).revision
    since = AuditRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    bob = api(world.bob)
    refused = bob.post(f"{API}/versions/1/restore/")
    assert refused.status_code == 409
    assert error_of(refused)["code"] == "source_not_kept"
    assert bob.post(f"{API}/versions/7/restore/").status_code == 404
    assert bob.post(f"{API}/versions/99999999999999999999/restore/").status_code == 404
    assert api(world.vera).post(f"{API}/versions/1/restore/").status_code == 403
    assert Draft.objects.get(function=hello).revision == revision
    assert not Deployment.objects.exists()
    assert not AuditRecord.objects.filter(id__gt=since, tenant_id=world.acme.pk).exists()


@pytest.mark.django_db
def test_publishing_a_draft_identical_to_the_latest_version_is_refused(
    world: Any, api: Any, acme: Any, hello: Function
) -> None:
    _publish(hello, V1)
    since = AuditRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = api(world.bob).post(f"{API}/versions/", {"description": "again"}, format="json")
    assert response.status_code == 409, response.content
    error = error_of(response)
    assert error["code"] == "unchanged"
    assert error["message"].startswith("The draft is identical to version 1 ")
    assert error["detail"] == {"version": 1}
    assert list(Version.objects.values_list("number", flat=True)) == [1]
    assert not AuditRecord.objects.filter(id__gt=since, tenant_id=world.acme.pk).exists()
    function_services.function_update(function=_fresh(hello), timeout_s=31)  # a setting differs now
    assert api(world.bob).post(f"{API}/versions/", {}, format="json").json()["number"] == 2


@pytest.mark.django_db
def test_a_restored_and_rebuilt_version_is_the_same_archive(
    acme: Any, hello: Function, django_capture_on_commit_callbacks: Any
) -> None:
    """Restoring v1 over v2 and building it again gives v1's archive (the same sha256): that draft
    is identical to v1, not to the latest version, so it publishes as v3; publishing it again is
    refused, naming v3."""
    _publish(hello, V1)
    _publish(hello, V2)
    with django_capture_on_commit_callbacks(execute=False):
        changes.version_restore_and_deploy(function=_fresh(hello), number=1)
    rebuilt = _built(hello)
    assert rebuilt.sha256 == Version.objects.get(number=1).build.sha256
    assert versions.version_publish(function=_fresh(hello)).number == 3
    _built(hello)  # another build of the same draft: the same sha256
    with pytest.raises(Conflict) as refused:
        versions.version_publish(function=_fresh(hello))
    assert (refused.value.code, refused.value.detail) == ("unchanged", {"version": 3})


# ---------------------------------------------------------------- pages


@pytest.mark.django_db
def test_the_compare_page_shows_both_diffs(world: Any, client: Any, two: Function) -> None:
    client.force_login(world.vera)
    page = client.get(f"{PAGE}/compare/?base=v1&head=draft")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-file="main.py" data-status="changed"' in html
    assert 'data-file="old.py" data-status="removed"' in html
    assert '<span class="diff-added">+    return &#x27;two&#x27;</span>' in html
    assert '<span class="diff-removed">-    return &#x27;one&#x27;</span>' in html
    assert '<tr data-setting="timeout_s"><td>Timeout (s)</td><td class="diff-removed"><code>60</code>' in html
    assert "GREETING" in html
    assert "Restore v1 into the draft" not in html  # a viewer
    for odd in ("v%C2%B2", "%C2%B2", "v0", "x"):  # a superscript digit is a digit to str.isdigit
        refused = client.get(f"{PAGE}/compare/?base={odd}&head=draft")
        assert refused.status_code == 400
        assert b"data-compare-error" in refused.content
    default = client.get(f"{PAGE}/compare/")  # the latest version and the draft
    assert default.status_code == 200
    assert "compare v2 → draft" in default.content.decode()


@pytest.mark.django_db
def test_the_compare_page_says_when_the_code_was_not_kept(world: Any, client: Any, acme: Any,
                                                           hello: Function) -> None:  # fmt: skip
    _publish(hello, V1, kept=False)
    client.force_login(world.bob)
    page = client.get(f"{PAGE}/compare/?base=v1&head=draft")
    assert page.status_code == 409
    assert b"data-compare-error" in page.content
    assert b"built before the portal kept" in page.content
    detail = client.get(f"{PAGE}/versions/").content.decode()
    assert "code not kept" in detail
    assert "compare with draft" not in detail


@pytest.mark.django_db
def test_the_versions_table_links_compare_and_restores_after_confirming(
    world: Any, client: Any, two: Function, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(world.vera)
    viewer = client.get(f"{PAGE}/versions/").content.decode()
    assert "/t/acme/functions/hello/compare/?base=v1&amp;head=draft" in viewer
    assert "Restore into draft" not in viewer
    assert client.post(f"{PAGE}/versions/", {"action": "restore", "version": "1"}).status_code == 403
    client.force_login(world.bob)
    detail = client.get(f"{PAGE}/versions/").content.decode()
    assert '<details class="confirm"><summary role="button" class="secondary">Restore into draft' in detail
    assert '<input type="hidden" name="version" value="1">' in detail
    compare = client.get(f"{PAGE}/compare/?base=v2&head=v1").content.decode()
    assert "Restore v2 into the draft" in compare
    assert "Restore v1 into the draft" in compare
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"{PAGE}/versions/", {"action": "restore", "version": "1"}, follow=True)
    assert "Version 1 restored into the draft" in response.content.decode()
    assert Draft.objects.get(function=two).files == V1
    assert _fresh(two).timeout_s == 60
    refused = client.post(f"{PAGE}/versions/", {"action": "restore", "version": "8"}, follow=True)
    assert "Version 8 does not exist." in refused.content.decode()
