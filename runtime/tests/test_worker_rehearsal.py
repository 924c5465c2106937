"""A forked worker's rehearsal (runtime.worker.zygote.rehearse) goes through the real request
path and leaves nothing behind: no context pushed, no output, the app as it was."""

from __future__ import annotations

import flask
import pytest

from runtime.worker import server
from runtime.worker.zygote import rehearse


def test_the_rehearsal_takes_the_request_path_and_leaves_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    server._ENVIRON_KEYS.clear()
    app = server.new_app()
    before = (dict(app.config), list(app.logger.handlers), app.response_class)

    rehearse(app)

    assert b"X-Fission-Function-Name" in server._ENVIRON_KEYS  # the router's headers were parsed
    assert not flask.has_app_context()
    assert not flask.has_request_context()
    assert (dict(app.config), list(app.logger.handlers), app.response_class) == before
    assert capfd.readouterr() == ("", "")
