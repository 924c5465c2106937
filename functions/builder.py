"""The build step: a draft's source, checked, with its requirements installed into it, zipped.

Checked: every ``.py`` file compiles with the environment's Python (a syntax error fails the build
with Python's own report: file, line, caret). A draft of one ``.py`` file alone deploys as that file,
as Fission's ``--code`` does; anything else as a zip.

As Fission's Python builder does: when the source has a non-empty ``requirements.txt``,
``pip install -r requirements.txt -t <source>``, and then the whole source folder is the deployment.
The build task (``functions.services.builds``) runs ``build`` in a fresh temporary ``workdir``.

pip installs wheels only (``--only-binary=:all:``: no package code runs at install time), in the
sandbox of ``functions.build_sandbox`` (its own uid, namespaces and read-only root, egress to the
package index only), with a time limit and a scrubbed environment (no portal secrets in it).
Requirement lines that are options, URLs or paths are refused, at upload and again here.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from packaging.requirements import InvalidRequirement, Requirement

from core.errors import ValidationFailed
from functions import compilecheck
from functions.archives import (
    CODE_INVALID,
    CODE_TOO_LARGE,
    CODE_TOO_MANY_FILES,
    DEFAULT_LIMITS,
    ArchiveLimits,
    check_path,
    make_zip,
    refused,
    safe_extract,
    sha256,
)
from functions.build_sandbox import BuildSandbox

REQUIREMENTS = "requirements.txt"
CODE_REQUIREMENTS_REFUSED = "requirements_refused"
# Wheels only: installing a wheel runs none of its code, building an sdist runs its setup.py.
PIP_OPTIONS = (
    "--disable-pip-version-check", "--no-input", "--no-cache-dir", "--no-compile", "--only-binary=:all:",
)  # fmt: skip
# The machine's package index configuration (and how to reach it) is kept; nothing else is.
INHERITED_ENVIRONMENT = (
    "PATH", "LANG", "LC_ALL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT",
    "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_TRUSTED_HOST", "PIP_CONFIG_FILE",
    "PIP_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
)  # fmt: skip
# The only option a requirements file may use, on a requirement's own line: its hashes. A line of
# options (-e, -r, -c, -i, -f, --no-binary, --pre, ...) is refused: the build decides how it installs.
_REQUIREMENT_OPTIONS = {"--hash": True}
_LOCAL_FILE_SUFFIXES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz")
MAX_LOG_CHARS = 1_000_000
_EXEC_FAILED = (126, 127)  # util-linux's exit codes for a command it could not execute
_KILL_GRACE_S = 5.0
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's req_file.COMMENT_RE


@dataclass(frozen=True)
class SourceSpec:
    """What to build: inline ``files`` (path -> text, the editor) or an uploaded zip ``archive``.

    ``requirements``, when not None, is written to ``requirements.txt`` and overrides the source's.
    """

    files: dict[str, str] | None = None
    archive: bytes | None = None
    requirements: str | None = None

    def __post_init__(self) -> None:
        if self.files is not None and self.archive is not None:
            raise ValueError("a source has files or an archive, not both")


@dataclass(frozen=True)
class BuildResult:
    archive: bytes
    sha256: str
    size: int
    log: str
    is_zip: bool = True  # False: ``archive`` is a single .py file (``single_file_name``)


class BuildFailed(Exception):
    """The build could not finish: ``reason`` is one line for people, ``log`` is everything so far."""

    def __init__(self, log: str, reason: str) -> None:
        super().__init__(reason)
        self.log = log
        self.reason = reason


class _Log:
    """The build log: every line goes to ``on_log`` (in the caller's thread) and is kept, up to
    ``MAX_LOG_CHARS``; later lines are counted, so a noisy build cannot exhaust memory."""

    def __init__(self, on_log: Callable[[str], None] | None) -> None:
        self.on_log = on_log
        self.lines: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, line: str, *, always: bool = False) -> None:
        if self.size + len(line) > MAX_LOG_CHARS and not always:
            self.dropped += 1
            return
        self.lines.append(line)
        self.size += len(line) + 1
        if self.on_log is not None:
            self.on_log(line)

    @property
    def text(self) -> str:
        omitted = [f"[{self.dropped} more lines not kept]"] if self.dropped else []
        return "\n".join([*self.lines, *omitted])

    def fail(self, reason: str) -> BuildFailed:
        self.write(f"error: {reason}", always=True)
        return BuildFailed(self.text, reason)


def build(
    source: SourceSpec,
    *,
    workdir: Path,
    sandbox: BuildSandbox | None,
    timeout_s: float = 300,
    on_log: Callable[[str], None] | None = None,
    pip_index_args: list[str] | None = None,
    pip_command: list[str] | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    python: Path | None = None,
) -> BuildResult:
    """Builds ``source`` in ``workdir/source`` and returns the deployment archive with its sha256:
    the zip of the source folder, or the file itself for a single ``.py`` file (``_package``).

    With ``python`` (the environment's interpreter, ``functions.runtimes``), every ``.py`` file must
    first compile with it (``functions.compilecheck``), and pip is that interpreter's. Installs
    ``requirements.txt`` (when it names packages) with pip into the source folder within
    ``timeout_s``, in ``sandbox`` (None: as this process's user, for a machine that builds only its
    owner's code); ``pip_index_args`` are extra pip options from the operator (trusted);
    ``pip_command``, for tests, is the argv run instead of pip (sandboxed the same way). Every log
    line goes to ``on_log`` in the calling thread; the log ends with a summary line. The same source
    and index give the same bytes. Raises ``BuildFailed`` for any refusal or failure; leaves files in
    ``workdir``, which the caller removes.
    """
    log = _Log(on_log)
    target = workdir / "source"
    try:
        _materialize(source, target, limits, log)
        if python is not None:
            _compile_check(target, python, log)
        requirements = _requirement_lines(target, log)
        if requirements:
            argv = pip_command or _pip_argv(target, pip_index_args or [], python)
            runner = _Runner(sandbox, workdir, tuple(pip_index_args or ()), python)
            _install(argv, runner=runner, timeout_s=timeout_s, log=log)
        archive, count, is_zip = _package(source, target, log)
    except ValidationFailed as exc:
        raise log.fail(exc.message) from None
    digest = sha256(archive)
    log.write(f"built {count} files, {len(archive)} bytes, sha256 {digest}", always=True)
    return BuildResult(archive=archive, sha256=digest, size=len(archive), log=log.text, is_zip=is_zip)


def single_file_name(files: dict[str, str] | None) -> str | None:
    """The file name when ``files`` (a draft from the editor or a single upload) is exactly one
    top-level ``.py`` file: it deploys as that file alone, as ``fission function create --code
    greet.py`` does, and Fission then uses only the function part of the entrypoint."""
    if files and len(files) == 1:
        (name,) = files
        if name.endswith(".py") and "/" not in name:
            return name
    return None


def _package(source: SourceSpec, target: Path, log: _Log) -> tuple[bytes, int, bool]:
    """The deployment archive, its file count and whether it is a zip: the file itself for a
    single ``.py`` file with nothing to install (``single_file_name``), else the zip of the whole
    source folder."""
    single = single_file_name(source.files) if source.requirements is None else None
    if single is not None and [p.name for p in target.iterdir()] == [single]:
        log.write(f"{single} is the only file: deployed as the file itself (Fission's single-file code)")
        return (target / single).read_bytes(), 1, False
    archive = make_zip(target)
    return archive, _file_count(archive), True


def _compile_check(target: Path, python: Path, log: _Log) -> None:
    """Every ``.py`` file of the source must compile with the environment's Python
    (``functions.compilecheck``); BuildFailed with Python's report of each that does not."""
    try:
        report = compilecheck.check(compilecheck.python_files_in(target), python)
    except compilecheck.CheckUnavailable as exc:
        raise log.fail(f"the code could not be checked: {exc}") from None
    if not report.problems:
        log.write(f"compiled {report.checked} Python files with Python {report.version}: no syntax errors")
        return
    for problem in report.problems:
        for line in problem.text.rstrip("\n").splitlines():
            log.write(line, always=True)
    first, more = report.problems[0], len(report.problems) - 1
    raise log.fail(first.summary + (f" (and {more} more file{'s' if more > 1 else ''})" if more else ""))


# --- the source folder ---------------------------------------------------------------------------


def _materialize(source: SourceSpec, target: Path, limits: ArchiveLimits, log: _Log) -> None:
    """Writes the source into ``target`` (emptied first), then the overriding requirements."""
    shutil.rmtree(target, ignore_errors=True)
    if source.archive is not None:
        entries = safe_extract(source.archive, target, limits)
        log.write(f"unpacked {sum(not entry.is_dir for entry in entries)} files from the uploaded archive")
    elif source.files:
        _write_files(source.files, target, limits)
        log.write(f"wrote {len(source.files)} files from the editor")
    else:
        raise log.fail("nothing to build: the draft has no files")
    if source.requirements is not None:
        (target / REQUIREMENTS).write_text(source.requirements, encoding="utf-8")


def _write_files(files: dict[str, str], target: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """Writes inline files (path -> text, UTF-8) into ``target``, created here.

    Raises ``ValidationFailed`` with the archive codes for unsafe names, too many files or bytes,
    and names that clash (``a.py`` and ``./a.py``, or a file used as a folder).
    """
    if len(files) > limits.max_files:
        raise refused(f"{len(files)} files; the limit is {limits.max_files}.", CODE_TOO_MANY_FILES)
    total = sum(len(text.encode()) for text in files.values())
    if total > limits.max_unpacked_bytes:
        raise refused(
            f"The files hold {total} bytes; the limit is {limits.max_unpacked_bytes}.", CODE_TOO_LARGE
        )
    paths = {name: check_path(name, max_length=limits.max_path_length) for name in files}
    target.mkdir(mode=0o755, parents=True)
    for name, text in files.items():
        path = target.joinpath(*paths[name].split("/"))
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8", newline="") as output:
                output.write(text)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise refused(f"{name!r} clashes with another file or folder.", CODE_INVALID) from None


def _file_count(archive: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return sum(not member.is_dir() for member in opened.infolist())


# --- requirements --------------------------------------------------------------------------------


def _requirement_lines(target: Path, log: _Log) -> list[str]:
    """The checked lines of the source's requirements.txt; empty when there is nothing to install."""
    path = target / REQUIREMENTS
    if not path.is_file():
        log.write(f"no {REQUIREMENTS}: nothing to install")
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise log.fail(f"{REQUIREMENTS} is not UTF-8 text") from None
    lines = check_requirements(text)
    if not lines:
        log.write(f"{REQUIREMENTS} names no packages: nothing to install")
    return lines


def check_requirements(text: str) -> list[str]:
    """The meaningful lines of a requirements file (comments and blanks dropped).

    Allows requirement specifiers from the package index (``requests==2.32.0``, ``six``,
    ``foo[bar]>=1; python_version < "3.14"``) and their ``--hash``. Raises ``ValidationFailed``
    (code ``requirements_refused``) naming the first other line: any line of options (editable
    installs, includes, index, link and binary options), URLs, local paths and files,
    ``${VARIABLES}``.
    """
    lines: list[str] = []
    for number, line in _logical_lines(text):
        problem = _line_problem(line)
        if problem:
            message = f"{REQUIREMENTS} line {number}: {line!r} is not allowed: {problem}."
            raise ValidationFailed(
                message, detail={"requirements": [message]}, code=CODE_REQUIREMENTS_REFUSED
            )
        lines.append(line)
    return lines


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, line) exactly as pip reads them (``req_file.preprocess``):
    joined at a trailing backslash unless the line is a comment, comments removed, blanks dropped.
    Reading them differently from pip would let a line hide from the check."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, physical in enumerate(text.splitlines(), start=1):
        is_comment = _COMMENT.match(physical) is not None
        if physical.endswith("\\") and not is_comment:
            start = start if pending else number
            pending.append(physical.strip("\\"))
            continue
        joined = "".join([*pending, " " + physical if is_comment else physical])
        result.append((start if pending else number, joined))
        pending = []
    if pending:
        result.append((start, "".join(pending)))
    stripped = [(number, _COMMENT.sub("", line).strip()) for number, line in result]
    return [(number, line) for number, line in stripped if line]


def _line_problem(line: str) -> str | None:
    """Why a logical line is refused, or None. pip reads a line as a requirement up to the first
    word starting with "-", then options; a line starting with "-" is options only."""
    if "${" in line:
        return "environment variables are not expanded here"
    words = line.split()
    split = next((index for index, word in enumerate(words) if word.startswith("-")), len(words))
    requirement, options = " ".join(words[:split]), words[split:]
    if not requirement:
        return "options are not allowed here: the build installs wheels from the package index only"
    return _options_problem(options) or _requirement_problem(requirement)


def _options_problem(words: list[str]) -> str | None:
    index = 0
    while index < len(words):
        name, has_value = words[index].partition("=")[0], "=" in words[index]
        if name not in _REQUIREMENT_OPTIONS:
            return "only --hash may follow a requirement; other options could reach past the package index"
        index += 2 if _REQUIREMENT_OPTIONS[name] and not has_value else 1
    return None


def _requirement_problem(text: str) -> str | None:
    if text.startswith((".", "/", "~", "file:")) or "://" in text or "\\" in text:
        return "URLs and local paths are not allowed; name a package from the index"
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return "it is not a requirement specifier like 'requests==2.32.0'"
    if requirement.url:
        return "direct references (name @ url) are not allowed; name a package from the index"
    if requirement.name.lower().endswith(_LOCAL_FILE_SUFFIXES):
        return "pip would read it as a local archive file; name a package from the index"
    return None


# --- pip -----------------------------------------------------------------------------------------


def _pip_argv(target: Path, index_args: list[str], python: Path | None) -> list[str]:
    """pip of the environment's Python (its wheels must match the interpreter that imports them);
    the portal's own only when no environment is given (tests of the install itself)."""
    requirements = str(target / REQUIREMENTS)
    return [
        str(python) if python is not None else sys.executable,
        "-m",
        "pip",
        "install",
        *PIP_OPTIONS,
        *index_args,
        "-r",
        requirements,
        "-t",
        str(target),
    ]


@dataclass(frozen=True)
class _Runner:
    """Where the install runs: ``sandbox`` (or unsandboxed), writing only to ``workdir``."""

    sandbox: BuildSandbox | None
    workdir: Path
    index_args: tuple[str, ...]
    python: Path | None = None  # the interpreter the sandbox must hold (None: the portal's)

    @contextlib.contextmanager
    def popen(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
        """The command started (stdout and stderr on one pipe, in a process group of its own)."""
        if self.sandbox is not None:
            with self.sandbox.popen(argv, workdir=self.workdir, cwd=cwd, env=env,
                                    index_args=self.index_args, python=self.python) as process:  # fmt: skip
                yield process
            return
        yield subprocess.Popen(  # noqa: S603 - argv is ours (pip) or a test's, never tenant text
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _install(argv: list[str], *, runner: _Runner, timeout_s: float, log: _Log) -> None:
    """Runs the install in an empty folder of the work directory; BuildFailed when it fails or
    times out."""
    workdir = runner.workdir
    scratch = workdir / "tmp"
    scratch.mkdir(exist_ok=True)
    log.write("$ " + shlex.join(argv))
    try:
        env = _environment(home=workdir, tmp=scratch)
        code = _run(argv, runner=runner, cwd=scratch, env=env, timeout_s=timeout_s, log=log)
    except OSError as exc:  # the command could not start
        raise log.fail(f"pip could not start: {exc}") from None
    if code is None:
        raise log.fail(f"pip install timed out after {timeout_s:g} s")
    if code in _EXEC_FAILED and runner.sandbox is not None:  # in the sandbox, setpriv could not exec it
        raise log.fail(f"pip could not start: {log.lines[-1] if log.lines else code}")
    if code != 0:
        errors = [line for line in log.lines if line.startswith("ERROR:")]
        raise log.fail(f"pip install failed with exit code {code}" + (f": {errors[-1]}" if errors else ""))


def _environment(*, home: Path, tmp: Path) -> dict[str, str]:
    """The environment pip runs in: PATH, the locale, the parent's package index configuration
    (``INHERITED_ENVIRONMENT``), HOME and TMPDIR inside the build, and no portal secrets.

    pip still reads ``/etc/pip.conf``. With HOME moved, it would no longer find the portal user's
    own pip config, so that file is passed as ``PIP_CONFIG_FILE`` unless the parent set one.
    """
    env = {name: os.environ[name] for name in INHERITED_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    user_config = _user_pip_config()
    if user_config is not None:
        env.setdefault("PIP_CONFIG_FILE", str(user_config))
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", PIP_NO_INPUT="1")
    return env


def _user_pip_config() -> Path | None:
    """The portal user's pip config file, where pip looks for it (the XDG one wins over ~/.pip)."""
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (xdg / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        if candidate.is_file():
            return candidate
    return None


def _run(argv: list[str], *, runner: _Runner, cwd: Path, env: dict[str, str], timeout_s: float,
         log: _Log) -> int | None:  # fmt: skip
    """Runs ``argv`` in a new process group, logging its output (stdout and stderr) line by line
    in this thread; returns its exit code, or None when ``timeout_s`` passed first. The whole
    group is killed when this returns, so nothing it started outlives it (in a sandbox: its pid
    namespace ends with it)."""
    with runner.popen(argv, cwd=cwd, env=env) as process:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        reader.start()
        try:
            return _follow(process, lines, log, deadline=time.monotonic() + timeout_s)
        finally:
            _kill_group(process)
            reader.join(_KILL_GRACE_S)
            _drain(lines, log)


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Reader thread: decoded lines of ``stream`` into ``lines``, then None at the end."""
    with stream:
        for raw in iter(lambda: stream.readline(64 * 1024), b""):
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    lines.put(None)


def _follow(
    process: subprocess.Popen[bytes], lines: queue.Queue[str | None], log: _Log, deadline: float
) -> int | None:
    """Logs lines until the output ends (or the process exited and went quiet), then the exit code;
    None at the deadline."""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(remaining, 0.1))
        except queue.Empty:
            if process.poll() is not None:  # exited; a child it left may hold the output open
                return process.returncode
            continue
        if line is None:
            try:
                return process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                return None
        log.write(line)
    return None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _drain(lines: queue.Queue[str | None], log: _Log) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is not None:
            log.write(line)
