"""Does every ``.py`` file of a function's source compile, with the Python it will run on?

A syntax error found here is reported with its file, line and caret, on save (the editor and the
API) and as a failed build, instead of surfacing as a function that never serves.

The check runs ``compile()`` (the parser and the bytecode compiler, none of the code) in a
subprocess of the environment's own interpreter (``functions.runtimes``): grammar differs between
versions (``def f[T]()`` is valid on 3.12, an error on 3.11), so the portal's own Python cannot
judge. The subprocess is isolated (``-I``), gets only the files on stdin, and is bounded in time
and memory (a source can make the parser recurse deeply or allocate a lot).
"""

from __future__ import annotations

import json
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 30.0
MEMORY_BYTES = 1024 * 1024 * 1024

# Run by the environment's interpreter: reads {"path": "text"} on stdin, prints one JSON list.
_CHECKER = r"""
import json, sys, traceback
problems = []
for path, text in json.load(sys.stdin).items():
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        problems.append({"file": path, "line": exc.lineno, "column": exc.offset, "message": exc.msg,
                         "text": "".join(traceback.format_exception_only(exc))})
    except (ValueError, MemoryError, RecursionError) as exc:
        message = str(exc) or type(exc).__name__
        problems.append({"file": path, "line": None, "column": None, "message": message,
                         "text": f"{path}: {type(exc).__name__}: {message}\n"})
json.dump({"version": "%d.%d" % sys.version_info[:2], "problems": problems}, sys.stdout)
"""


class CheckUnavailable(Exception):
    """The interpreter is missing or the check itself failed (not the user's code)."""


@dataclass(frozen=True)
class Problem:
    """A file that does not compile. ``text`` is Python's own report: the ``File "main.py", line 3``
    header, the source line, the caret and ``SyntaxError: ...``."""

    file: str
    line: int | None
    column: int | None
    message: str
    text: str

    @property
    def summary(self) -> str:
        """One line: ``main.py, line 3: '(' was never closed``."""
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message,
                "text": self.text}  # fmt: skip


def python_files(files: dict[str, str]) -> dict[str, str]:
    return {path: text for path, text in sorted(files.items()) if path.endswith(".py")}


def python_files_in(root: Path) -> dict[str, str]:
    """The ``.py`` files under ``root`` (relative path -> text; undecodable bytes replaced, so the
    parser reports them where they are)."""
    found = sorted(p for p in root.rglob("*.py") if p.is_file() and not p.is_symlink())
    return {str(p.relative_to(root)): p.read_bytes().decode("utf-8", "replace") for p in found}


@dataclass(frozen=True)
class Report:
    version: str  # of the interpreter that compiled ("3.13"); "" when there was nothing to compile
    checked: int
    problems: list[Problem]


def check(files: dict[str, str], python: Path) -> Report:
    """Compile the ``.py`` files among ``files`` (path -> text) with ``python``.

    Raises ``CheckUnavailable`` when ``python`` does not exist or the check does not finish.
    """
    sources = python_files(files)
    if not sources:
        return Report("", 0, [])
    if not python.exists():
        raise CheckUnavailable(f"{python} is missing: run `make setup` to install the Python runtimes")
    try:
        done = subprocess.run(  # noqa: S603 - our interpreter and script; the user's text is data on stdin
            [str(python), "-I", "-c", _CHECKER], input=json.dumps(sources).encode(), capture_output=True,
            timeout=TIMEOUT_S, preexec_fn=_limits, env={"PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CheckUnavailable(f"checking the code took longer than {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise CheckUnavailable(f"{python} could not run: {exc}") from None
    try:
        report = json.loads(done.stdout)
    except ValueError:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CheckUnavailable(f"the syntax check failed: {said[-1] if said else done.returncode}") from None
    return Report(report["version"], len(sources), [Problem(**problem) for problem in report["problems"]])


def _limits() -> None:
    """In the child, before exec: bounded memory and CPU time."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S), int(TIMEOUT_S)))
