"""Zip archives the client sends: a function's code folder, and a Fission spec folder.

Nothing fancy: a folder is zipped whole (but for ``__pycache__`` and ``.git``), in a stable order,
in memory (the portal's upload limit keeps these small).
"""

from __future__ import annotations

import glob
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import yaml

SKIPPED = {"__pycache__", ".git"}
DEPLOYMENT_CONFIG = "fission-deployment-config.yaml"


def upload_of(path: Path) -> tuple[str, bytes]:
    """What ``fn code push`` uploads for ``path``: a folder as ``<folder>.zip``; a file as it is."""
    if path.is_dir():
        files = [(p, p.relative_to(path).as_posix()) for p in _walk(path)]
        if not files:
            raise click.BadParameter(f"{path} holds no file.", param_hint="PATH")
        return f"{path.resolve().name or 'code'}.zip", zip_of(files)
    return path.name, path.read_bytes()


def file_count(filename: str, data: bytes) -> int:
    """How many files an upload holds (a zip's members; 1 for a single file)."""
    if not filename.endswith(".zip"):
        return 1
    try:
        return sum(not info.is_dir() for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except zipfile.BadZipFile:
        return 1  # the portal says what is wrong with it


def zip_of(files: Iterable[tuple[Path, str]]) -> bytes:
    """A zip of ``(file, name in the archive)`` pairs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in files:
            archive.write(source, name)
    return buffer.getvalue()


def _walk(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not SKIPPED & set(p.relative_to(folder).parts)
    )


def spec_folders(path: Path) -> tuple[Path, Path]:
    """``(root, specs)`` for ``faas spec apply PATH``: PATH is the specs folder itself (it holds
    fission-deployment-config.yaml; its parent is the root, as for ``fission spec apply --specdir``),
    or a root holding ``specs/``."""
    if (path / DEPLOYMENT_CONFIG).is_file():
        return path.resolve().parent, path.resolve()
    if (path / "specs" / DEPLOYMENT_CONFIG).is_file():
        return path.resolve(), (path / "specs").resolve()
    raise click.BadParameter(
        f"{path} is not a Fission spec folder: neither it nor {path / 'specs'} holds {DEPLOYMENT_CONFIG} "
        "(`fission spec init` writes it).",
        param_hint="DIR",
    )


def spec_zip(path: Path) -> bytes:
    """The archive ``spec/apply/`` takes: ``specs/`` (whatever the local folder's name) and the
    source files the ArchiveUploadSpecs' globs name, relative to the root, as Fission resolves them."""
    root, specs = spec_folders(path)
    files = [(p, "specs/" + p.relative_to(specs).as_posix()) for p in _walk(specs)]
    for source in sorted(_sources(root, specs)):
        if specs not in source.parents:
            files.append((source, source.relative_to(root).as_posix()))
    return zip_of(files)


def _sources(root: Path, specs: Path) -> set[Path]:
    found: set[Path] = set()
    for upload in _archive_upload_specs(specs):
        excluded = {p for pattern in upload.get("exclude") or [] for p in _glob(root, pattern)}
        for pattern in upload.get("include") or []:
            matched = _glob(root, pattern)
            if not matched:
                raise click.BadParameter(
                    f"ArchiveUploadSpec {upload.get('name')}: {pattern!r} matches no file under {root}.",
                    param_hint="DIR",
                )
            found |= matched - excluded
    return found


def _glob(root: Path, pattern: str) -> set[Path]:
    """The files ``pattern`` matches under ``root`` (a folder matched counts with all it holds);
    a pattern reaching out of ``root`` matches nothing."""
    matched: set[Path] = set()
    for hit in glob.glob(pattern, root_dir=root, recursive=True):
        target = (root / hit).resolve()
        if root != target and root not in target.parents:
            continue
        matched |= set(_walk(target)) if target.is_dir() else {target} if target.is_file() else set()
    return matched


def _archive_upload_specs(specs: Path) -> list[dict[str, Any]]:
    """The ArchiveUploadSpec documents of the spec folder's YAML files (top-level fields, as
    `fission spec` writes them; a ``spec:`` mapping is read too)."""
    found = []
    for path in _walk(specs):
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"{path} is not YAML: {error}", param_hint="DIR") from error
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == "ArchiveUploadSpec":
                found.append({**document, **(document.get("spec") or {})})
    return found
