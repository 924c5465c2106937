"""The local runtime end to end: a real ``python -m runtime``, real workers, real HTTP."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal

import httpx
import pytest
import redis

from runtime.logs import stream_name
from testsupport.fission import environment, function, httptrigger, package_literal, zip_bytes
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, WHOAMI, RuntimeProcess, host_pid

NS = "faas-acme"
R = "/acme"  # the tenant root of NS: its routes live under it
HELLO = "def main():\n    return 'hello'\n"


def deploy(runtime: RuntimeProcess, name: str, code: str | bytes, *, path: str | None = None,
           env_memory: str | None = None, **fn: object) -> None:  # fmt: skip
    assert runtime.apply(environment(NS, "python", poolsize=2, memory=env_memory)).status_code in (200, 201)
    response = runtime.apply(package_literal(NS, f"{name}-pkg", code))
    assert response.status_code in (200, 201), response.text
    response = runtime.apply(function(NS, name, package=f"{name}-pkg", **fn))  # type: ignore[arg-type]
    assert response.status_code in (200, 201), response.text
    response = runtime.apply(httptrigger(NS, name, path or f"{R}/{name}", function_name=name))
    assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize(
    ("files", "entrypoint", "expected"),
    [
        ({"main.py": "def main():\n    return 'main.main'\n"}, "", "main.main"),
        ({"main.py": "def func():\n    return 'main.func'\n"}, "func", "main.func"),
        ({"foo.py": "def bar():\n    return 'foo.bar'\n"}, "foo.bar", "foo.bar"),
        (
            {"sub_mod/__init__.py": "", "sub_mod/altmain.py": "def entrypoint():\n    return 'alt'\n"},
            "sub_mod.altmain.entrypoint",
            "alt",
        ),
    ],
)
def test_entrypoints_of_zip_packages(runtime, files, entrypoint, expected):
    deploy(runtime, "f", zip_bytes(files), entrypoint=entrypoint)
    response = runtime.call(f"{R}/f")
    assert (response.status_code, response.text) == (200, expected)


def test_single_file_function(runtime):
    deploy(runtime, "single", "def handler():\n    return 'single file'\n", entrypoint="whatever.handler")
    assert runtime.call(f"{R}/single").text == "single file"


ECHO = """
from flask import request

def main():
    return {
        "method": request.method,
        "args": request.args.to_dict(),
        "json": request.get_json(silent=True),
        "param": request.headers.get("X-Fission-Params-item"),
        "rid": request.headers.get("X-Fission-Request-ID"),
        "path": request.path,
    }
"""


def test_flask_request_params_and_request_id(runtime):
    deploy(runtime, "echo", ECHO, path=f"{R}/items/{{item}}")
    response = runtime.call(
        f"{R}/items/42?q=x", "POST", json={"a": 1}, headers={"X-Fission-Request-ID": "abc-1"}
    )
    assert response.status_code == 200
    body = response.json()
    # A templated route forwards "/" as Fission's router does; the path is in X-Fission-Full-Url.
    assert body == {"method": "POST", "args": {"q": "x"}, "json": {"a": 1}, "param": "42", "rid": "abc-1",
                    "path": "/"}  # fmt: skip
    assert response.headers["x-fission-request-id"] == "abc-1"
    generated = runtime.call(f"{R}/items/1").headers["x-fission-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_prefix_routes_strip_or_keep(runtime):
    deploy(runtime, "echo", ECHO, path=f"{R}/echo")
    runtime.apply(httptrigger(NS, "strip", f"{R}/api", function_name="echo", prefix=True))
    runtime.apply(httptrigger(NS, "keep", f"{R}/keep", function_name="echo", prefix=True, keep_prefix=True))
    assert runtime.call(f"{R}/api/v1/x").json()["path"] == "/v1/x"
    assert runtime.call(f"{R}/keep/v1/x").json()["path"] == f"{R}/keep/v1/x"


def test_router_errors_are_clear_and_leak_nothing(runtime):
    deploy(runtime, "hello", HELLO)
    missing = runtime.call(f"{R}/nothing")
    assert (missing.status_code, missing.text) == (404, "not found\n")
    wrong = runtime.call(f"{R}/hello", "DELETE")
    assert wrong.status_code == 405
    big = runtime.call(f"{R}/hello", "POST", content=b"x" * (11 * 1024 * 1024))
    assert big.status_code == 413
    runtime.apply(httptrigger(NS, "ghost", f"{R}/ghost", function_name="nosuch"))
    ghost = runtime.call(f"{R}/ghost")
    assert ghost.status_code == 502
    assert "Traceback" not in ghost.text


def test_timeout_gives_504_while_others_are_served(runtime):
    deploy(runtime, "sleepy", "import time\ndef main():\n    time.sleep(10)\n    return 'late'\n", timeout=1)
    deploy(runtime, "hello", HELLO)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(runtime.call, f"{R}/sleepy")
        quick = [pool.submit(runtime.call, f"{R}/hello") for _ in range(3)]
        assert all(f.result().status_code == 200 for f in quick)
        assert slow.result().status_code == 504
    assert runtime.call(f"{R}/hello").status_code == 200


MEMORY = """
from flask import request

