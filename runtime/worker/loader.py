"""Loading a user function the way Fission's Python environment does (FISSION.md section 2).

A worker may be specialized again (as Fission's may): ``LoadedCode`` loads the new code with
fresh modules and, when that fails, leaves the code loaded before exactly as it was.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Final

UserFunction = Callable[[], object]

#: A single file is this module, whatever the file is called, as in Fission (``import_src``):
#: its ``__name__`` (and so ``logging.getLogger(__name__)``) is the same on both, and no file name
#: (``json.py``) can shadow a module the worker or the function imports.
SINGLE_FILE_MODULE: Final = "mod"


class LoadError(Exception):
    """The function could not be loaded; ``str(error)`` is a short message for the HTTP body.

    The original exception is chained (``__cause__``) so its traceback can be logged.
    """


def resolve_entrypoint(function_name: str) -> tuple[str, str]:
    """``(module, function)`` for a Fission entrypoint.

    ``""`` is ``main.main``; ``"func"`` is ``main.func``; ``"pkg.mod.func"`` is module ``pkg.mod``,
    function ``func``.
    """
    if not function_name:
        return "main", "main"
    module, _, func = function_name.rpartition(".")
    return module or "main", func


def load_function(filepath: str, function_name: str) -> UserFunction:
    """Import the code at ``filepath`` and return the entrypoint's callable.

    A directory (an unpacked zip deployment) goes to the front of ``sys.path`` and the entrypoint's
    module is imported from it. A single file is loaded as module ``mod`` (``SINGLE_FILE_MODULE``)
    and only the function part of the entrypoint is used. Raises ``LoadError`` for a missing path,
    an import or syntax error, or a missing or non-callable attribute.
    """
    module_name, func_name = resolve_entrypoint(function_name)
    if not os.path.exists(filepath):
        raise LoadError(f"no such file or directory: {filepath}")
    try:
        if os.path.isdir(filepath):
            module = _import_from_directory(filepath, module_name)
        else:
            module = _import_file(Path(filepath))
    # Any failure of user code at import time (SystemExit too) is a load error, not a dead worker.
    except (Exception, SystemExit) as exc:
        raise LoadError(f"cannot import {function_name or 'main.main'}: {_describe(exc)}") from exc
    return _function_of(module, func_name)


def _import_from_directory(directory: str, module_name: str) -> ModuleType:
    sys.path.insert(0, directory)
    _forget_finders(directory)
    return importlib.import_module(module_name)


def _forget_finders(directory: str) -> None:
    """Drop the import system's cached listings of ``directory`` and of every directory below
    it: the deployment may have appeared there just now, or the same path may hold other code
    than when it was last looked at. (``importlib.invalidate_caches`` would do it for every
    finder of every path: a fifth of a millisecond of a cold start, for nothing that changed.)"""
    root = os.path.normpath(directory)
    for path in [p for p in sys.path_importer_cache if isinstance(p, str) and _within(p, root)]:
        del sys.path_importer_cache[path]


def _import_file(path: Path) -> ModuleType:
    """Load one source file as a module, whatever its extension (Fission stores it as ``user``)."""
    name = SINGLE_FILE_MODULE
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before executing, as a regular import would, so that dataclasses, pickle and
    # typing.get_type_hints can find the module by name.
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _function_of(module: ModuleType, func_name: str) -> UserFunction:
    try:
        func = getattr(module, func_name)
    except AttributeError as exc:
        raise LoadError(f"module {module.__name__!r} has no attribute {func_name!r}") from exc
    if not callable(func):
        raise LoadError(f"{module.__name__}.{func_name} is not callable")
    return func


def _describe(exc: BaseException) -> str:
    """One line: the exception type and message (the body must not carry a traceback)."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class _Unloaded:
    """What forgetting some code took away: its modules and its ``sys.path`` entries."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    path_entries: list[tuple[int, str]] = field(default_factory=list)


class LoadedCode:
    """The user code this process loaded, so that loading other code replaces it."""

    def __init__(self) -> None:
        self.filepath: str | None = None

    def load(self, filepath: str, function_name: str) -> UserFunction:
        """``load_function``, after forgetting the modules of the code loaded before, so that
        the new code's ``main`` (or ``helper``) is its own and not a cached module of the old.

        When the new code fails to load (``LoadError``), its modules are forgotten and the old
        code's put back: the function loaded before keeps working, lazy imports included.
        """
        previous = _forget(self.filepath) if self.filepath is not None else _Unloaded()
        try:
            function = load_function(filepath, function_name)
        except LoadError:
            _forget(filepath)
            sys.modules.update(previous.modules)
            for index, entry in previous.path_entries:
                sys.path.insert(index, entry)
            raise
        self.filepath = filepath
        return function


def _forget(filepath: str) -> _Unloaded:
    """Remove from ``sys.modules`` every module loaded from ``filepath`` (a file, or a directory
    and everything in it) and ``filepath`` from ``sys.path``; return what was removed."""
    root = os.path.normpath(filepath)
    unloaded = _Unloaded()
    for name, module in list(sys.modules.items()):
        if any(_within(location, root) for location in _locations(module)):
            unloaded.modules[name] = sys.modules.pop(name)
    for index in reversed(range(len(sys.path))):
        if os.path.normpath(sys.path[index]) == root:
            unloaded.path_entries.insert(0, (index, sys.path.pop(index)))
    return unloaded


def _locations(module: ModuleType) -> list[str]:
    """Where ``module`` was loaded from: its file, or a namespace package's directories."""
    try:
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            return [file]
        return [entry for entry in getattr(module, "__path__", None) or () if isinstance(entry, str)]
    except Exception:  # noqa: BLE001 - a module with an odd __getattr__ is not code we loaded
        return []


def _within(location: str, root: str) -> bool:
    location = os.path.normpath(location)
    return location == root or location.startswith(root + os.sep)
