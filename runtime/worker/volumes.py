"""A function's Secrets and ConfigMaps as read-only files, as Fission's fetcher gives them: the one
home of their rules, and how a worker lays them out.

The contract (FISSION.md section 1: ``spec.secrets`` and ``spec.configmaps``, own namespace only):
each key of each object a function references is a file, for that function's workers only::

    /secrets/<namespace>/<secret name>/<key>      a Secret's data, base64-decoded bytes
    /configs/<namespace>/<configmap name>/<key>   a ConfigMap's data as UTF-8 text, binaryData as is

Keys are as Kubernetes allows them (``KEY``: letters, digits, ``-``, ``_``, ``.``, at most 253, not
``.`` or ``..``), and so are the namespace and name (DNS labels pass the same rule): no part of a
path can leave its directory. An object holds at most ``MAX_OBJECT_BYTES``; all the files of one
function at most ``MAX_FUNCTION_BYTES`` (the runtime does not deploy a function past it).

Delivery: the runtime puts the files in the specialize request (``mounted_files``: ``{path:
base64}``), sent over the worker's own unix socket, as it sends environment variables: no copy
is ever written to the host's disk, and nothing logs that request. A sandboxed worker checks them
again (``checked``), then, still holding its capabilities at its first specialization, mounts a
fresh tmpfs on each root it needs, writes them (``write``: files 0444, directories 0555, owned by
the tenant's uid) and remounts it read-only (``runtime.worker.isolation.mount_files``) before it
drops every capability: the function reads them and can change nothing (EROFS), and they live in
memory in the worker's own mount namespace, which no other worker sees and which ends with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from typing import Final

SECRETS: Final = "/secrets"
CONFIGS: Final = "/configs"
ROOTS: Final = (SECRETS, CONFIGS)
KEY: Final = re.compile(r"[-._a-zA-Z0-9]{1,253}")
KEY_RULE: Final = "letters, digits, '-', '_' or '.' (at most 253), not '.' or '..'"
MAX_OBJECT_BYTES: Final = 1024 * 1024  # Kubernetes' bound of one Secret or ConfigMap
MAX_FUNCTION_BYTES: Final = 4 * 1024 * 1024  # all the files one function sees
FILE_MODE: Final = 0o444
DIRECTORY_MODE: Final = 0o555


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a Secret's or ConfigMap's key (a file name); None when it can."""
    if not isinstance(key, str) or not KEY.fullmatch(key) or key in (".", ".."):
        return f"keys must be {KEY_RULE}"
    return None


def path(root: str, namespace: str, name: str, key: str) -> str:
    """Where the function finds ``key`` of the object ``namespace/name`` under ``root``."""
    return f"{root}/{namespace}/{name}/{key}"


def _parts(file_path: object) -> tuple[str, str] | None:
    """``(root, "<namespace>/<name>/<key>")`` of a well-formed path; None otherwise."""
    if not isinstance(file_path, str):
        return None
    parts = file_path.split("/")
    if len(parts) != 5 or parts[0] != "" or f"/{parts[1]}" not in ROOTS:
        return None
    if any(key_problem(part) for part in parts[2:]):
        return None
    return f"/{parts[1]}", "/".join(parts[2:])


def checked(files: object) -> dict[str, bytes]:
    """A specialize request's ``mounted_files`` (``{path: base64}``; None and absent mean none),
    decoded; ValueError naming the first bad path (never a value: they may be secrets)."""
    if files is None:
        return {}
    if not isinstance(files, dict):
        raise ValueError("mounted_files must be an object of paths to base64 strings")
    decoded: dict[str, bytes] = {}
    for file_path, content in files.items():
        if _parts(file_path) is None:
            where = "/secrets or /configs/<namespace>/<name>/<key>"
            raise ValueError(f"mounted_files: {file_path!r} is not {where}, each part {KEY_RULE}")
        try:
            if not isinstance(content, str):
                raise TypeError
            decoded[file_path] = base64.b64decode(content, validate=True)
        except (TypeError, binascii.Error):
            raise ValueError(f"mounted_files: the content of {file_path} must be a base64 string") from None
    total = size(decoded)
    if total > MAX_FUNCTION_BYTES:
        raise ValueError(f"mounted_files: {total} bytes, more than {MAX_FUNCTION_BYTES} a function may have")
    return decoded


def encoded(files: Mapping[str, bytes]) -> dict[str, str]:
    """``files`` as a specialize request carries them."""
    return {file_path: base64.b64encode(content).decode() for file_path, content in files.items()}


def size(files: Mapping[str, bytes]) -> int:
    """The bytes the files hold (what ``MAX_FUNCTION_BYTES`` bounds)."""
    return sum(len(content) for content in files.values())


def digest(files: Mapping[str, bytes]) -> str:
    """A sha256 naming exactly these paths and contents (a change of either changes it)."""
    hashed = hashlib.sha256()
    for file_path in sorted(files):
        content = files[file_path]
        hashed.update(f"{file_path}\0{len(content)}\0".encode())
        hashed.update(content)
    return hashed.hexdigest()


def by_root(files: Mapping[str, bytes]) -> dict[str, dict[str, bytes]]:
    """``files`` (checked paths) grouped by root, each path relative to it."""
    grouped: dict[str, dict[str, bytes]] = {}
    for file_path, content in files.items():
        parts = _parts(file_path)
        assert parts is not None, "checked() accepted only well-formed paths"
        grouped.setdefault(parts[0], {})[parts[1]] = content
    return grouped


def write(directory: str, files: Mapping[str, bytes]) -> None:
    """Lay out ``files`` (relative ``<namespace>/<name>/<key>`` paths, as ``by_root`` gives them)
    in the empty ``directory``: each file created (never followed, never replaced) mode
    ``FILE_MODE``, then every directory, ``directory`` included, made ``DIRECTORY_MODE``."""
    made: set[str] = set()
    for relative, content in sorted(files.items()):
        parent = os.path.join(directory, os.path.dirname(relative))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        made.update({parent, os.path.dirname(parent)})
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(directory, relative), flags, FILE_MODE)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.chmod(os.path.join(directory, relative), FILE_MODE)  # whatever the umask took away
    for made_directory in sorted(made, reverse=True):  # the deepest first
        os.chmod(made_directory, DIRECTORY_MODE)
    os.chmod(directory, DIRECTORY_MODE)
