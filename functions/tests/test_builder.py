"""The build step, with real subprocesses: pip itself, and small Python programs standing in for it."""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.errors import ValidationFailed
from functions import builder
from functions.archives import sha256
from functions.build_sandbox import BuildSandbox
from functions.builder import BuildFailed, BuildResult, SourceSpec, check_requirements
from testsupport.hostile import redis_address
from testsupport.processes import processes_of

MAIN = "def main():\n    return 'hello'\n"
BUILD_UID = 199_999


@functools.cache
def sandbox() -> BuildSandbox:
    return BuildSandbox(BUILD_UID)


def build(source: SourceSpec, **kwargs: Any) -> BuildResult:
    """A build, sandboxed as the portal runs it."""
    return builder.build(source, sandbox=sandbox(), **kwargs)


def names(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return opened.namelist()


def read(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return opened.read(name)


def python(code: str, *args: str) -> list[str]:
    """A command standing in for pip."""
    return [sys.executable, "-c", code, *args]


def marker_command(marker: Path) -> list[str]:
    """A stand-in for pip that leaves ``marker``: proves whether the install step ran."""
    return python("import pathlib, sys; pathlib.Path(sys.argv[1]).touch()", str(marker))


def wait_gone(uid: int, deadline_s: float = 10) -> bool:
    """Whether every process of ``uid`` is gone before the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not processes_of(uid):
            return True
        time.sleep(0.05)
    return False


# --- sources ---------------------------------------------------------------------------------------


def test_inline_files_without_requirements(tmp_path: Path) -> None:
    lines: list[str] = []
    source = SourceSpec(files={"main.py": MAIN, "lib/util.py": "X = 1\n"})

    result = build(source, workdir=tmp_path, on_log=lines.append)

    assert names(result.archive) == ["lib/", "lib/util.py", "main.py"]
    assert read(result.archive, "main.py") == MAIN.encode()
    assert result.sha256 == sha256(result.archive)
    assert result.size == len(result.archive)
    assert result.log == "\n".join(lines)
    assert lines[-1] == f"built 2 files, {result.size} bytes, sha256 {result.sha256}"
    assert "no requirements.txt: nothing to install" in lines


def test_the_same_source_builds_the_same_bytes(tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN})
    first = build(source, workdir=tmp_path / "one")
    second = build(source, workdir=tmp_path / "two")
    assert first.sha256 == second.sha256


def test_uploaded_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", MAIN)
        archive.writestr("pkg/__init__.py", "")
    result = build(SourceSpec(archive=buffer.getvalue()), workdir=tmp_path)
    assert names(result.archive) == ["main.py", "pkg/", "pkg/__init__.py"]
    assert "unpacked 2 files from the uploaded archive" in result.log


def test_unsafe_archive_fails_the_build(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", "x")
    with pytest.raises(BuildFailed) as error:
        build(SourceSpec(archive=buffer.getvalue()), workdir=tmp_path)
    assert "'../evil.py'" in error.value.reason
    assert str(error.value) == error.value.reason
    assert error.value.log.endswith(f"error: {error.value.reason}")
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    "files",
    [{"../evil.py": "x"}, {"/abs.py": "x"}, {"a.py": "x", "./a.py": "y"}, {"lib": "x", "lib/a.py": "y"}],
)
def test_unsafe_inline_files_fail_the_build(files: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(BuildFailed):
        build(SourceSpec(files=files), workdir=tmp_path)


def test_nothing_to_build(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="nothing to build"):
        build(SourceSpec(), workdir=tmp_path)
    with pytest.raises(ValueError, match="not both"):
        SourceSpec(files={"main.py": MAIN}, archive=b"PK")


def test_requirements_override_the_sources(tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN, "requirements.txt": "six\n"}, requirements="# none\n")
    result = build(source, workdir=tmp_path, pip_command=marker_command(tmp_path / "ran"))
    assert read(result.archive, "requirements.txt") == b"# none\n"
    assert not (tmp_path / "ran").exists()
    assert "requirements.txt names no packages: nothing to install" in result.log


# --- pip -------------------------------------------------------------------------------------------


def test_requirements_are_installed_into_the_source(tmp_path: Path) -> None:
    # The real pip, against this machine's package index configuration.
    lines: list[str] = []
    source = SourceSpec(files={"main.py": "import six\n", "requirements.txt": "six==1.16.0\n"})

    result = build(source, workdir=tmp_path / "one", on_log=lines.append)

    assert "six.py" in names(result.archive)
    assert "six-1.16.0.dist-info/METADATA" in names(result.archive)
    assert not [name for name in names(result.archive) if name.endswith(".pyc")]
    assert any(line.startswith("$ ") and " -m pip install " in line for line in lines)
    assert "Successfully installed six-1.16.0" in result.log
    assert result.log == "\n".join(lines)
    assert build(source, workdir=tmp_path / "two").sha256 == result.sha256


def test_pip_failure(tmp_path: Path) -> None:
    command = python("import sys; print('ERROR: No matching distribution found for nope'); sys.exit(3)")
    source = SourceSpec(files={"main.py": MAIN}, requirements="nope\n")
    with pytest.raises(BuildFailed) as error:
        build(source, workdir=tmp_path, pip_command=command)
    assert error.value.reason == (
        "pip install failed with exit code 3: ERROR: No matching distribution found for nope"
    )
    assert "ERROR: No matching distribution found for nope" in error.value.log


def test_pip_runs_in_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_SECRET_KEY", "do-not-leak")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/etc/portal/pip.conf")
    command = python("import json, os; print('ENV ' + json.dumps(dict(os.environ)))")

    result = build(
        SourceSpec(files={"main.py": MAIN}, requirements="six\n"), workdir=tmp_path, pip_command=command
    )

    env = json.loads(next(line for line in result.log.splitlines() if line.startswith("ENV "))[4:])
    assert env["HOME"] == str(tmp_path)
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_CONFIG_FILE"] == "/etc/portal/pip.conf"
    assert env["PATH"] == os.environ["PATH"]
    assert "PORTAL_SECRET_KEY" not in env
    assert "DATABASE_URL" not in env
    assert set(env) <= {
        *builder.INHERITED_ENVIRONMENT,
        "HOME",
        "TMPDIR",
        "PYTHONNOUSERSITE",
        "PYTHONUNBUFFERED",
    } | {
        "PIP_NO_INPUT",
        "LC_CTYPE",  # set by Python itself in a C locale (PEP 538)
        "PWD",  # set by bubblewrap's --chdir: the directory pip runs in
    }


def test_a_command_that_cannot_start(tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN}, requirements="six\n")
    with pytest.raises(BuildFailed, match="pip could not start"):
        build(source, workdir=tmp_path, pip_command=[str(tmp_path / "no-such-program")])


def test_output_is_logged_line_by_line_in_the_calling_thread(tmp_path: Path) -> None:
    seen: list[tuple[int, str]] = []
    command = python("print('one'); print('two', flush=True); import sys; print('three', file=sys.stderr)")

    build(
        SourceSpec(files={"main.py": MAIN}, requirements="six\n"),
        workdir=tmp_path,
        pip_command=command,
        on_log=lambda line: seen.append((threading.get_ident(), line)),
    )

    assert {ident for ident, _ in seen} == {threading.get_ident()}
    logged = [line for _, line in seen]
    assert logged[logged.index("one") :][:3] == ["one", "two", "three"]


def test_timeout(tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN}, requirements="six\n")
    started = time.monotonic()
    with pytest.raises(BuildFailed) as error:
        build(source, workdir=tmp_path, timeout_s=0.5, pip_command=python("import time; time.sleep(30)"))
    assert error.value.reason == "pip install timed out after 0.5 s"
    assert time.monotonic() - started < 10


GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
print("started", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = python(GRANDCHILD, str(pidfile), "60")
    with pytest.raises(BuildFailed, match="timed out"):
        build(
            SourceSpec(files={"main.py": MAIN}, requirements="six\n"),
            workdir=tmp_path,
            timeout_s=3,
            pip_command=command,
        )
    assert pidfile.read_text()  # the grandchild had started
    assert wait_gone(BUILD_UID)


def test_a_child_left_behind_neither_blocks_nor_survives_the_build(tmp_path: Path) -> None:
    # The command exits at once but its child keeps the output pipe open.
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    result = build(
        SourceSpec(files={"main.py": MAIN}, requirements="six\n"),
        workdir=tmp_path,
        timeout_s=60,
        pip_command=python(GRANDCHILD, str(pidfile), "0"),
    )
    assert time.monotonic() - started < 30
    assert "started" in result.log.splitlines()
    assert wait_gone(BUILD_UID)


# --- requirement lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "-e git+https://github.com/psf/requests#egg=requests",
        "--editable=.",
        "--index-url https://evil.example/simple",
        "--index-url=https://evil.example/simple",
        "-i https://evil.example/simple",
        "-ihttps://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "--find-links /etc",
        "-f https://evil.example/links",
        "--trusted-host evil.example",
        "-r /etc/passwd",
        "--requirement other.txt",
        "-c constraints.txt",
        "--no-index",
        "six==1.16.0 --index-url https://evil.example/simple",
        "./local",
        "../outside",
        "/abs/package",
        "~/package",
        "file:///etc/passwd",
        "git+https://github.com/psf/requests",
        "https://evil.example/x.whl",
        "six @ https://evil.example/six.whl",
        "six @ file:///tmp/six.whl",
        "six-1.16.0-py2.py3-none-any.whl",
        "package.tar.gz",
        "six==${HOME}",
        "not a requirement!",
        "--no-binary :all:",
        "--no-binary=six",
        "--only-binary :none:",
        "--only-binary :all:",
        "--pre",
        "--prefer-binary",
        "--require-hashes",
        "six==1.16.0 --no-binary six",
    ],
)
def test_refused_requirement_lines(line: str, tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN}, requirements=f"six==1.16.0\n# a comment\n{line}\n")
    with pytest.raises(BuildFailed) as error:
        build(source, workdir=tmp_path, pip_command=marker_command(tmp_path / "ran"))
    assert error.value.reason.startswith(f"requirements.txt line 3: {line!r} is not allowed")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "text",
    [
        "# a comment ending in a backslash is not continued \\\n-e .\n",
        "six \\\n  # a comment ends the continuation\n-e .\n",
        "six \\\n-e .\n",
        "six\r\n--index-url https://evil.example/simple\r\n",
    ],
)
def test_lines_are_read_as_pip_reads_them(text: str) -> None:
    with pytest.raises(ValidationFailed):
        check_requirements(text)


def test_allowed_requirement_lines() -> None:
    text = (
        "# pinned\n"
        "requests==2.32.0\n"
        "six  # inline comment\n"
        "foo[bar]>=1\n"
        'tomli>=1; python_version < "3.11"\n'
        "flask==3.1.3 \\\n"
        "    --hash=sha256:0123456789abcdef\n"
        "\n"
    )
    assert check_requirements(text) == [
        "requests==2.32.0",
        "six",
        "foo[bar]>=1",
        'tomli>=1; python_version < "3.11"',
        "flask==3.1.3     --hash=sha256:0123456789abcdef",
    ]


def test_refusal_is_a_validation_error_with_the_line() -> None:
    with pytest.raises(ValidationFailed) as error:
        check_requirements("six\n-e .\n")
    assert error.value.code == "requirements_refused"
    assert error.value.detail == {"requirements": [error.value.message]}
    assert "line 2" in error.value.message


# --- the sandbox -----------------------------------------------------------------------------------

INSIDE = """
import json, os, socket, sys

def attempt(action):
    try:
        return action()
    except Exception as exc:
        return "refused: " + type(exc).__name__

def connect(host, port):
    socket.create_connection((host, int(port)), timeout=5).close()
    return "connected"

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print("INSIDE " + json.dumps({
    "uid": os.getuid(),
    "caps": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
    "shadow": attempt(lambda: open("/etc/shadow").read()),
    "portal": attempt(lambda: open(sys.argv[1]).read()),
    "write_root": attempt(lambda: open("/evil", "w")),
    "write_workdir": attempt(lambda: open(sys.argv[2], "w").write("ok")),
    "index": attempt(lambda: connect("pypi.org", 443)),
    "redis": attempt(lambda: connect(sys.argv[3], sys.argv[4])),
    "outside": attempt(lambda: connect(sys.argv[5], sys.argv[6])),
}))
"""


def test_pip_runs_sandboxed_with_egress_to_the_package_index_only(tmp_path: Path, outside_host: Any) -> None:
    redis_host, redis_port = redis_address()
    portal_file = Path(__file__).resolve().parents[2] / "portal" / "settings.py"
    command = python(INSIDE, str(portal_file), str(tmp_path / "written"), redis_host, str(redis_port),
                     outside_host.address, str(outside_host.port))  # fmt: skip

    result = build(SourceSpec(files={"main.py": MAIN}, requirements="six\n"), workdir=tmp_path,
                   pip_command=command)  # fmt: skip

    inside = json.loads(next(line for line in result.log.splitlines() if line.startswith("INSIDE "))[7:])
    assert inside["uid"] == BUILD_UID
    assert inside["caps"] == "0000000000000000"
    assert inside["no_new_privs"] == "1"
    assert len(inside["processes"]) <= 3  # its own pid namespace: bubblewrap's init, python
    assert inside["write_workdir"] == 2
    assert inside["index"] == "connected"  # pinned in its /etc/hosts, routed
    for refused in ("shadow", "portal", "write_root", "redis", "outside"):
        assert inside[refused].startswith("refused: "), (refused, inside[refused])


def test_pip_installs_wheels_only(tmp_path: Path) -> None:
    result = build(SourceSpec(files={"main.py": MAIN}, requirements="six==1.16.0\n"), workdir=tmp_path)
    command = next(line for line in result.log.splitlines() if line.startswith("$ "))
    assert " --only-binary=:all: " in command


# --- the environment's Python: syntax check, single files, pip -------------------------------------


def runtime_python(version: str) -> Path:
    from functions import runtimes

    path = runtimes.interpreter(version)
    assert path.exists(), f"{path} is missing: make setup builds the runtimes"
    return path


def test_a_single_py_file_deploys_as_the_file_itself(tmp_path: Path) -> None:
    result = build(SourceSpec(files={"greet.py": MAIN}), workdir=tmp_path / "one")
    assert (result.archive, result.is_zip) == (MAIN.encode(), False)
    assert "greet.py is the only file: deployed as the file itself" in result.log
    # With anything beside it (requirements, another file), it is a zip as before.
    with_more = build(SourceSpec(files={"greet.py": MAIN, "util.py": "X = 1\n"}), workdir=tmp_path / "two")
    assert (names(with_more.archive), with_more.is_zip) == (["greet.py", "util.py"], True)


def test_a_syntax_error_fails_the_build_with_file_line_and_caret(tmp_path: Path) -> None:
    source = SourceSpec(files={"main.py": MAIN, "lib/bad.py": "def f():\n    return (1,\n"})
    with pytest.raises(BuildFailed) as failed:
        build(source, workdir=tmp_path, python=runtime_python("3.13"))
    assert failed.value.reason == "lib/bad.py, line 2: '(' was never closed"
    assert '  File "lib/bad.py", line 2\n    return (1,\n           ^\nSyntaxError:' in failed.value.log


def test_the_check_uses_the_environments_python(tmp_path: Path) -> None:
    generic = SourceSpec(files={"main.py": "def first[T](items: list[T]) -> T:\n    return items[0]\n"})
    result = build(generic, workdir=tmp_path / "new", python=runtime_python("3.12"))
    assert "compiled 1 Python files with Python 3.12: no syntax errors" in result.log
    with pytest.raises(BuildFailed) as failed:  # PEP 695 generics are a syntax error before 3.12
        build(generic, workdir=tmp_path / "old", python=runtime_python("3.11"))
    assert failed.value.reason.startswith("main.py, line 1:")


def test_pip_is_the_environments_own(tmp_path: Path) -> None:
    python = runtime_python("3.12")
    lines: list[str] = []
    source = SourceSpec(files={"main.py": "import six\n", "requirements.txt": "six==1.16.0\n"})
    result = build(source, workdir=tmp_path, python=python, on_log=lines.append)
    assert any(line.startswith(f"$ {python} -m pip install ") for line in lines), lines
    assert "Successfully installed six-1.16.0" in result.log


def test_a_missing_interpreter_fails_the_build_saying_so(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed) as failed:
        build(SourceSpec(files={"main.py": MAIN}), workdir=tmp_path, python=tmp_path / "no-python")
    assert failed.value.reason.startswith("the code could not be checked: ")
    assert "make setup" in failed.value.reason
