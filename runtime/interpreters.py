"""The Python interpreters functions run with: one virtualenv per version, never the portal's own.

``make runtimes`` (part of ``make setup``) builds ``<root>/python<X.Y>/`` for each of python3.11,
3.12 and 3.13 the machine has: a virtualenv of that interpreter holding the packages of Fission's
Python image (``runtime/images/python/requirements.txt``), complete once its ``.installed`` exists.
``root`` is ``RUNTIME_PYTHON_RUNTIMES_DIR`` (``config.python_runtimes_dir``).

An Environment runs one version (``objects.Environment.python``): its
``faas-portal.io/python-version`` annotation, else a ``3.NN`` in its image's name, else the newest
version found here, as Fission's image runs the newest Python. A version this machine lacks is an
invalid Environment (422), not a fallback to another version: code that needs 3.12 syntax must not
silently run on 3.11.

A sandbox binds a virtualenv (``venv``) and the installation it was made from (``base``, from its
``pyvenv.cfg``: the virtualenv's ``bin/python`` is a link to the installation's binary).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.config import python_runtimes_dir
from runtime.errors import InvalidObject

log = logging.getLogger(__name__)
VERSION = re.compile(r"[0-9]{1,2}\.[0-9]{1,2}")  # how an Environment names one: "3.12"
INSTALLED_MARK = ".installed"  # written by make runtimes once a virtualenv is complete


class PythonUnavailable(InvalidObject):
    """An Environment asks for a Python version this runtime does not have (422)."""


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.12"
    venv: Path  # the virtualenv: the function's sys.prefix, its packages
    base: Path  # the installation the virtualenv was made from: sys.base_prefix, the stdlib

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Interpreters:
    """The complete virtualenvs under ``root``, by version."""

    root: Path
    found: Mapping[str, Interpreter]

    @classmethod
    def discover(cls, root: Path) -> Interpreters:
        """Each ``root/python<X.Y>`` that is complete and whose ``pyvenv.cfg`` says it is X.Y; a
        directory that is not (half-built, or renamed) is logged and left out."""
        found = {}
        for venv in sorted(root.glob("python3.*")):
            version = venv.name.removeprefix("python")
            if not VERSION.fullmatch(version):
                continue
            interpreter = _read_virtualenv(venv, version)
            if interpreter is not None:
                found[version] = interpreter
        return cls(root=root, found=found)

    @property
    def versions(self) -> list[str]:
        """The versions found, oldest first."""
        return sorted(self.found, key=_key)

    @property
    def default(self) -> str | None:
        """The newest version found (None: none is)."""
        return self.versions[-1] if self.found else None

    def choose(self, wanted: str | None, *, field: str) -> str:
        """``wanted`` ("3.12") when it is available, else PythonUnavailable naming ``field``, the
        place it came from; None means the default version."""
        if wanted is not None and not VERSION.fullmatch(wanted):
            raise InvalidObject(f"{field} must be a Python version such as 3.12, got {wanted!r}", field=field)
        version = wanted or self.default
        if version is None or version not in self.found:
            raise PythonUnavailable(self.unavailable(version), field=field)
        return version

    def describe(self) -> str:
        """One line for the runtime's start-up log."""
        if not self.found:
            return f"python: {self.unavailable(None)}; every Environment is refused until then"
        return f"python: {', '.join(self.versions)} (default {self.default}) from {self.root}"

    def unavailable(self, version: str | None) -> str:
        """Why ``version`` cannot run here, naming what can."""
        if not self.found:
            return f"no Python runtime is installed in {self.root}: run make runtimes"
        verb = "is" if len(self.found) == 1 else "are"
        return f"python {version} is not available on this runtime: {', '.join(self.versions)} {verb}"


def at(venv: Path) -> Interpreter | None:
    """The interpreter of one runtime virtualenv (``<root>/python3.12``); None unless complete."""
    return _read_virtualenv(venv, venv.name.removeprefix("python"))


def _read_virtualenv(venv: Path, version: str) -> Interpreter | None:
    if not (venv / INSTALLED_MARK).exists() or not (venv / "bin" / "python").exists():
        log.warning("%s is incomplete (make runtimes did not finish it): not used", venv)
        return None
    settings = _pyvenv_cfg(venv / "pyvenv.cfg")
    made_by = settings.get("version") or settings.get("version_info") or ""
    home = settings.get("home")
    if not home or not (made_by == version or made_by.startswith(f"{version}.")):
        log.warning("%s is not a virtualenv of Python %s (pyvenv.cfg: %s): not used", venv, version, settings)
        return None
    # ``home`` is the directory of the binary the virtualenv links to: the installation's bin/.
    return Interpreter(version=version, venv=venv, base=Path(home).parent)


def _pyvenv_cfg(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in lines)
    return {key.strip(): value.strip() for key, separator, value in pairs if separator}


@functools.cache
def installed() -> Interpreters:
    """What this machine has, found once per process: the runtime, the Environment parser and
    the sandboxes all see the same set."""
    return Interpreters.discover(python_runtimes_dir())
