"""Asynchronous invocation end to end: a real runtime, real sandboxed functions, the embedded Redis.

What a function did is read from its log stream (each line carries the invocation's request id),
what the dispatcher did from the control API (dead letters) and /metrics."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from runtime.events.asynchronous.records import (
    MAX_AGE_ANNOTATION,
    RETRIES_ANNOTATION,
    Event,
    Keys,
    keyspace,
)
from runtime.logs import stream_name
from testsupport.fission import environment, function, httptrigger, package_literal
from testsupport.processes import wait_until
from testsupport.runtime import TOKEN, RuntimeProcess, _gated_processes
from testsupport.services import require

NS, ROOT = "faas-async", "/async"
OTHER, OTHER_ROOT = "faas-asyncb", "/asyncb"
EVENT = {"X-Faas-Invocation-Type": "Event"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Fails (500) for every tenth order; prints one line per attempt and one per result.
FLAKY = """
from flask import request

def main():
    n = request.get_json()["n"]
    print(f"attempt {n}")
    if n % 10 == 0:
        return "broken", 500
    print(f"result {n}")
    return "ok"
"""
FIXED = FLAKY.replace('    if n % 10 == 0:\n        return "broken", 500\n', "")
ECHO = """
import json
from flask import request

def main():
    print(json.dumps({"method": request.method, "path": request.path, "args": request.args.to_dict(),
                      "headers": dict(request.headers), "body": request.get_data(as_text=True)}))
    return "seen"
"""
BROKEN = "def main():\n    print('attempt')\n    return 'broken', 500\n"
# Waits for SIGUSR1 (a sandboxed function sees no host file): the test decides when a call ends.
GATED = """
import signal
from flask import request

def main():
    print("started")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    signal.sigtimedwait({signal.SIGUSR1}, 60)
    print("finished")
    return "done"
