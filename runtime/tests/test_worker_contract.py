"""The worker behaves as Fission's Python environment (fission/environments ``python/server.py``):
its logging, the methods and routes it answers, a second specialization, imports inside a Flask
context, single files, and load errors that reach the log stream before the reply does.

Each test names the Fission behaviour it checks; where we differ on purpose, the test says so.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runtime.tests.test_worker_support import (
    Reply,
    Rig,
    call,
    rig,
    short_tmpdir,
    specialize,
    start_worker,
    stop,
    write_files,
)
from runtime.worker import isolation, server

# Werkzeug's 405 for Fission's routes names exactly the methods its function routes accept.
FISSION_METHODS = {"GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"}
# Fission's handler format, '%(asctime)s - %(levelname)s - %(message)s'.
FISSION_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (?P<level>[A-Z]+) - (?P<message>.*)$")

ECHO = {
    "main.py": """
        from flask import request

        def main():
            return {"method": request.method, "path": request.path}, 200, {"X-Method": request.method}
    """
}


@pytest.fixture(scope="module")
def harness() -> Iterator[Rig]:
    with rig() as r:
        yield r


@pytest.fixture(scope="module")
def echo(harness: Rig) -> str:
    return harness.function(ECHO)


def fission_lines(messages: list[str]) -> list[tuple[str, str]]:
    """``(level, message)`` of the records written in Fission's format."""
    matches = [FISSION_LINE.match(m) for m in messages]
    return [(m["level"], m["message"]) for m in matches if m]


def specialize_with(path: str, rid: str, **body: Any) -> Reply:
    """``POST /v2/specialize`` with exactly ``body`` (our extensions included)."""
    return call(path, "POST", "/v2/specialize", json.dumps(body), {"X-Fission-Request-ID": rid})


# 1. Logging


def test_the_app_logger_logs_debug_to_stdout_once_in_fissions_format(harness: Rig) -> None:
    path = harness.function(
        {
            "main.py": """
                import logging
                import sys

                import flask

                def main():
                    flask.current_app.logger.debug("x")
                    print("done", file=sys.stderr)  # after the log line in the same queue
                    return str(logging.getLogger().level)
            """
        }
    )

    reply = call(path, headers={"X-Fission-Request-ID": "log-debug"})

    assert reply.text == str(10)  # the root logger is at DEBUG, as in Fission
    logs = harness.logs
    logs.wait_for(lambda _: "done" in logs.messages("log-debug", "stderr"))
    assert fission_lines(logs.messages("log-debug", "stdout")) == [("DEBUG", "x")]
    # Fission also writes it to stderr through Flask's default handler; we write it once.
    assert not any(m.endswith(" x") or m == "x" for m in logs.messages("log-debug", "stderr"))


def test_app_log_twice_writes_each_app_line_to_stderr_too_as_fission(harness: Rig) -> None:
    """RUNTIME_APP_LOG_TWICE=on (the runtime sends ``app_log_twice``): Fission's exact output."""
    path = harness.worker(1)
    code = harness.code(
        {
            "main.py": """
                import sys

                import flask

                def main():
                    flask.current_app.logger.info("twice")
                    print("done", file=sys.stderr)
                    return "ok"
            """
        }
    )
    assert (
        specialize_with(path, "twice-load", filepath=str(code), functionName="", app_log_twice=True).status
        == 200
    )

    assert call(path, headers={"X-Fission-Request-ID": "log-twice"}).text == "ok"

    logs = harness.logs
    logs.wait_for(lambda _: "done" in logs.messages("log-twice", "stderr"))
    assert fission_lines(logs.messages("log-twice", "stdout")) == [("INFO", "twice")]
    # Flask's default handler: "[%(asctime)s] %(levelname)s in %(module)s: %(message)s".
    assert [m for m in logs.messages("log-twice", "stderr") if m.endswith("INFO in main: twice")], (
        logs.messages("log-twice", "stderr")
    )


def test_other_loggers_reach_stderr_from_debug_up(harness: Rig) -> None:
    path = harness.function(
        {
            "main.py": """
                import logging

                def main():
                    logging.getLogger("fn").debug("detail")
                    return "ok"
            """
        }
    )

    assert call(path, headers={"X-Fission-Request-ID": "log-root"}).text == "ok"

    harness.logs.wait_for(lambda _: harness.logs.messages("log-root", "stderr") == ["DEBUG fn: detail"])


