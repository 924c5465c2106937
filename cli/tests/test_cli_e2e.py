"""`faas` end to end: the installed console script in a subprocess, from a clean HOME, over real
HTTP to the suite's live portal (ASGI server, Celery worker, local runtime)."""

from __future__ import annotations

import json
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

# `make setup` installs it (pip install -e .); the test drives what a user runs.
FAAS = Path(sys.executable).parent / "faas"

MAIN = (
    "from flask import request\n\nfrom greet import greet\n\n\ndef main():\n"
    "    body = request.get_data(as_text=True)\n    print('cli log', body)\n    return greet(body)\n"
)


class Shell:
    """A clean shell: HOME and XDG_CONFIG_HOME in a temporary folder, no FAAS_* variables."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
        self.env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), COLUMNS="200")

    def __call__(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Any:
        assert FAAS.exists(), f"{FAAS} is missing: run make setup"
        return subprocess.run(
            [str(FAAS), *args], input=stdin, capture_output=True, text=True, timeout=300,
            cwd=self.home, env={**self.env, **(env or {})},
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(FAAS), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=self.home, env=self.env,
        )  # fmt: skip


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return str(result.stdout)


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    home = tmp_path / "home"
    home.mkdir()
    return Shell(home)


def _login(shell: Shell, url: str, token: str) -> None:
    out = ok(shell("login", "--url", url, "--tenant", "acme", "--token", "-", stdin=token + "\n"))
    assert "as bob in acme (role developer)" in out


def test_login_create_push_deploy_test_and_logs(world, token_for, stack, live_server_url, shell):
    _login(shell, live_server_url, token_for(world.bob, world.acme, "developer"))
    path = shell.home / ".config" / "faas" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    created = json.loads(
        ok(shell("fn", "create", "clihello", "--executor", "poolmgr", "--timeout", "30", "-o", "json"))
    )
    assert (created["name"], created["executor"], created["timeout_s"]) == ("clihello", "poolmgr", 30)
    code = shell.home / "code"
    code.mkdir()
    (code / "main.py").write_text(MAIN)
    (code / "greet.py").write_text("def greet(who):\n    return 'hi ' + who\n")
    assert "Pushed code.zip (2 file(s)) to clihello" in ok(shell("fn", "code", "push", "clihello", str(code)))
    ok(shell("trigger", "http", "create", "clihello", "clihello", "--path", "/clihello", "--method", "POST"))

    deployed = shell("fn", "deploy", "clihello", "--wait", "--timeout", "120")
    assert "clihello is live" in ok(deployed)
    assert "clihello: applying" in deployed.stderr  # the steps, as they happen
    assert "clihello: live" in deployed.stderr

    called = ok(shell("fn", "test", "clihello", "--data", "-", stdin="panel"))
    assert "Status: 200" in called
    assert "hi panel" in called
    assert "cli log panel" in called  # the call's own log line
    invocation = json.loads(ok(shell("fn", "test", "clihello", "-d", "json", "-o", "json")))
    assert (invocation["status"], invocation["response_body"]) == (200, "hi json")

    _follow_sees_a_new_call(shell)

    listed = json.loads(ok(shell("fn", "list", "--output", "json")))
    assert [f["name"] for f in listed] == ["clihello"]
    assert yaml.safe_load(ok(shell("fn", "get", "clihello", "-o", "yaml")))["last_deployment_state"] == "live"
    assert "clihello" in ok(shell("fn", "list"))  # the table


def _follow_sees_a_new_call(shell: Shell) -> None:
    """`fn logs --follow` prints a call's line made after it started, until terminated."""
    follower = shell.popen("fn", "logs", "clihello", "--follow", "--since", "1h", "--interval", "0.3")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(follower, lines), daemon=True).start()
    try:
        _wait_for_line(lines, "cli log panel", follower)  # the earlier call: it has started
        ok(shell("fn", "test", "clihello", "--data", "followed-42"))
        _wait_for_line(lines, "cli log followed-42", follower)
    finally:
        follower.terminate()
        follower.wait(10)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """Each line the process prints, into ``lines`` (a thread: reading a pipe blocks)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)


def _wait_for_line(lines: queue.Queue[str], text: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if text in lines.get(timeout=0.5):
                return
        except queue.Empty:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
    pytest.fail(f"`fn logs --follow` did not print {text!r}")


def test_exit_codes_and_errors_in_words(world, token_for, live_server_url, shell):
    _login(shell, live_server_url, token_for(world.bob, world.acme, "developer"))
    missing = shell("fn", "get", "nope")
    assert missing.returncode == 4, missing.stderr
    assert missing.stderr.startswith("Error: ")
    assert "Traceback" not in missing.stderr

    ok(shell("fn", "create", "dup"))
    taken = shell("fn", "create", "dup")
    assert taken.returncode == 5, taken.stderr
    assert "name: " in taken.stderr  # the API's detail, naming the field

    bad = shell("fn", "list", env={"FAAS_TOKEN": "fpt_not-a-token"})  # the environment overrides login
    assert bad.returncode == 3, bad.stderr

    down = shell("--url", "http://127.0.0.1:9", "fn", "list")  # a global option
    assert down.returncode == 6, down.stderr
    assert "Cannot reach http://127.0.0.1:9" in down.stderr

    refused = shell("fn", "delete", "dup")  # no terminal, no --yes
    assert refused.returncode == 2
    assert "deleted" not in ok(shell("fn", "get", "dup"))
    assert "Deleted dup." in ok(shell("fn", "delete", "dup", "--yes"))
    assert shell("fn", "get", "dup").returncode == 4

    assert "Removed" in ok(shell("logout"))
    assert shell("fn", "list").returncode == 3


def test_viewer_token_cannot_write(world, token_for, live_server_url, shell):
    out = ok(shell("login", "--url", live_server_url, "--tenant", "acme", "--token",
                   token_for(world.vera, world.acme, "viewer")))  # fmt: skip
    assert "(role viewer)" in out
    assert ok(shell("fn", "list")).strip() == "(none)"
    denied = shell("fn", "create", "nope")
    assert denied.returncode == 3, denied.stderr


def test_console_script_help():
    result = subprocess.run([str(FAAS), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Exit codes: 0 ok" in " ".join(result.stdout.split())
