"""Uploaded code archives: checked before anything is unpacked, unpacked safely, zipped reproducibly.

Every refusal is a ``core.errors.ValidationFailed`` (an ``ArchiveTooLarge``, answered 413, when the
upload or its unpacked size is over a limit) whose message names the rule and the member, with
``detail={"archive": [message]}`` and one of the ``code``s below, so the API answers in its one error shape.
"""

from __future__ import annotations

import hashlib
import io
import keyword
import lzma
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO

from core.errors import ValidationFailed

MiB = 1024 * 1024

CODE_TOO_LARGE = "archive_too_large"
CODE_TOO_MANY_FILES = "archive_too_many_files"
CODE_BOMB = "archive_bomb"
CODE_UNSAFE_PATH = "archive_unsafe_path"
CODE_LINK = "archive_link"
CODE_INVALID = "archive_invalid"
CODE_ENCRYPTED = "archive_encrypted"

_ENCRYPTED_FLAGS = 0x01 | 0x40  # traditional PKWARE encryption, strong encryption
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_LOCAL_HEADER_SIZE = 30  # the fixed part; the name and extra field follow it
# zipfile builds an object per entry (about 1 KB) before the entries can be counted: 20 MiB of empty
# entries would cost 250 MB. Every entry starts with this signature, so counting it first bounds
# that; the margin is for signatures inside stored members (a zip of uncompressed zips).
_CENTRAL_HEADER = b"PK\x01\x02"
_SIGNATURE_MARGIN = 10
_DRIVE = re.compile(r"[A-Za-z]:")
_MODULE_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py")
_CHUNK = 64 * 1024
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can store: reproducible archives use it
_FILE_MODE, _DIR_MODE = 0o644, 0o755
_MSDOS_DIRECTORY = 0x10


@dataclass(frozen=True)
class ArchiveLimits:
    """What an upload may be. Ratios are unpacked / compressed bytes (the zip-bomb guard); members and
    archives unpacking to at most ``ratio_exempt_bytes`` are not ratio-checked, because small repetitive
    files (an empty-ish fixture, a padded table) compress extremely well and are harmless."""

    max_archive_bytes: int = 20 * MiB
    max_files: int = 2_000
    max_unpacked_bytes: int = 100 * MiB
    max_ratio: float = 100
    max_path_length: int = 255
    ratio_exempt_bytes: int = 1 * MiB


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class ZipEntry:
    """One member: ``name`` is normalized ("/"-separated, relative, no trailing slash)."""

    name: str
    size: int
    compressed_size: int
    is_dir: bool


class ArchiveTooLarge(ValidationFailed):
    """An upload, or what it unpacks to, is over a size limit: answered 413 Content Too Large."""

    status = 413


def refused(message: str, code: str) -> ValidationFailed:
    """The error for a refused archive, in the API's error shape (413 for sizes, else 400)."""
    error = ArchiveTooLarge if code == CODE_TOO_LARGE else ValidationFailed
    return error(message, detail={"archive": [message]}, code=code)


# --- names ---------------------------------------------------------------------------------------


def check_path(name: str, *, max_length: int = DEFAULT_LIMITS.max_path_length) -> str:
    """The normalized form of a member or file name ("./a//b/" -> "a/b").

    Raises ``ValidationFailed`` (code ``archive_unsafe_path``) for control characters (NUL included),
    names longer than ``max_length`` UTF-8 bytes, absolute paths (``/x``, ``C:\\x``, ``\\\\server``),
    backslashes, ``..`` components, and names that are empty once normalized.
    """
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise refused(f"{name!r}: control characters are not allowed in names.", CODE_UNSAFE_PATH)
    if len(name.encode()) > max_length:
        raise refused(f"{name[:40]!r}...: names are limited to {max_length} bytes.", CODE_UNSAFE_PATH)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise refused(f"{name!r}: absolute paths are not allowed.", CODE_UNSAFE_PATH)
    if "\\" in name:
        raise refused(f"{name!r}: backslashes are not allowed in names; use '/'.", CODE_UNSAFE_PATH)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise refused(f"{name!r}: '..' is not allowed in names.", CODE_UNSAFE_PATH)
    if not parts:
        raise refused(f"{name!r}: the name is empty.", CODE_UNSAFE_PATH)
    return "/".join(parts)