# 2. Methods


@pytest.mark.parametrize("method", sorted(FISSION_METHODS))
def test_fissions_methods_reach_the_function_as_they_are(echo: str, method: str) -> None:
    reply = call(echo, method, "/some/path")

    assert reply.status == 200
    assert reply.headers["X-Method"] == method
    if method == "HEAD":
        assert reply.body == b""
    else:
        assert reply.json() == {"method": method, "path": "/some/path"}


@pytest.mark.parametrize("url", ["/", "/some/path", "/healthz", "/v2/specialize", "/specialize"])
@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "TRACE"])
def test_any_other_method_is_a_405_naming_the_allowed_ones(echo: str, method: str, url: str) -> None:
    reply = call(echo, method, url, headers={"X-Fission-Request-ID": "m405"})

    assert reply.status == 405
    assert set(reply.headers["Allow"].split(", ")) == FISSION_METHODS
    assert b"Method Not Allowed" in reply.body  # Werkzeug's page, not the function's reply
    assert reply.headers["X-Fission-Request-ID"] == "m405"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/v2/specialize"),
        ("PUT", "/v2/specialize"),
        ("DELETE", "/specialize"),
        ("POST", "/healthz"),
        ("PUT", "/healthz"),
        ("GET", "/healthz/"),
    ],
)
def test_a_method_fissions_own_route_lacks_goes_to_the_function(echo: str, method: str, url: str) -> None:
    # Werkzeug tries the next rule, '/<path:path>', when a route matches the path but not the method.
    assert call(echo, method, url).json() == {"method": method, "path": url}


@pytest.mark.parametrize("url", ["/healthz", "/v2/specialize", "/specialize"])
def test_options_on_fissions_own_routes_is_flasks_automatic_answer(echo: str, url: str) -> None:
    reply = call(echo, "OPTIONS", url)

    assert (reply.status, reply.body) == (200, b"")
    assert set(reply.headers["Allow"].split(", ")) == FISSION_METHODS
    assert "X-Method" not in reply.headers  # the function did not run


def test_head_healthz_is_the_health_check(echo: str) -> None:
    reply = call(echo, "HEAD", "/healthz")

    assert (reply.status, reply.body) == (200, b"")
    assert "X-Method" not in reply.headers


# 3. Routes and a second specialization


def test_v1_specialize_loads_user_in_userfuncvol_and_calls_main(harness: Rig) -> None:
    code = harness.code({"user": "def main():\n    return 'v1 ' + __name__\n"})
    path = harness.worker(env={"USERFUNCVOL": str(code)})

    reply = call(path, "POST", "/specialize", headers={"X-Fission-Request-ID": "v1"})

    assert reply.status == 200, reply
    assert call(path).text == "v1 mod"


def test_v1_specialize_defaults_to_slash_userfunc(harness: Rig) -> None:
    assert not Path("/userfunc").exists()
    path = harness.worker()

    reply = call(path, "POST", "/specialize")

    assert (reply.status, reply.text) == (500, "no such file or directory: /userfunc/user")


def test_a_second_specialize_replaces_the_function_with_fresh_modules(harness: Rig) -> None:
    first = {
        "main.py": "import helper\ndef main():\n    return 'first ' + helper.NAME\n",
        "helper.py": "NAME = 'helper one'\n",
    }
    second = {
        "main.py": "import helper\ndef main():\n    return 'second ' + helper.NAME\n",
        "helper.py": "NAME = 'helper two'\n",
    }
    path = harness.function(first)
    assert call(path).text == "first helper one"

    reply = specialize(path, harness.code(second), rid="again")

    assert reply.status == 200
    assert call(path).text == "second helper two"  # neither module came from the first code
    logs = harness.logs
    logs.wait_for(lambda _: any(level == "WARNING" for level, _ in fission_lines(logs.messages("again"))))
    [(_, warning)] = fission_lines(logs.messages("again", "stdout"))
    assert "replacing" in warning