def main():
    if request.args.get("big"):
        hog = bytearray(512 * 1024 * 1024)
        return str(len(hog))
    return "small"
"""


def test_memory_limit_fails_only_that_request(runtime):
    deploy(runtime, "hog", MEMORY, memory="128Mi")
    assert runtime.call(f"{R}/hog?big=1").status_code >= 500
    response = runtime.call(f"{R}/hog")
    assert (response.status_code, response.text) == (200, "small")


def test_killed_worker_is_replaced(runtime):
    deploy(runtime, "pid", WHOAMI)
    first = runtime.call(f"{R}/pid").text
    pid = host_pid(first)
    assert pid > 0
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: host_pid(first) == 0)
    response = runtime.call(f"{R}/pid")
    assert response.status_code == 200
    assert response.text != first


def test_the_start_up_heap_is_frozen_out_of_the_collectors_walks(runtime):
    """runtime.__main__._freeze_startup_heap: a full collection walks only what came after
    start-up (it walked the whole heap, a 40 ms pause in the middle of a burst of calls)."""
    frozen = re.compile(r"start-up heap frozen: (\d+) objects")
    wait_until(lambda: frozen.search(runtime.log_path.read_text()), message="no freeze in the log")
    count = frozen.search(runtime.log_path.read_text())
    assert count is not None
    assert int(count[1]) > 10_000  # the modules alone are more


def test_state_survives_a_restart(runtime):
    deploy(runtime, "hello", HELLO)
    assert runtime.call(f"{R}/hello").text == "hello"
    runtime.stop()
    runtime.start()
    assert runtime.call(f"{R}/hello").text == "hello"


def test_weights_split_2000_calls(runtime):
    deploy(runtime, "v1", "def main():\n    return 'v1'\n")
    deploy(runtime, "v2", "def main():\n    return 'v2'\n")
    runtime.apply(httptrigger(NS, "live", f"{R}/live", weights={"v1": 90, "v2": 10}))
    with httpx.Client(base_url=runtime.router, timeout=30) as client:
        answers = [client.get(f"{R}/live").text for _ in range(2000)]
    share = answers.count("v1") / len(answers)
    assert abs(share - 0.9) <= 0.03, share
    assert set(answers) == {"v1", "v2"}


def test_concurrency_limit_answers_429(runtime):
    deploy(runtime, "one", "import time\ndef main():\n    time.sleep(1)\n    return 'done'\n",
           concurrency=1, requests_per_pod=1)  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = sorted(
            f.result().status_code for f in [pool.submit(runtime.call, f"{R}/one") for _ in range(4)]
        )
    assert 200 in codes
    assert 429 in codes


# Slow to load, so that every call of a burst comes while the first worker is specialized.
SLOW_LOAD = "import os, time\ntime.sleep(1.0)\ndef main():\n    return os.readlink('/proc/self/ns/pid')\n"


@pytest.mark.parametrize("executor", ["poolmgr", "newdeploy"])
def test_a_burst_at_scale_zero_shares_the_cold_start_up_to_requests_per_pod(runtime, executor):
    deploy(runtime, "burst", SLOW_LOAD, executor=executor, requests_per_pod=4, min_scale=0, max_scale=5)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: runtime.call(f"{R}/burst"), range(8)))
    assert {r.status_code for r in responses} == {200}
    # 8 calls, 4 a worker: 2 workers (one each before this: 8, or as many as the limits allowed).
    assert len({r.text for r in responses}) == 2
    assert _metric(runtime.metrics(), "fission_function_cold_starts_total", function_name="burst") == 2


def test_calls_that_wait_for_a_cold_start_that_fails_fail_with_it(runtime):
    broken = "import time\ntime.sleep(1.0)\nraise RuntimeError('broken on purpose')\n"
    deploy(runtime, "broken", broken, requests_per_pod=8)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: runtime.call(f"{R}/broken"), range(4)))
    assert {r.status_code for r in responses} == {502}
    text = runtime.metrics()
    assert _metric(text, "fission_function_cold_starts_total", function_name="broken") == 1
    assert _metric(text, "fission_function_cold_start_errors_total", function_name="broken") == 1
    assert runtime.call(f"{R}/broken").status_code == 502  # and the next call tries again, alone


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_calls_by_code(runtime):
    deploy(runtime, "hello", HELLO)
    deploy(runtime, "fail", "def main():\n    return 'nope', 503\n")
    for _ in range(5):
        runtime.call(f"{R}/hello")
    for _ in range(3):
        runtime.call(f"{R}/fail")
    text = runtime.metrics()
    assert _metric(text, "fission_function_calls_total", function_name="hello", code="200") == 5
    assert _metric(text, "fission_function_calls_total", function_name="fail", code="503") == 3
    assert _metric(text, "fission_function_errors_total", function_name="fail") == 3
    assert _metric(text, "fission_function_errors_total", function_name="hello") == 0
    assert (
        _metric(text, "fission_function_overhead_seconds_count", function_name="hello", path=f"{R}/hello")
        == 5
    )
    assert _metric(text, "fission_function_cold_starts_total", function_name="hello") == 1


CHATTY = """
import sys, time, logging
from flask import request

