"""A Fission spec folder as uploaded: a zip whose root holds ``specs/`` and the source files
its ArchiveUploadSpecs name. Read safely (functions.archives: size, bomb, path and link checks),
then parsed into YAML documents, each with the file it came from."""

from __future__ import annotations

import fnmatch
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import ValidationFailed
from functions.archives import ArchiveLimits, safe_extract

SPECS_DIR = "specs"
DEPLOYMENT_CONFIG = f"{SPECS_DIR}/fission-deployment-config.yaml"
ARCHIVE_PREFIX = "archive://"
# A spec folder is small: its sources are a few functions' code, not their dependencies.
LIMITS = ArchiveLimits(max_archive_bytes=20 * 1024 * 1024, max_files=2_000)


class SpecErrors:
    """Errors collected per file and field, raised at once as one 400 whose ``detail`` is
    ``{file: {field: [message, ...]}}`` (the shared API contract)."""

    def __init__(self) -> None:
        self.detail: dict[str, dict[str, list[str]]] = {}

    def add(self, file: str, field: str, message: str) -> None:
        self.detail.setdefault(file, {}).setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        if self.detail:
            raise ValidationFailed("The spec folder has invalid objects.", detail=self.detail)


def refuse(file: str, field: str, message: str) -> ValidationFailed:
    """One error naming ``file`` and ``field``, in the contract's shape."""
    return ValidationFailed(f"{file}: {field}: {message}", detail={file: {field: [message]}})


@dataclass(frozen=True)
class Document:
    """One YAML document of a file under ``specs/``."""

    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        """metadata.name (Fission objects) or name (DeploymentConfig, ArchiveUploadSpec)."""
        metadata = self.body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else self.body.get("name")
        return name if isinstance(name, str) else ""


@dataclass
class SpecFolder:
    """The folder: its deployment config (``uid``, ``name``), its documents and every file."""

    uid: str
    name: str
    documents: list[Document] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def archive_files(self, spec: Document) -> dict[str, bytes]:
        """The files an ArchiveUploadSpec names: ``include`` globs (a file, a folder, or a pattern,
        relative to the folder's root, as Fission resolves them) minus ``exclude``; named relative
        to their common folder, as Fission zips them. ValidationFailed naming the field otherwise."""
        include, exclude = spec.body.get("include"), spec.body.get("exclude") or []
        if spec.body.get("rootdir"):  # Fission's default root is the only one a zipped folder has
            raise refuse(spec.file, "rootdir", "Not supported: the globs are relative to the folder's root.")
        if not isinstance(include, list) or not include or not all(isinstance(p, str) for p in include):
            raise refuse(spec.file, "include", "A list of at least one file or pattern.")
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise refuse(spec.file, "exclude", "A list of files or patterns.")
        chosen = {
            path
            for path in self.files
            if not path.startswith(f"{SPECS_DIR}/")
            and any(_matches(path, p) for p in include)
            and not any(_matches(path, p) for p in exclude)
        }
        if not chosen:
            raise refuse(spec.file, "include", f"No file of the folder matches {include}.")
        base = _common_folder(sorted(chosen))
        return {path[len(base) :]: self.files[path] for path in sorted(chosen)}


def _matches(path: str, pattern: str) -> bool:
    """``pattern`` names ``path`` itself, a folder above it, or matches it as a glob."""
    pattern = pattern.removeprefix("./").rstrip("/")
    return path == pattern or path.startswith(f"{pattern}/") or fnmatch.fnmatchcase(path, pattern)


def _common_folder(paths: list[str]) -> str:
    """The folder (with its trailing '/') all ``paths`` share; '' when none."""
    folders = [path.split("/")[:-1] for path in paths]
    common: list[str] = []
    for parts in zip(*folders, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "".join(f"{part}/" for part in common)


def read_zip(data: bytes) -> dict[str, bytes]:
    """Every file of the uploaded zip, path -> bytes, after functions.archives' checks (too large,
    too many files, a zip bomb, '..' or absolute paths, links: ValidationFailed, 400/413)."""
    with tempfile.TemporaryDirectory(prefix="spec-") as folder:
        root = Path(folder)
        entries = safe_extract(data, root, LIMITS)
        return {e.name: (root / e.name).read_bytes() for e in entries if not e.is_dir}


def parse(files: dict[str, bytes]) -> SpecFolder:
    """The folder's deployment config and documents; ValidationFailed naming file and field when
    the config is missing or a file is not YAML of objects."""
    if DEPLOYMENT_CONFIG not in files:
        raise refuse(DEPLOYMENT_CONFIG, "file", "Missing: a spec folder starts with `fission spec init`.")
    documents = []
    for path in sorted(files):
        if path.startswith(f"{SPECS_DIR}/") and path.endswith((".yaml", ".yml")):
            documents.extend(_documents(path, files[path]))
    config = [d for d in documents if d.kind == "DeploymentConfig"]
    if len(config) != 1 or config[0].file != DEPLOYMENT_CONFIG:
        raise refuse(DEPLOYMENT_CONFIG, "kind", "Exactly one DeploymentConfig, in this file.")
    uid = config[0].body.get("uid")
    if not isinstance(uid, str) or not uid.strip() or len(uid) > 64:
        raise refuse(DEPLOYMENT_CONFIG, "uid", "Required: the folder's id (at most 64 characters).")
    name = str(config[0].body.get("name") or "")
    rest = [d for d in documents if d.kind != "DeploymentConfig"]
    return SpecFolder(uid=uid.strip(), name=name, documents=rest, files=files)


def _documents(path: str, data: bytes) -> list[Document]:
    try:
        loaded = list(yaml.safe_load_all(data.decode("utf-8")))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise refuse(path, "file", f"Not YAML: {exc}") from None
    documents = []
    for body in loaded:
        if body is None:
            continue  # an empty document ("---" at the end), as Fission skips it
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            raise refuse(path, "kind", "Every document is an object with a kind.")
        documents.append(Document(path, body))
    return documents
