"""What every command shares: the global options, and the API client built from them once."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from cli import config
from cli.client import Api


@dataclass
class State:
    url: str | None = None
    tenant: str | None = None
    _api: Api | None = field(default=None, repr=False)

    @property
    def api(self) -> Api:
        """The API client (built on first use, so `--help` and `login` need no config)."""
        if self._api is None:
            self._api = Api(config.profile(self.url, self.tenant))
        return self._api


pass_state = click.make_pass_decorator(State, ensure=True)


def function_path(name: str, *rest: str) -> str:
    """``functions/<name>/<rest...>/``, the API path of a function or of what it holds."""
    return "/".join(["functions", name, *rest, ""])


def key_values(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``("A=1", "B=2")`` as a dict; a pair without ``=`` is a usage error naming ``option``."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint=option)
        found[key] = value
    return found
