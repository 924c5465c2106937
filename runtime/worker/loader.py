"""Loading a user function the way Fission's Python environment does (FISSION.md section 2)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

UserFunction = Callable[[], object]


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
    module is imported from it. A single file is loaded as the module itself and only the function
    part of the entrypoint is used. Raises ``LoadError`` for a missing path, an import or syntax
    error, or a missing or non-callable attribute.
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
    # Why: the import system caches directory listings; the deployment may have appeared just now.
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


def _import_file(path: Path) -> ModuleType:
    """Load one source file as a module, whatever its extension (Fission stores it as ``user``)."""
    name = _file_module_name(path)
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


def _file_module_name(path: Path) -> str:
    """The file's stem, unless that would shadow an imported module (``json.py``): then ``main``."""
    stem = path.name.split(".", 1)[0]
    if stem.isidentifier() and stem not in sys.modules:
        return stem
    return "main"


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
