"""Specialization: entrypoint resolution and load failures, through real worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.tests.test_worker_support import Rig, call, rig, specialize
from runtime.worker.loader import resolve_entrypoint


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("", ("main", "main")),
        ("func", ("main", "func")),
        ("foo.bar", ("foo", "bar")),
        ("sub_mod.altmain.entrypoint", ("sub_mod.altmain", "entrypoint")),
    ],
)
def test_resolve_entrypoint(entrypoint: str, expected: tuple[str, str]) -> None:
    assert resolve_entrypoint(entrypoint) == expected


DEPLOYMENT = {
    "main.py": """
        def main():
            return "main.main"

        def func():
            return "main.func"
    """,
    "foo.py": """
        def bar():
            return "foo.bar"
    """,
    "sub_mod/__init__.py": "",
    "sub_mod/altmain.py": """
        from . import helper

        def entrypoint():
            return "sub_mod.altmain.entrypoint " + helper.NAME
    """,
    "sub_mod/helper.py": "NAME = 'with a relative import'\n",
}


@pytest.mark.parametrize(
    ("entrypoint", "body"),
    [
        ("", "main.main"),
        ("func", "main.func"),
        ("foo.bar", "foo.bar"),
        ("sub_mod.altmain.entrypoint", "sub_mod.altmain.entrypoint with a relative import"),
    ],
)
def test_directory_deployment_entrypoints(harness: Rig, entrypoint: str, body: str) -> None:
    path = harness.function(DEPLOYMENT, entrypoint)

    reply = call(path, url="/any/path")

    assert (reply.status, reply.text) == (200, body)


def test_single_file_uses_only_the_function_part(harness: Rig) -> None:
    # Fission's fetcher stores a single-file function without an extension.
    code = harness.code({"user": "def handler():\n    return 'single ' + __name__\n"})
    path = harness.worker()

    assert specialize(path, code / "user", "some.module.handler").status == 200

    assert call(path).text == "single mod"  # Fission's module name for a single file


def test_single_file_named_like_a_loaded_module_does_not_shadow_it(harness: Rig) -> None:
    code = harness.code({"json.py": "import json\ndef main():\n    return json.dumps([__name__])\n"})
    path = harness.worker()

    assert specialize(path, code / "json.py").status == 200

    assert call(path).json() == ["mod"]


@pytest.mark.parametrize(
    ("files", "entrypoint", "message"),
    [
        ({}, "", "no such file or directory"),
        ({"main.py": "import not_a_module_anywhere\n"}, "", "ModuleNotFoundError"),
        ({"main.py": "def main(:\n"}, "", "SyntaxError"),
        ({"main.py": "def main():\n    return 1\n"}, "missing", "has no attribute 'missing'"),
        ({"main.py": "main = 42\n"}, "", "not callable"),
        ({"main.py": "raise RuntimeError('boom at import')\n"}, "", "RuntimeError: boom at import"),
    ],
)
def test_load_failure_is_a_500_with_a_short_message(
    harness: Rig, files: dict[str, str], entrypoint: str, message: str
) -> None:
    code = harness.code(files) if files else harness.root / "does-not-exist"
    path = harness.worker()
    rid = f"spec-{message[:12]}"

    reply = specialize(path, code, entrypoint, rid=rid)

    assert reply.status == 500
    assert message in reply.text
    assert "Traceback" not in reply.text
    assert len(reply.text.splitlines()) == 1
    assert reply.headers["X-Fission-Request-ID"] == rid
    if files:  # the traceback goes to the log stream, tagged with the specialize request
        harness.logs.wait_for(lambda _: "Traceback (most recent call last):" in harness.logs.messages(rid))
        assert set(harness.logs.messages(rid)) <= set(harness.logs.messages(rid, "stderr"))


def test_a_second_specialize_replaces_the_function(harness: Rig) -> None:
    path = harness.function(DEPLOYMENT)

    again = specialize(path, harness.code(DEPLOYMENT), "func")

    assert again.status == 200  # as Fission ("Found state.json, overwriting")
    assert call(path).text == "main.func"


def test_calls_before_specialization_fail(harness: Rig) -> None:
    path = harness.worker()

    reply = call(path, "POST", "/", b"{}")

    assert (reply.status, reply.text) == (500, "not specialized")


def test_bad_specialize_requests(harness: Rig) -> None:
    path = harness.worker()

    assert call(path, "POST", "/v2/specialize", b"not json").status == 400
    assert call(path, "POST", "/v2/specialize", b'{"functionName": "x"}').status == 400
    # Werkzeug routes a GET to the function (/v2/specialize is POST only): not specialized yet.
    assert call(path, "GET", "/v2/specialize").text == "not specialized"
    assert specialize(path, harness.code(DEPLOYMENT)).status == 200  # still specializable