"""


def start_runtime(state_dir: Path, **env: str) -> RuntimeProcess:
    require("redis")
    return RuntimeProcess(state_dir=state_dir, env={"RUNTIME_ASYNC_BACKOFF_MS": "20", **env}).start()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """One runtime for the tests that do not stop it, retrying after 20 ms and 40 ms."""
    process = start_runtime(tmp_path_factory.mktemp("async") / "runtime")
    yield process
    process.stop()


def deploy(runtime: RuntimeProcess, namespace: str, name: str, code: str, *,
           annotations: dict[str, str] | None = None, prefix: bool = False, **fn: Any) -> None:  # fmt: skip
    root = "/" + namespace.removeprefix("faas-")
    for obj in (
        environment(namespace, "python", poolsize=2),
        package_literal(namespace, f"{name}-pkg", code),
    ):
        assert runtime.apply(obj).status_code in (200, 201)
    spec = function(namespace, name, package=f"{name}-pkg", **fn)
    spec["metadata"]["annotations"] = annotations or {}
    response = runtime.apply(spec)
    assert response.status_code in (200, 201), response.text
    response = runtime.apply(
        httptrigger(namespace, name, f"{root}/{name}", function_name=name, prefix=prefix)
    )
    assert response.status_code in (200, 201), response.text


def functions_url(runtime: RuntimeProcess, namespace: str, name: str) -> str:
    return f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/functions/{name}"


def dead_letters(runtime: RuntimeProcess, namespace: str, name: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(
        functions_url(runtime, namespace, name) + "/deadletters", params=params, headers=AUTH
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def log_records(namespace: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return [fields for _, fields in client.xrange(stream_name(namespace))]  # type: ignore[union-attr,misc]


def output(namespace: str, name: str) -> dict[str, list[str]]:
    """What the function printed (not the runtime's notes), per request id."""
    lines: dict[str, list[str]] = defaultdict(list)
    for record in log_records(namespace):
        if record["function"] == name and record["stream"] == "stdout":
            lines[record["request_id"]].append(record["message"])
    return lines


def lines_of(namespace: str, name: str, request_id: str, count: int) -> list[str]:
    """What the function printed for ``request_id``, once that is at least ``count`` lines (a
    line is stored a moment after the call that printed it has answered)."""
    lines: list[str] = wait_until(
        lambda: len(found := output(namespace, name)[request_id]) >= count and found
    )
    return lines


def events_metric(runtime: RuntimeProcess, namespace: str, name: str, outcome: str) -> float:
    text = runtime.metrics()
    labels = (f'function_namespace="{namespace}"', f'function_name="{name}"', 'kind="async"',
              f'outcome="{outcome}"')  # fmt: skip
    for line in text.splitlines():
        if line.startswith("faas_trigger_events_total{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def accept(runtime: RuntimeProcess, path: str, **kwargs: Any) -> str:
    """An asynchronous call through the router: its request id."""
    response = runtime.call(path, "POST", headers={**EVENT, **kwargs.pop("headers", {})}, **kwargs)
    assert response.status_code == 202, response.text
    assert response.json() == {"requestId": response.headers["x-fission-request-id"]}
    return response.headers["x-fission-request-id"]


def test_500_calls_with_10_percent_failing_give_450_results_and_50_redrivable_dead_letters(runtime):
    deploy(runtime, NS, "flaky", FLAKY)
    with httpx.Client(base_url=runtime.router, headers=EVENT, timeout=30) as client:

        def send(n: int) -> tuple[int, str]:
            response = client.post(f"{ROOT}/flaky", json={"n": n})
            assert response.status_code == 202, response.text
            return n, response.headers["x-fission-request-id"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = dict(pool.map(send, range(500)))
    failing = {n for n in ids if n % 10 == 0}
    expected = {
        ids[n]: [f"attempt {n}"] * 3 if n in failing else [f"attempt {n}", f"result {n}"] for n in ids
    }
    wait_until(lambda: dead_letters(runtime, NS, "flaky")["total"] == 50, timeout=240)
    # Each line is logged once its call has answered: wait for the last ones, then compare.
    wait_until(lambda: all(len(output(NS, "flaky")[i]) >= len(lines) for i, lines in expected.items()))
    seen = output(NS, "flaky")
    assert {i: seen[i] for i in expected} == expected  # 450 results; each failure attempted 1 + 2 times

    pages, cursor = [], None
    while True:
        page = dead_letters(runtime, NS, "flaky", limit=20, **({"cursor": cursor} if cursor else {}))
        pages.append(page["items"])
        if (cursor := page["next"]) is None:
            break
    assert [len(p) for p in pages] == [20, 20, 10]
    letters = [letter for page in pages for letter in page]
    assert [d["id"] for d in letters] == sorted((d["id"] for d in letters), key=_stream_order, reverse=True)
    assert {json.loads(d["request"]["body"])["n"] for d in letters} == failing
    for letter in letters:
        n = json.loads(letter["request"]["body"])["n"]
        assert letter["requestId"] == ids[n]
        assert (letter["condition"], letter["attempts"], letter["function"]) == (
            "RetriesExhausted",
            3,
            "flaky",
        )
        assert letter["error"] == {"status": 500, "body": "broken", "truncated": False}
        assert letter["request"]["method"] == "POST"
        assert letter["request"]["path"] == "/"
        assert ["content-type", "application/json"] in [
            [k.lower(), v] for k, v in letter["request"]["headers"]
        ]
    assert events_metric(runtime, NS, "flaky", "accepted") == 500
    assert events_metric(runtime, NS, "flaky", "succeeded") == 450
    assert events_metric(runtime, NS, "flaky", "retried") == 100
    assert events_metric(runtime, NS, "flaky", "dead_lettered") == 50

    # Fix the code (a new package for the function), then redrive every dead letter.
    assert runtime.apply(package_literal(NS, "flaky-fixed", FIXED)).status_code == 201
    fixed = function(NS, "flaky", package="flaky-fixed")
    assert runtime.apply(fixed).status_code == 200
    response = httpx.post(functions_url(runtime, NS, "flaky") + "/deadletters/redrive", headers=AUTH)
    assert response.status_code == 200, response.text
    redriven = response.json()["redriven"]
    assert response.json()["notFound"] == []
    assert {r["id"] for r in redriven} == {d["id"] for d in letters}
    new_ids = {r["requestId"] for r in redriven}
    assert not new_ids & set(ids.values())
    wait_until(lambda: all(len(output(NS, "flaky")[i]) == 2 for i in new_ids), timeout=60)
    lines = output(NS, "flaky")
    assert sorted(int(lines[i][1].split()[1]) for i in new_ids) == sorted(failing)
    assert dead_letters(runtime, NS, "flaky")["total"] == 0
    assert events_metric(runtime, NS, "flaky", "redriven") == 50
    wait_until(lambda: events_metric(runtime, NS, "flaky", "succeeded") == 500)


def _stream_order(entry_id: str) -> tuple[int, int]:
    stamp, sequence = entry_id.split("-")
    return int(stamp), int(sequence)


def test_accepted_at_once_with_a_request_id_before_the_function_ends(runtime):
    deploy(runtime, NS, "gated", GATED)
    mine = f"mine-{uuid.uuid4().hex}"
    request_id = accept(runtime, f"{ROOT}/gated", headers={"X-Fission-Request-ID": mine})
    # The 202 came while the call cannot have ended: it waits for the test's signal.
    assert request_id == mine
    wait_until(lambda: output(NS, "gated")[mine] == ["started"])
    drain(runtime, NS, [mine])
    assert output(NS, "gated")[mine] == ["started", "finished"]


def drain(runtime: RuntimeProcess, namespace: str, ids: list[str]) -> None:
    """Let every call of ``GATED`` end until each of ``ids`` has finished."""
    uid = runtime.tenant_uid(namespace)

    def finished() -> bool:
        for pid in _gated_processes(uid):
            os.kill(pid, signal.SIGUSR1)
        return all("finished" in output(namespace, "gated").get(i, []) for i in ids)

    wait_until(finished, timeout=60)


def test_routed_as_a_call_without_the_invocation_header(runtime):
    deploy(runtime, NS, "echo", ECHO, prefix=True)
    request_id = accept(runtime, f"{ROOT}/echo/sub/path?q=1", headers={"X-Custom": "yes",
                        "X-Faas-Invocation-Type": "event"}, content=b"payload")  # fmt: skip
    seen = json.loads(wait_until(lambda: output(NS, "echo").get(request_id))[0])
    assert (seen["method"], seen["path"], seen["args"], seen["body"]) == (
        "POST",
        "/sub/path",
        {"q": "1"},
        "payload",
    )
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert "x-faas-invocation-type" not in headers
    assert (headers["x-custom"], headers["x-fission-request-id"]) == ("yes", request_id)
    assert headers["x-fission-function-name"] == "echo"

    sync = runtime.call(f"{ROOT}/echo/x", headers={"X-Faas-Invocation-Type": "RequestResponse"})
    assert (sync.status_code, sync.text) == (200, "seen")
    wrong = runtime.call(f"{ROOT}/echo/x", headers={"X-Faas-Invocation-Type": "DryRun"})
    assert wrong.status_code == 400


def test_control_api_invokes_a_function_by_name(runtime):
    deploy(runtime, NS, "byname", ECHO)
    url = functions_url(runtime, NS, "byname") + "/invocations"
    body = {"method": "PUT", "path": "/x?y=2", "body": "hi",
            "headers": {"X-Custom": "c", "X-Fission-Function-Name": "spoofed"}}  # fmt: skip
    response = httpx.post(url, json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    request_id = response.json()["requestId"]
    assert response.headers["x-fission-request-id"] == request_id
    seen = json.loads(wait_until(lambda: output(NS, "byname").get(request_id))[0])
    assert (seen["method"], seen["path"], seen["args"], seen["body"]) == ("PUT", "/x", {"y": "2"}, "hi")
    assert (seen["headers"]["X-Custom"], seen["headers"]["X-Fission-Function-Name"]) == ("c", "byname")

    assert httpx.post(url, json=body).status_code == 401
    missing = httpx.post(functions_url(runtime, NS, "nosuch") + "/invocations", json={}, headers=AUTH)
    assert missing.status_code == 404
    injected = httpx.post(url, json={"headers": [["X-A", "b\r\nX-Evil: 1"]]}, headers=AUTH)
    assert (injected.status_code, injected.json()["error"]["detail"]) == (422, {"field": "headers[0]"})


@pytest.mark.parametrize(("retries", "attempts"), [("0", 1), ("seven", 3)])
def test_retries_come_from_the_function_annotation(runtime, retries, attempts):
    name = f"broken-{attempts}"
    deploy(runtime, NS, name, BROKEN, annotations={RETRIES_ANNOTATION: retries})
    request_id = accept(runtime, f"{ROOT}/{name}")
    [letter] = wait_until(lambda: dead_letters(runtime, NS, name)["items"])
    assert (letter["requestId"], letter["attempts"], letter["condition"]) == (
        request_id,
        attempts,
        "RetriesExhausted",
    )
    assert lines_of(NS, name, request_id, attempts) == ["attempt"] * attempts
    # Redriven (the code still fails): a new event, attempted as often, naming the one it redrives.
    url = functions_url(runtime, NS, name) + "/deadletters/redrive"
    [redriven] = httpx.post(url, json={"ids": [letter["id"]]}, headers=AUTH).json()["redriven"]
    [again] = wait_until(lambda: dead_letters(runtime, NS, name)["items"])
    assert (again["requestId"], again["redriveOf"], again["attempts"]) == (
        redriven["requestId"],
        request_id,
        attempts,
    )
    assert lines_of(NS, name, again["requestId"], attempts) == ["attempt"] * attempts


# Answers 429 to its worker's first call only (a module's globals live as long as its worker).
BUSY_ONCE = """
calls = 0

def main():
    global calls
    calls += 1
    print(f"call {calls}")
    return ("busy", 429) if calls == 1 else "ok"
"""


def test_a_throttled_call_is_tried_again_without_counting_as_an_attempt(runtime):
    deploy(runtime, NS, "busy", BUSY_ONCE, concurrency=1, annotations={RETRIES_ANNOTATION: "0"})
    request_id = accept(runtime, f"{ROOT}/busy")
    assert lines_of(NS, "busy", request_id, 2) == ["call 1", "call 2"]
    wait_until(lambda: events_metric(runtime, NS, "busy", "succeeded") == 1)
    assert events_metric(runtime, NS, "busy", "throttled") == 1
    assert dead_letters(runtime, NS, "busy")["total"] == 0


def test_an_event_older_than_the_maximum_age_is_dead_lettered_without_a_call(runtime):
    deploy(runtime, NS, "aged", BROKEN, annotations={MAX_AGE_ANNOTATION: "60", RETRIES_ANNOTATION: "0"})
    # An event accepted two minutes ago, as a runtime that was down for that long would find it.
    old = Event("aged", "POST", b"/", [], b"old", f"old-{uuid.uuid4().hex}", time.time() - 120)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.xadd(Keys(keyspace(runtime.state_dir.resolve())).queue(NS), {"e": old.encode()})
    letter = wait_until(lambda: dead_letters(runtime, NS, "aged")["items"])[0]
    assert (letter["requestId"], letter["condition"], letter["attempts"]) == (
        old.request_id,
        "EventAgeExceeded",
        0,
    )
    assert letter["request"]["body"] == "old"
    fresh = accept(runtime, f"{ROOT}/aged")
    wait_until(lambda: output(NS, "aged").get(fresh))  # the function does run: it only never ran the old one
    assert old.request_id not in output(NS, "aged")
    assert events_metric(runtime, NS, "aged", "expired") == 1


def test_a_namespace_cannot_see_redrive_or_purge_another_namespaces_dead_letters(runtime):
    deploy(runtime, NS, "broken", BROKEN, annotations={RETRIES_ANNOTATION: "0"})
    deploy(runtime, OTHER, "broken", BROKEN, annotations={RETRIES_ANNOTATION: "0"})
    mine = accept(runtime, f"{ROOT}/broken")
    [letter] = wait_until(lambda: dead_letters(runtime, NS, "broken")["items"])
    theirs = accept(runtime, f"{OTHER_ROOT}/broken")
    [other] = wait_until(lambda: dead_letters(runtime, OTHER, "broken")["items"])
    assert (letter["requestId"], other["requestId"]) == (mine, theirs)
    assert letter["id"] != other["id"]
    assert letter["namespace"] == NS

    other_url = functions_url(runtime, OTHER, "broken") + "/deadletters"
    assert httpx.get(f"{other_url}/{letter['id']}", headers=AUTH).status_code == 404
    redrive = httpx.post(other_url + "/redrive", json={"ids": [letter["id"]]}, headers=AUTH)
    assert redrive.json() == {"redriven": [], "notFound": [letter["id"]]}
    purge = httpx.request("DELETE", other_url, json={"ids": [letter["id"]]}, headers=AUTH)
    assert purge.json() == {"purged": 0}
    assert httpx.delete(other_url, headers=AUTH).json() == {"purged": 1}  # all of OTHER's: its own one
    assert [d["id"] for d in dead_letters(runtime, NS, "broken")["items"]] == [letter["id"]]
    my_url = functions_url(runtime, NS, "broken") + "/deadletters"
    assert httpx.get(f"{my_url}/{letter['id']}", headers=AUTH).json()["requestId"] == mine
    elsewhere = httpx.post(my_url + "/redrive", json={"function": "nosuch"}, headers=AUTH)
    assert elsewhere.status_code == 404
    assert httpx.request("DELETE", my_url, json={"ids": [letter["id"]]}, headers=AUTH).json() == {"purged": 1}
    assert dead_letters(runtime, NS, "broken")["total"] == 0


def test_a_deleted_namespace_leaves_no_dead_letter_for_a_namespace_of_the_same_name(runtime):
    namespace, root = "faas-gone", "/gone"
    deploy(runtime, namespace, "broken", BROKEN, annotations={RETRIES_ANNOTATION: "0"})
    accept(runtime, f"{root}/broken")
    wait_until(lambda: dead_letters(runtime, namespace, "broken")["total"] == 1)
    for plural in ("httptriggers", "functions", "packages", "environments"):  # as the tenant's deletion
        base = f"{runtime.control}/apis/fission.io/v1/namespaces/{namespace}/{plural}"
        for item in runtime.list(namespace, plural):
            assert httpx.delete(f"{base}/{item['metadata']['name']}", headers=AUTH).status_code == 200
    # A tenant made later under the same name deploys a function of the same name: nothing of the
    # old one's is there.
    deploy(runtime, namespace, "broken", BROKEN, annotations={RETRIES_ANNOTATION: "0"})
    assert dead_letters(runtime, namespace, "broken") == {"items": [], "next": None, "total": 0}


def test_events_pending_when_the_runtime_is_killed_are_delivered_after_a_restart(tmp_path):
    process = start_runtime(tmp_path / "runtime")
    try:
        deploy(process, NS, "gated", GATED, concurrency=1)
        ids = [accept(process, f"{ROOT}/gated", json={"n": n}) for n in range(3)]
        # One call in flight (the function takes one at a time), two queued.
        [running] = wait_until(lambda: [i for i in ids if output(NS, "gated").get(i) == ["started"]])
        assert process.process is not None
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(10)
        process.start()
        drain(process, NS, ids)
        lines = output(NS, "gated")
        assert lines[running] == ["started", "started", "finished"]  # killed mid-call: called again
        assert [lines[i] for i in ids if i != running] == [["started", "finished"]] * 2
        assert dead_letters(process, NS, "gated")["total"] == 0
    finally:
        process.stop()


def test_a_full_namespace_queue_answers_429_and_others_still_accept(tmp_path):
    process = start_runtime(tmp_path / "runtime", RUNTIME_ASYNC_QUEUE_LIMIT="5")
    try:
        deploy(process, NS, "gated", GATED, concurrency=1)
        deploy(process, OTHER, "gated", GATED, concurrency=1)
        ids = [accept(process, f"{ROOT}/gated") for _ in range(5)]  # one running, four waiting: five held
        full = process.call(f"{ROOT}/gated", "POST", headers=EVENT)
        assert full.status_code == 429
        assert "queued" in full.text
        drain(process, OTHER, [accept(process, f"{OTHER_ROOT}/gated")])
        drain(process, NS, ids)
        drain(process, NS, [accept(process, f"{ROOT}/gated")])  # room again
    finally:
        process.stop()


def test_without_redis_asynchronous_calls_answer_503(tmp_path):
    process = start_runtime(tmp_path / "runtime", REDIS_URL="")
    try:
        deploy(process, NS, "hello", "def main():\n    return 'hello'\n")
        refused = process.call(f"{ROOT}/hello", "POST", headers=EVENT)
        assert refused.status_code == 503
        assert refused.text == "asynchronous invocation needs Redis: the runtime has no REDIS_URL\n"
        by_name = httpx.post(functions_url(process, NS, "hello") + "/invocations", json={}, headers=AUTH)
        assert by_name.status_code == 503
        assert (
            httpx.get(functions_url(process, NS, "hello") + "/deadletters", headers=AUTH).status_code == 503
        )
        assert process.call(f"{ROOT}/hello").text == "hello"  # a call needs no Redis
    finally:
        process.stop()
