"""The worker's short cut for ``str`` and ``bytes`` return values gives exactly the bytes Flask's
own path gives (``make_response`` and ``buffer_response``), and stands aside whenever Flask would
answer otherwise."""

from __future__ import annotations

import io
from typing import Any

import flask
import pytest

from runtime.worker.server import Reply, buffer_response, new_app, render, text_or_bytes_reply


def environ(method: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }  # fmt: skip


def flask_reply(app: flask.Flask, value: object, method: str) -> Reply:
    env = environ(method)
    with app.request_context(env):
        return buffer_response(app.make_response(value), env)  # type: ignore[arg-type]


VALUES = ["hello, world", "", "héllo ☃ \U0001f600", b"raw \x00\xff bytes", b"", "x" * 100_000]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{type(v).__name__}{len(v)}")
def test_the_short_cut_gives_what_flask_gives(value: str | bytes, method: str) -> None:
    app = new_app()

    with app.request_context(environ(method)):
        fast = text_or_bytes_reply(app, value, method)

    assert fast is not None
    assert fast == flask_reply(app, value, method)
    head = method == "HEAD"
    assert render(fast, "rid", True, head) == render(flask_reply(app, value, method), "rid", True, head)


@pytest.mark.parametrize("value", [{"a": 1}, ["a"], ("body", 201), ("body", {"X-A": "b"}), 7, None,
                                   bytearray(b"x"), flask.Response("r")])  # fmt: skip
def test_other_values_are_left_to_flask(value: object) -> None:
    assert text_or_bytes_reply(new_app(), value, "GET") is None


class StrSubclass(str):
    pass


def test_a_str_subclass_is_left_to_flask() -> None:
    assert text_or_bytes_reply(new_app(), StrSubclass("x"), "GET") is None


def test_an_app_with_another_response_class_is_left_to_flask() -> None:
    class Plain(flask.Response):
        default_mimetype = "text/plain"

    app = new_app()
    app.response_class = Plain

    assert text_or_bytes_reply(app, "hi", "GET") is None
    assert b"text/plain" in flask_reply(app, "hi", "GET").head


def test_a_changed_default_type_is_left_to_flask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flask.Response, "default_mimetype", "text/plain")

    assert text_or_bytes_reply(new_app(), "hi", "GET") is None