def test_a_second_specialize_that_fails_keeps_the_first_function(harness: Rig) -> None:
    first = {
        "main.py": "def main():\n    import helper  # imported lazily, at the call\n    return helper.NAME\n",
        "helper.py": "NAME = 'still the first'\n",
    }
    path = harness.function(first)

    # The new helper is imported before main fails: it must not be the one the first main finds.
    broken = harness.code(
        {"main.py": "import helper\nraise RuntimeError(helper.NAME)\n", "helper.py": "NAME = 'new'\n"}
    )
    assert specialize(path, broken, rid="fails").status == 500

    assert call(path).text == "still the first"


def test_a_second_specialize_applies_its_concurrency(harness: Rig) -> None:
    path = harness.function({"main.py": "def main():\n    return 'one at a time'\n"})
    code = harness.code(
        {
            "main.py": """
                import threading

                both = threading.Barrier(2)

                def main():
                    both.wait(timeout=10)  # only two requests running at once get past this
                    return "together"
            """
        }
    )

    assert specialize_with(path, "conc", filepath=str(code), functionName="", concurrency=2).status == 200

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: call(path, timeout=30), range(2)))
    assert [(r.status, r.text) for r in replies] == [(200, "together")] * 2


# 4. Importing inside the specialize request's Flask context


def test_the_module_is_imported_inside_the_specialize_request(harness: Rig) -> None:
    path = harness.worker()
    code = harness.code(
        {
            "main.py": """
                from flask import current_app, request

                current_app.logger.info("loaded")
                SEEN = {"path": request.path, "method": request.method}

                def main():
                    return SEEN
            """
        }
    )

    assert specialize(path, code, rid="import-ctx").status == 200

    assert call(path).json() == {"path": "/v2/specialize", "method": "POST"}
    logs = harness.logs
    logs.wait_for(lambda _: fission_lines(logs.messages("import-ctx", "stdout")) == [("INFO", "loaded")])


# 5. Single files


@pytest.mark.parametrize(
    ("name", "entrypoint"),
    [
        ("greet.py", "greet.hello"),
        ("function.py", "hello"),
        ("user", "some.module.hello"),
        ("json.py", "hello"),
    ],
)
def test_a_single_file_is_module_mod_and_only_the_function_part_counts(
    harness: Rig, name: str, entrypoint: str
) -> None:
    code = harness.code({name: "import json\ndef hello():\n    return json.dumps([__name__])\n"})
    path = harness.worker()

    assert specialize(path, code / name, entrypoint).status == 200

    # The module is 'mod' as in Fission, whatever the file is called (json.py shadows nothing).
    assert call(path).json() == ["mod"]


def test_a_zip_keeps_the_users_module_name(harness: Rig) -> None:
    path = harness.function({"greet.py": "def hello():\n    return __name__\n"}, "greet.hello")

    assert call(path).text == "greet"


# 6. Load errors reach the log stream before the reply


def test_a_load_error_is_in_the_log_stream_before_the_reply_is_written() -> None:
    with short_tmpdir() as root:
        code = write_files(root / "code", {"main.py": "x = 1\ndef main(:\n    return x\n"})
        collector = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        collector.bind(str(root / "log.sock"))
        collector.listen(1)
        collector.settimeout(10)
        path = str(root / "w.sock")
        process = start_worker(path, env={"RUNTIME_LOG_SOCKET": str(root / "log.sock")})
        try:
            reply = specialize(path, code, rid="load-err")
            process.kill()  # as the runtime may, as soon as it has the reply
        finally:
            stop(process)
        # The worker connects when it first logs; what it sent before dying is still there.
        connection, _ = collector.accept()
        with connection, connection.makefile("rb") as lines:
            records = [json.loads(line) for line in lines]
        collector.close()

    assert reply.status == 500
    assert len(reply.text.splitlines()) == 1
    stderr = [r["message"] for r in records if r["request_id"] == "load-err" and r["stream"] == "stderr"]
    assert stderr[0] == "Traceback (most recent call last):"
    at = stderr.index(f'  File "{code / "main.py"}", line 2')
    assert stderr[at + 1].strip() == "def main(:"
    assert set(stderr[at + 2].strip()) == {"^"}  # the caret line
    assert any(line.startswith("SyntaxError: ") for line in stderr)


