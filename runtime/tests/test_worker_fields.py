"""A request's headers as WSGI environ entries: ``runtime.worker._fields.Fields`` (C, built by
``make workerext`` for each runtime interpreter) and ``server.FieldsPy`` (its fallback) give the
same entries, and every runtime interpreter has the compiled one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime import interpreters
from runtime.worker import server
from runtime.worker._fields import Fields as CFields

REPO = Path(__file__).resolve().parents[2]
IMPLEMENTATIONS = {"c": CFields, "python": server.FieldsPy}
Headers = list[tuple[bytes, bytes]]
Kind = type[CFields] | type[server.FieldsPy]

# Header lists a client or the router may send, each a case the entries must get right.
CASES: dict[str, Headers] = {
    "the router's": [
        (b"host", b"worker"),
        (b"Forwarded", b"host=127.0.0.1:8888;"),
        (b"X-Forwarded-For", b"127.0.0.1"),
        (b"X-Fission-Full-Url", b"/bench/hello?x=1"),
        (b"x-fission-request-id", b"7f3c1b2a"),
        (b"X-Fission-Function-Name", b"hello"),
        (b"content-length", b"0"),
    ],
    "content type and length": [(b"Content-Type", b"application/json"), (b"CONTENT-LENGTH", b"12")],
    "repeated": [(b"X-A", b"1"), (b"x-a", b"2"), (b"X-A", b"")],
    "cookies": [(b"Cookie", b"a=1"), (b"cookie", b"b=2")],
    "latin-1 values": [(b"X-Name", b"caf\xe9"), (b"X-Raw", b"\x80\xff")],
    "a name with an underscore": [(b"X_Under", b"u"), (b"X-Under", b"d")],
    "no headers": [],
    "expect": [(b"Expect", b"100-Continue"), (b"Content-Length", b"4")],
}


def collect(kind: Kind, headers: Headers) -> CFields | server.FieldsPy:
    fields = kind(server._ENVIRON_KEYS, server.environ_key)
    for name, value in headers:
        fields(name, value)
    return fields


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_headers_become_pep_3333_entries(kind: Kind) -> None:
    fields = collect(kind, CASES["the router's"] + CASES["content type and length"])
    assert fields.take() == {
        "HTTP_HOST": "worker",
        "HTTP_FORWARDED": "host=127.0.0.1:8888;",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_X_FISSION_FULL_URL": "/bench/hello?x=1",
        "HTTP_X_FISSION_REQUEST_ID": "7f3c1b2a",
        "HTTP_X_FISSION_FUNCTION_NAME": "hello",
        "CONTENT_LENGTH": "0,12",  # no HTTP_ prefix (PEP 3333), and sent twice: both values
        "CONTENT_TYPE": "application/json",
    }


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_a_repeated_header_is_one_value_and_cookies_join_with_a_semicolon(kind: Kind) -> None:
    fields = collect(kind, CASES["repeated"] + CASES["cookies"])
    assert fields.take() == {"HTTP_X_A": "1,2,", "HTTP_COOKIE": "a=1; b=2"}


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_values_are_latin_1(kind: Kind) -> None:
    fields = collect(kind, CASES["latin-1 values"])
    assert fields.take() == {"HTTP_X_NAME": "café", "HTTP_X_RAW": "\x80\xff"}


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
@pytest.mark.parametrize(
    ("headers", "expect"),
    [
        ([(b"Expect", b"100-continue")], True),
        ([(b"EXPECT", b"100-CONTINUE")], True),
        ([(b"Expect", b"100-continued")], False),
        ([(b"Expect", b"200-ok")], False),
        ([(b"X-Expect", b"100-continue")], False),
        ([(b"Host", b"x")], False),
    ],
)
def test_expect_is_seen_only_as_100_continue(kind: Kind, headers: Headers, expect: bool) -> None:
    assert collect(kind, headers).expect is expect


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_take_and_clear_start_afresh(kind: Kind) -> None:
    fields = collect(kind, CASES["expect"])
    taken = fields.take()
    assert taken == {"HTTP_EXPECT": "100-Continue", "CONTENT_LENGTH": "4"}
    assert (fields.fields, fields.expect) == ({}, False)
    fields(b"Host", b"y")
    assert taken == {"HTTP_EXPECT": "100-Continue", "CONTENT_LENGTH": "4"}  # what was taken is the caller's
    fields(b"Expect", b"100-continue")
    fields.clear()
    assert (fields.fields, fields.expect) == ({}, False)


@pytest.mark.parametrize("kind", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
def test_a_name_not_remembered_goes_to_key_of(kind: Kind) -> None:
    asked: list[bytes] = []

    def key_of(name: bytes) -> str:
        asked.append(name)
        return "HTTP_" + name.decode().upper()

    fields = kind({b"Known": "HTTP_KNOWN"}, key_of)
    fields(b"Known", b"1")
    fields(b"New", b"2")
    assert asked == [b"New"]
    assert fields.take() == {"HTTP_KNOWN": "1", "HTTP_NEW": "2"}


@pytest.mark.parametrize("name", CASES.keys())
def test_the_compiled_and_the_python_collectors_agree(name: str) -> None:
    assert collect(CFields, CASES[name]).take() == collect(server.FieldsPy, CASES[name]).take()


def test_the_compiled_collector_refuses_what_httptools_never_passes() -> None:
    fields: Any = CFields(server._ENVIRON_KEYS, server.environ_key)  # Any: called wrongly on purpose
    for args in [(b"only-a-name",), ("str", b"value"), (b"name", "str"), (b"a", b"b", b"c")]:
        with pytest.raises(TypeError):
            fields(*args)
    kind: Any = CFields
    with pytest.raises(TypeError):
        kind({}, "not callable")
    with pytest.raises(TypeError):
        kind({}, lambda name: 1)(b"x", b"y")  # a key must be a str
    bare = kind.__new__(kind)  # never initialized: refuses, without crashing
    for use in (bare.take, bare.clear, lambda: bare.fields, lambda: bare(b"x", b"y")):
        with pytest.raises(TypeError):
            use()
    assert fields.fields == {}


def test_every_runtime_interpreter_has_the_compiled_collector() -> None:
    found = interpreters.installed().found
    assert found, "no runtime interpreter is installed (make runtimes)"
    for version, interpreter in found.items():
        program = "from runtime.worker.server import Fields; print(Fields.__module__)"
        used = subprocess.run(
            [str(interpreter.python), "-c", program],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert used == "runtime.worker._fields", f"python {version} uses {used}: make workerext"