def python_module_name(filename: str) -> str:
    """The module a single uploaded ``.py`` file defines: ``"handler.py"`` -> ``"handler"``.

    The file keeps its name (the entrypoint then reads ``handler.func``). Raises ``ValidationFailed``
    unless the name is ``[A-Za-z_][A-Za-z0-9_]*.py`` and not a Python keyword.
    """
    stem = filename.removesuffix(".py")
    if not _MODULE_FILE.fullmatch(filename) or keyword.iskeyword(stem):
        message = f"{filename!r} is not an importable module name: use letters, digits and '_', and '.py'."
        raise ValidationFailed(message, detail={"file": [message]}, code="invalid_module_name")
    return stem


def single_file(
    filename: str, content: str | bytes, limits: ArchiveLimits = DEFAULT_LIMITS
) -> dict[str, str]:
    """The draft files for one uploaded ``.py`` file: ``{"handler.py": text}``.

    Raises ``ValidationFailed`` for a bad module name, content that is not UTF-8, or more than
    ``limits.max_archive_bytes``.
    """
    module = python_module_name(filename)
    data = content.encode() if isinstance(content, str) else content
    if len(data) > limits.max_archive_bytes:
        message = f"{filename!r} is larger than {limits.max_archive_bytes} bytes."
        raise ArchiveTooLarge(message, detail={"file": [message]}, code=CODE_TOO_LARGE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        message = f"{filename!r} is not UTF-8 text."
        raise ValidationFailed(message, detail={"file": [message]}, code=CODE_INVALID) from None
    return {f"{module}.py": text}


# --- inspection ----------------------------------------------------------------------------------


def inspect_zip(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[ZipEntry]:
    """The members of an uploaded zip, in archive order, after checking it without unpacking.

    Raises ``ValidationFailed`` (see the module docstring) when the upload is not a zip, is over a
    limit (bytes, files, declared unpacked bytes, compression ratio), has an unsafe name, a link or
    special file, an encrypted member, an unsupported compression method, duplicate or clashing
    names, or overlapping members. Pure: reads ``data`` only.
    """
    if len(data) > limits.max_archive_bytes:
        message = f"The archive is {len(data)} bytes; the limit is {limits.max_archive_bytes}."
        raise refused(message, CODE_TOO_LARGE)
    if data.count(_CENTRAL_HEADER) > _SIGNATURE_MARGIN * limits.max_files:
        message = f"The archive has far more than {limits.max_files} entries, the limit."
        raise refused(message, CODE_TOO_MANY_FILES)
    with _open_zip(data) as archive:
        members = archive.infolist()
    if not members:
        raise refused("The archive is empty.", CODE_INVALID)
    if len(members) > limits.max_files:
        message = f"The archive has {len(members)} entries; the limit is {limits.max_files}."
        raise refused(message, CODE_TOO_MANY_FILES)
    entries = [_check_member(member, limits) for member in members]
    _check_unique(entries)
    _check_totals(members, limits)
    _check_overlaps(members, len(data))
    return entries


def read_member(data: bytes, name: str, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes | None:
    """The content of the file called ``name`` (normalized, as ``ZipEntry.name``) in an archive
    that ``inspect_zip`` accepted with ``limits``; None when there is none."""
    with _open_zip(data) as archive:
        for member in archive.infolist():
            if (
                not member.is_dir()
                and check_path(member.orig_filename, max_length=limits.max_path_length) == name
            ):
                return archive.read(member)
    return None


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError) as exc:
        raise refused(f"The upload is not a readable zip archive ({exc}).", CODE_INVALID) from None


def _check_member(member: zipfile.ZipInfo, limits: ArchiveLimits) -> ZipEntry:
    raw = member.orig_filename  # zipfile cuts ``filename`` at a NUL; the original keeps it
    name = check_path(raw, max_length=limits.max_path_length)
    is_dir = _check_kind(member)
    if member.flag_bits & _ENCRYPTED_FLAGS:
        raise refused(f"{raw!r} is encrypted; upload an archive without a password.", CODE_ENCRYPTED)
    if member.compress_type not in _METHODS:
        message = f"{raw!r} uses compression method {member.compress_type}; use deflate."
        raise refused(message, CODE_INVALID)
    _check_ratio(repr(raw), member.file_size, member.compress_size, limits)
    return ZipEntry(name=name, size=member.file_size, compressed_size=member.compress_size, is_dir=is_dir)


def _check_kind(member: zipfile.ZipInfo) -> bool:
    """Whether the member is a directory; refuses links and other non-regular files.

    The Unix mode is checked whatever system made the zip: a zip from a non-Unix system has 0 there.
    """
    raw = member.orig_filename
    kind = stat.S_IFMT(member.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise refused(f"{raw!r} is a symbolic link; links are not allowed.", CODE_LINK)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        message = f"{raw!r} is a special file (mode {kind:o}); only files and folders are allowed."
        raise refused(message, CODE_LINK)
    is_dir = raw.endswith("/")
    if (kind == stat.S_IFDIR and not is_dir) or (kind == stat.S_IFREG and is_dir):
        raise refused(f"{raw!r}: its type does not match its name.", CODE_INVALID)
    if is_dir and member.file_size:
        raise refused(f"{raw!r} is a folder with content.", CODE_INVALID)
    return is_dir


def _check_ratio(what: str, size: int, compressed: int, limits: ArchiveLimits) -> None:
    if size > limits.ratio_exempt_bytes and size > limits.max_ratio * max(compressed, 1):
        ratio = size / max(compressed, 1)
        limit = f"{limits.max_ratio:g}"
        message = f"{what} unpacks {ratio:.0f} times its compressed size (limit {limit}): a zip bomb?"
        raise refused(message, CODE_BOMB)


def _check_unique(entries: list[ZipEntry]) -> None:
    seen: set[str] = set()
    files: set[str] = set()
    folders: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise refused(f"{entry.name!r} appears more than once in the archive.", CODE_INVALID)
        seen.add(entry.name)
        (folders if entry.is_dir else files).add(entry.name)
        folders.update(_parents(entry.name))
    clashes = sorted(files & folders)
    if clashes:
        raise refused(f"{clashes[0]!r} is both a file and a folder in the archive.", CODE_INVALID)


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _check_totals(members: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.max_unpacked_bytes:
        message = f"The archive unpacks to {unpacked} bytes; the limit is {limits.max_unpacked_bytes}."
        raise refused(message, CODE_TOO_LARGE)
    _check_ratio("The archive", unpacked, sum(member.compress_size for member in members), limits)


def _check_overlaps(members: list[zipfile.ZipInfo], archive_size: int) -> None:
    """Refuses members whose data overlap: many entries sharing one compressed stream is how a
    zip bomb beats a per-member ratio check."""
    spans = sorted(members, key=lambda member: member.header_offset)
    for member, following in pairwise(spans):
        if member.header_offset + _LOCAL_HEADER_SIZE + member.compress_size > following.header_offset:
            message = f"{member.orig_filename!r} and {following.orig_filename!r} overlap: a zip bomb?"
            raise refused(message, CODE_BOMB)
    last = spans[-1]
    if last.header_offset + _LOCAL_HEADER_SIZE + last.compress_size > archive_size:
        raise refused(f"{last.orig_filename!r} runs past the end of the archive.", CODE_INVALID)


# --- extraction ----------------------------------------------------------------------------------


class _Budget:
    """Counts the bytes actually written, so headers that lie about sizes cannot unpack more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise refused(f"The archive unpacks to more than {self.limit} bytes.", CODE_BOMB)


def safe_extract(data: bytes, destination: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[ZipEntry]:
    """Unpacks an upload into ``destination`` (which must not exist, or be an empty folder) and
    returns its members.

    Checks with ``inspect_zip`` first, then streams each member into a staging folder next to
    ``destination`` counting bytes, writing files 0o644 and folders 0o755, never links, and moves
    the staging folder into place only when everything was written: on any refusal
    (``ValidationFailed``) or error, nothing is left in ``destination`` or beside it.
    """
    entries = inspect_zip(data, limits)
    destination = destination.absolute()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not an empty folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        _extract_all(data, entries, staging, limits)
        os.chmod(staging, _DIR_MODE)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return entries


def _extract_all(data: bytes, entries: list[ZipEntry], root: Path, limits: ArchiveLimits) -> None:
    budget = _Budget(limits.max_unpacked_bytes)
    root = root.resolve()
    with _open_zip(data) as archive:
        for member, entry in zip(archive.infolist(), entries, strict=True):
            target = _target(root, entry.name)
            if entry.is_dir:
                _make_folders(root, target)
            else:
                _make_folders(root, target.parent)
                _extract_file(archive, member, target, budget)


def _target(root: Path, name: str) -> Path:
    """Where a (checked) name lands; refuses anything that would resolve outside ``root``."""
    target = root.joinpath(*name.split("/"))
    if not target.resolve().is_relative_to(root):
        raise refused(f"{name!r} would be written outside the destination.", CODE_UNSAFE_PATH)
    return target


def _make_folders(root: Path, folder: Path) -> None:
    """Creates ``folder`` and its missing parents below ``root``, each 0o755."""
    missing: list[Path] = []
    while folder != root and not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        os.mkdir(path, _DIR_MODE)
        os.chmod(path, _DIR_MODE)  # the umask may have narrowed it


def _extract_file(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: _Budget) -> None:
    # O_EXCL and O_NOFOLLOW: never reuse, overwrite or follow anything already there.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(target, flags, _FILE_MODE)
    os.fchmod(descriptor, _FILE_MODE)
    with os.fdopen(descriptor, "wb") as output, _open_member(archive, member) as source:
        _copy_member(source, output, name=member.orig_filename, declared=member.file_size, budget=budget)


def _open_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return archive.open(member)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
        raise refused(f"{member.orig_filename!r} cannot be read: {exc}.", CODE_INVALID) from None


def _copy_member(source: IO[bytes], output: IO[bytes], *, name: str, declared: int, budget: _Budget) -> None:
    """Copies one member's bytes, refusing (``archive_bomb``) past its declared size or the budget,
    and (``archive_invalid``) a corrupt stream."""
    written = 0
    while chunk := _read(source, name):
        written += len(chunk)
        if written > declared:
            raise refused(f"{name!r} holds more than the {declared} bytes it declares.", CODE_BOMB)
        budget.take(len(chunk))
        output.write(chunk)


def _read(source: IO[bytes], name: str) -> bytes:
    try:
        return source.read(_CHUNK)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        # bz2 reports corrupt data as OSError; writes happen elsewhere, so this is never the disk.
        raise refused(f"{name!r} is corrupt: {exc}.", CODE_INVALID) from None


# --- reproducible zips ---------------------------------------------------------------------------


def make_zip(directory: Path) -> bytes:
    """A deterministic zip of ``directory``: entries sorted by name, every time 1980-01-01, files
    0o644 and folders 0o755, deflated. The same content always gives the same bytes (and sha256).

    Raises ``ValidationFailed`` (``archive_link``) when the tree holds a link or a special file:
    links are refused, not followed or skipped, so what was checked is what ships.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in sorted(_tree(directory, directory)):
            if path.is_dir():
                archive.writestr(_zip_info(name + "/", is_dir=True), b"")
            else:
                with path.open("rb") as source, archive.open(_zip_info(name, is_dir=False), "w") as output:
                    shutil.copyfileobj(source, output, _CHUNK)
    return buffer.getvalue()


def _tree(root: Path, folder: Path) -> Iterator[tuple[str, Path]]:
    """Every file and folder under ``folder`` as (name relative to ``root``, path); refuses links."""
    with os.scandir(folder) as scan:
        for item in scan:
            path = Path(item.path)
            name = path.relative_to(root).as_posix()
            if item.is_symlink():
                raise refused(f"{name!r} is a symbolic link; links are not allowed.", CODE_LINK)
            if item.is_dir(follow_symlinks=False):
                yield name, path
                yield from _tree(root, path)
            elif item.is_file(follow_symlinks=False):
                yield name, path
            else:
                raise refused(f"{name!r} is a special file; only files and folders are allowed.", CODE_LINK)


def _zip_info(name: str, *, is_dir: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.create_system = 3  # Unix, so that readers honour the mode bits below
    if is_dir:
        info.external_attr = (stat.S_IFDIR | _DIR_MODE) << 16 | _MSDOS_DIRECTORY
    else:
        info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data``, as Fission's package checksum expects."""
    return hashlib.sha256(data).hexdigest()