# 3 (continued). A second specialization of an isolated worker, with confine() faked: the real
# one needs a sandbox (test_sandbox.py), the decisions around it do not.


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[server.Worker, list[str]]]:
    """An isolated worker in this process; ``confine`` records the packages it confines to and
    shows ``tmp_path/userfunc`` as the package."""
    userfunc = tmp_path / "userfunc"
    write_files(
        userfunc, {name: f"def main():\n    return {name!r}\n" for name in ("one.py", "two.py", "user")}
    )
    confined: list[str] = []

    def confine(filepath: str, files: Mapping[str, bytes] | None = None) -> str:
        root, inside = isolation.package_root(filepath)
        confined.append(root)
        return str(userfunc / inside)

    monkeypatch.setattr(isolation, "USERFUNC", str(userfunc))
    monkeypatch.setattr(isolation, "confine", confine)
    yield server.Worker(None, 1, isolated=True), confined
    sys.modules.pop("mod", None)


def in_process(worker: server.Worker, method: str, url: str, body: bytes = b"") -> server.Reply:
    """What the worker answers ``method url`` (a control route or the function)."""
    path, query = server.split_url(url.encode())
    request = server.Request(method, url.encode(), {}, body, True)
    environ = server.build_environ(request, path, query, worker, ("localhost", "80"))
    if url == "/v2/specialize":
        return worker.specialize(environ, body)
    if url == "/specialize":
        return worker.specialize_v1(environ, body)
    return worker.invoke(environ)


def v2(filepath: str) -> bytes:
    return json.dumps({"filepath": filepath, "functionName": ""}).encode()


def test_an_isolated_worker_confines_once_and_reloads_within_its_package(
    isolated: tuple[server.Worker, list[str]],
) -> None:
    worker, confined = isolated
    assert in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/one.py")).code == 200
    assert in_process(worker, "GET", "/").body == b"one.py"

    again = in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/two.py"))

    assert again.code == 200
    assert in_process(worker, "GET", "/").body == b"two.py"
    assert confined == ["/packages/aaa"]  # not confined twice: it could not (no capability left)


def test_an_isolated_worker_refuses_another_package(isolated: tuple[server.Worker, list[str]]) -> None:
    worker, confined = isolated
    assert in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/one.py")).code == 200

    other = in_process(worker, "POST", "/v2/specialize", v2("/packages/bbb/one.py"))

    assert other.code == 409
    assert b"/packages/aaa" in other.body
    assert in_process(worker, "GET", "/").body == b"one.py"  # still serving its own
    assert confined == ["/packages/aaa"]


def test_an_isolated_worker_takes_v1_only_once_confined(isolated: tuple[server.Worker, list[str]]) -> None:
    worker, confined = isolated

    first = in_process(worker, "POST", "/specialize")

    assert first.code == 400  # it has no package yet, and v1 does not name one
    assert confined == []
    assert in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/one.py")).code == 200
    assert in_process(worker, "POST", "/specialize").code == 200
    assert in_process(worker, "GET", "/").body == b"user"


def test_an_isolated_worker_refuses_a_path_outside_the_packages_and_stays_usable(
    isolated: tuple[server.Worker, list[str]],
) -> None:
    worker, confined = isolated

    assert in_process(worker, "POST", "/v2/specialize", v2("/etc/passwd")).code == 400

    assert confined == []
    assert in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/one.py")).code == 200


def test_an_isolated_worker_whose_confinement_failed_never_loads_anything(
    isolated: tuple[server.Worker, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, _ = isolated

    worker, confined = isolated
    working = isolation.confine

    def fail(filepath: str, files: Mapping[str, bytes] | None = None) -> str:
        raise isolation.IsolationError(1, "mount /userfunc: Operation not permitted")

    monkeypatch.setattr(isolation, "confine", fail)
    assert in_process(worker, "POST", "/v2/specialize", v2("/packages/aaa/one.py")).code == 500
    monkeypatch.setattr(isolation, "confine", working)  # even one that would work is never tried

    for url, body in (("/v2/specialize", v2("/packages/aaa/one.py")), ("/specialize", b"")):
        reply = in_process(worker, "POST", url, body)
        assert reply.code == 500
        assert b"the sandbox could not be set up" in reply.body
    assert confined == []
    assert in_process(worker, "GET", "/").code == 500
