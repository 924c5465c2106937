"""A function's environment variables: the one home of their rules, and how a worker sets them.

A variable's name is a POSIX name (``NAME``); its value is text without NUL (``putenv`` can
hold nothing else). Some names are the platform's (``reserved``): the runtime sets ``HOME`` and
``PATH`` for every worker, and ``LD_*``, ``PYTHON*``, ``FISSION_*`` and ``FAAS_*`` change how the
interpreter, the loader or the platform behave, so no function's configuration may set them.

The runtime refuses, at apply, a ConfigMap of environment variables that breaks these rules
(``runtime.objects.parse_configmap``); the worker checks them again (``checked``) before it sets
anything, so that nothing but plain variables ever reaches its ``os.environ``.

``Variables`` puts a function's variables in ``os.environ`` before its module is imported, and,
when the worker is specialized again, takes them back out (a name's value from before returns)
before the next function's go in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_NAMES: Final = frozenset({"HOME", "PATH"})
RESERVED_PREFIXES: Final = ("FISSION_", "FAAS_", "LD_", "PYTHON")
RESERVED_DESCRIPTION: Final = "HOME, PATH, " + ", ".join(f"{prefix}..." for prefix in RESERVED_PREFIXES)


def reserved(name: str) -> bool:
    """Whether ``name`` is the platform's, never a function's variable."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


def problem(name: object, value: object) -> str | None:
    """Why ``name=value`` cannot be a function's environment variable; None when it can."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"{name!r} is not a variable name: a letter or '_', then letters, digits or '_'"
    if reserved(name):
        return f"{name} is reserved for the platform ({RESERVED_DESCRIPTION})"
    if not isinstance(value, str):
        return f"the value of {name} must be a string"
    if "\0" in value:
        return f"the value of {name} must not hold a NUL character"
    return None


def checked(variables: object) -> dict[str, str]:
    """``variables`` (a specialize request's ``environment_variables``) as a dict, None and absent
    meaning none; ValueError saying what is wrong with the first bad one."""
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise ValueError("environment_variables must be an object of names to strings")
    for name, value in variables.items():
        reason = problem(name, value)
        if reason is not None:
            raise ValueError(f"environment_variables: {reason}")
    return dict(variables)


class Variables:
    """The variables of the function this process runs, as they are in ``os.environ``."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}
        self._before: dict[str, str | None] = {}  # each name's value before we set it (None: unset)

    def set(self, variables: Mapping[str, str]) -> dict[str, str]:
        """Make ``variables`` the function's: the previous function's leave ``os.environ`` (what
        they replaced comes back), these go in. Returns the previous ones, to put them back
        (``set(previous)``) when the new function does not load."""
        for name in self.current.keys() - variables.keys():
            before = self._before.pop(name)
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
        for name, value in variables.items():
            self._before.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        previous, self.current = self.current, dict(variables)
        return previous
