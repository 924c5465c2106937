"""Where the client finds the portal URL, the tenant and the token.

Precedence, highest first: the global options (``--url``, ``--tenant``), the environment
(``FAAS_URL``, ``FAAS_TENANT``, ``FAAS_TOKEN``: CI needs no login), then the file ``faas login``
wrote: ``$XDG_CONFIG_HOME/faas/config.toml`` (``~/.config/faas/config.toml``), mode 600 in a
directory of mode 700, because it holds a bearer token.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from cli.errors import AUTH, USAGE, CliError

ENV = {"url": "FAAS_URL", "tenant": "FAAS_TENANT", "token": "FAAS_TOKEN"}


@dataclass(frozen=True)
class Profile:
    """What every API call needs."""

    url: str
    tenant: str
    token: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "faas" / "config.toml"


def read_file() -> dict[str, str]:
    """The saved settings ({} when there is no file); a file that is not TOML is a usage error."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CliError(
            f"{path} is not a valid config file ({error}): run `faas login` again.", USAGE
        ) from error
    return {key: str(data[key]) for key in ENV if isinstance(data.get(key), str)}


def settings(url: str | None = None, tenant: str | None = None) -> dict[str, str]:
    """The settings found (options over environment over file); missing ones are absent."""
    found = read_file()
    for key, variable in ENV.items():
        if os.environ.get(variable):
            found[key] = os.environ[variable]
    for key, value in (("url", url), ("tenant", tenant)):
        if value:
            found[key] = value
    return found


def profile(url: str | None = None, tenant: str | None = None) -> Profile:
    """The complete profile, or CliError (exit 3) saying how to provide what is missing."""
    found = settings(url, tenant)
    missing = [key for key in ENV if not found.get(key)]
    if missing:
        names = ", ".join(ENV[key] for key in missing)
        raise CliError(f"Not logged in: run `faas login`, or set {names}.", AUTH)
    return Profile(url=normalized_url(found["url"]), tenant=found["tenant"], token=found["token"])


def normalized_url(url: str) -> str:
    """``url`` without a trailing slash; a URL that is not http(s) is a usage error."""
    if not url.startswith(("http://", "https://")):
        raise CliError(f"The portal URL must start with http:// or https://, not {url!r}.", USAGE)
    return url.rstrip("/")


def save(saved: Profile) -> Path:
    """Write ``saved`` to the config file (mode 600, its directory 700), replacing it."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)  # mkdir's mode is masked by the umask, and an existing directory keeps its own
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that existed keeps its mode through O_CREAT
    with os.fdopen(descriptor, "wb") as out:
        tomli_w.dump({"url": saved.url, "tenant": saved.tenant, "token": saved.token}, out)
    return path


def forget() -> bool:
    """Delete the config file; False when there was none."""
    path = config_path()
    if not path.exists():
        return False
    path.unlink()
    return True