def main():
    tag = request.args["tag"]
    for i in range(5):
        print(f"{tag} line {i}")
        time.sleep(0.01)
    print(f"{tag} to stderr", file=sys.stderr)
    logging.warning("%s via logging", tag)
    return tag
"""


def test_logs_are_per_request_in_redis(runtime):
    deploy(runtime, "chatty", CHATTY, requests_per_pod=2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda tag: runtime.call(f"{R}/chatty?tag={tag}"), ["aaa", "bbb"]))
    ids = {r.text: r.headers["x-fission-request-id"] for r in responses}
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)

    def records(tag: str) -> list[dict[str, str]]:
        entries: list[dict[str, str]] = [fields for _, fields in client.xrange(stream_name(NS))]  # type: ignore[union-attr,misc]
        return [e for e in entries if e["request_id"] == ids[tag]]

    wait_until(lambda: len(records("aaa")) >= 7 and len(records("bbb")) >= 7, timeout=5)
    for tag in ("aaa", "bbb"):
        lines = records(tag)
        assert all(tag in r["message"] for r in lines), lines
        assert {r["function"] for r in lines} == {"chatty"}
        assert {r["namespace"] for r in lines} == {NS}
        assert [r["message"] for r in lines if r["stream"] == "stdout"] == [
            f"{tag} line {i}" for i in range(5)
        ]
        assert any(r["stream"] == "stderr" and "to stderr" in r["message"] for r in lines)


def test_workers_get_a_clean_environment(runtime):
    deploy(runtime, "env", "import os\ndef main():\n    return dict(os.environ)\n")
    seen = runtime.call(f"{R}/env").json()
    assert "PORTAL_SECRET_KEY" not in seen
    assert "REDIS_URL" not in seen
    assert "RUNTIME_TOKEN" not in seen
    assert "DATABASE_URL" not in seen


def test_newdeploy_scales_from_zero_and_back(runtime):
    deploy(runtime, "nd", WHOAMI, executor="newdeploy", min_scale=0, max_scale=2, idle_timeout=1)
    assert runtime.call(f"{R}/nd").status_code == 200

    def specialized() -> float:
        text = runtime.metrics()
        return _metric(text, "runtime_workers", executor="newdeploy", state="specialized")

    assert specialized() == 1
    wait_until(lambda: specialized() == 0, timeout=10, message="newdeploy did not scale back to zero")
    assert runtime.call(f"{R}/nd").status_code == 200


def test_control_api_validates_and_needs_the_token(runtime):
    base = f"{runtime.control}/apis/fission.io/v1/namespaces/{NS}/functions"
    bad = function(NS, "f", package="p")
    bad["spec"]["InvokeStrategy"]["ExecutionStrategy"]["ExecutorType"] = ""
    assert httpx.post(base, json=bad).status_code == 401
    response = httpx.post(base, json=bad, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 422
    assert response.json()["error"]["detail"] == {
        "field": "spec.InvokeStrategy.ExecutionStrategy.ExecutorType"
    }
    package = package_literal(NS, "p", HELLO)
    package["spec"]["deployment"]["checksum"]["sum"] = "0" * 64
    response = runtime.apply(package)
    assert response.status_code == 422
    assert "checksum mismatch" in response.json()["error"]["message"]
    listing = httpx.get(f"{runtime.control}/apis/fission.io/v1/namespaces/{NS}/packages",
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert listing.json() == {"items": []}


def test_poolmgr_reaps_idle_workers(runtime):
    deploy(runtime, "brief", WHOAMI, idle_timeout=1)
    first = runtime.call(f"{R}/brief").text
    assert host_pid(first) > 0
    wait_until(lambda: host_pid(first) == 0, timeout=10, message="idle worker was not reaped")
    assert runtime.call(f"{R}/brief").text != first


def test_url_package_is_fetched_and_verified(runtime, tmp_path):
    import hashlib
    import http.server
    import threading

    archive = zip_bytes({"main.py": "def main():\n    return 'from url'\n"})
    (tmp_path / "pkg.zip").write_bytes(archive)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/pkg.zip"
        package = package_literal(NS, "remote-pkg", "unused")
        package["spec"]["deployment"] = {
            "type": "url", "url": url, "checksum": {"type": "sha256", "sum": "1" * 64},
        }  # fmt: skip
        rejected = runtime.apply(package)
        assert rejected.status_code == 422
        assert "checksum mismatch" in rejected.json()["error"]["message"]
        package["spec"]["deployment"]["checksum"]["sum"] = hashlib.sha256(archive).hexdigest()
        assert runtime.apply(environment(NS, "python")).status_code in (200, 201)
        assert runtime.apply(package).status_code == 201
        runtime.apply(function(NS, "remote", package="remote-pkg", entrypoint="main.main"))
        runtime.apply(httptrigger(NS, "remote", f"{R}/remote"))
        assert runtime.call(f"{R}/remote").text == "from url"
    finally:
        server.shutdown()


def test_crash_fails_only_the_request_in_flight(runtime):
    crash = (
        "import os\nfrom flask import request\n"
        "def main():\n    if request.args.get('die'):\n        os._exit(3)\n    return 'alive'\n"
    )
    deploy(runtime, "crashy", crash)
    assert runtime.call(f"{R}/crashy?die=1").status_code == 502
    assert runtime.call(f"{R}/crashy").text == "alive"


def test_newdeploy_keeps_min_scale_and_scales_up_to_max(runtime):
    # Each worker is pid 1 of a pid namespace of its own: the namespace names the worker.
    slow = "import os, time\ndef main():\n    time.sleep(0.5)\n    return os.readlink('/proc/self/ns/pid')\n"
    deploy(runtime, "nd", slow, executor="newdeploy", min_scale=1, max_scale=2)

    def specialized() -> float:
        return _metric(runtime.metrics(), "runtime_workers", executor="newdeploy",
                       state="specialized")  # fmt: skip

    wait_until(lambda: specialized() == 1, timeout=10, message="MinScale 1 was not started ahead of calls")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: runtime.call(f"{R}/nd"), range(4)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 2  # two workers, never more than MaxScale
    assert specialized() == 2


def test_a_cold_start_survives_an_unrelated_change(runtime):
    # Loading takes a second, during which another namespace's objects change (each change
    # rebuilds what the runtime runs): the call still gets its answer.
    deploy(runtime, "slowload", "import time\ntime.sleep(1)\ndef main():\n    return 'loaded'\n",
           executor="newdeploy")  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(runtime.call, f"{R}/slowload")
        for index in range(5):
            assert runtime.apply(environment("faas-other", f"env{index}", poolsize=0)).status_code == 201
        response = call.result()
    assert (response.status_code, response.text) == (200, "loaded")
