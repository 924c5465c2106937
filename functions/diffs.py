"""What changed between two versions of a function, or a version and the draft: per file, a
unified diff (difflib), and the settings that differ. Pure: reads the sources it is given,
never the database (functions/selectors.py ``compare`` resolves "v3" / "draft" into them).

A source is the draft's kind of code: inline files (path -> text), or an uploaded zip, read
through functions/archives.py with its limits. A file that is not UTF-8 text (or holds a NUL)
is reported as binary, one over ``MAX_FILE_BYTES`` (or past ``MAX_TOTAL_BYTES`` of a
comparison) as too large: whether it changed is still said, its content is not shown.
"""

from __future__ import annotations

import difflib
import io
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from audit.services import diff as field_diff
from functions import config
from functions.archives import DEFAULT_LIMITS, ArchiveLimits, inspect_zip

# The editor's own bound on a file (functions/services/functions.py MAX_DRAFT_FILE_BYTES): a
# larger file is not code anyone reads as a diff, and difflib's cost grows with its lines.
MAX_FILE_BYTES = 512 * 1024
# What one comparison reads and diffs at most, so an archive of many large files answers fast.
MAX_TOTAL_BYTES = 8 * 1024 * 1024
NO_NEWLINE = "\\ No newline at end of file\n"

Status = Literal["added", "removed", "changed", "unchanged"]
Kind = Literal["text", "binary", "too_large", "unreadable"]
# The settings in the order the settings form shows them; name and environment first.
FIELD_ORDER = ("name", "environment", *config.NAMES)


@dataclass(frozen=True)
class Source:
    """One side's code: inline ``files``, or a zip ``archive`` (its upload ``archive_name``)."""

    files: Mapping[str, str] = field(default_factory=dict)
    archive: bytes | None = None
    archive_name: str = ""


@dataclass(frozen=True)
class _Blob:
    """One file of a source: its size and CRC-32 (what tells two files apart without reading
    a large one), and its bytes when they were read (None: too large, or unreadable)."""

    size: int
    crc: int
    data: bytes | None
    unreadable: bool = False


@dataclass(frozen=True)
class FileDiff:
    """One path of either side. ``diff`` is the unified diff ("" when unchanged, binary, too
    large or unreadable: ``kind`` says which)."""

    path: str
    status: Status
    kind: Kind
    diff: str = ""

    def marked_lines(self) -> list[tuple[str, str]]:
        """The diff's lines, each with what it is: "file" (the ---/+++ header), "hunk" (@@),
        "added", "removed", "note" (no newline at end) or "context"; for the page."""
        lines = self.diff.split("\n")[:-1]  # the diff ends with a newline
        return [("file" if n < 2 else _mark(line), line) for n, line in enumerate(lines)]


@dataclass(frozen=True)
class Comparison:
    """``base`` -> ``head`` ("v3" or "draft"): every file of either side, by path, and the
    settings that differ (``{field: [base's, head's]}``)."""

    base: str
    head: str
    files: list[FileDiff]
    config: dict[str, list[Any]]

    @property
    def changed_files(self) -> int:
        return sum(1 for f in self.files if f.status != "unchanged")


def compare(
    base: Source,
    head: Source,
    *,
    base_label: str,
    head_label: str,
    base_settings: Mapping[str, Any],
    head_settings: Mapping[str, Any],
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Comparison:
    """The comparison of two sources and their settings (see ``file_diffs``, ``config_diff``)."""
    files = file_diffs(base, head, base_label=base_label, head_label=head_label, limits=limits)
    return Comparison(base_label, head_label, files, config_diff(base_settings, head_settings))


def file_diffs(
    base: Source, head: Source, *, base_label: str, head_label: str, limits: ArchiveLimits = DEFAULT_LIMITS
) -> list[FileDiff]:
    """Each path of either source, sorted, with its status and unified diff. ValidationFailed
    when a zip is not one ``inspect_zip`` accepts with ``limits``."""
    budget = [MAX_TOTAL_BYTES]
    old, new = _blobs(base, limits, budget), _blobs(head, limits, budget)
    return [
        _file_diff(path, old.get(path), new.get(path), base_label, head_label)
        for path in sorted(set(old) | set(new))
    ]


def config_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for each setting that differs, in the settings' order (the
    audit trail's diff, so a list and a tuple of the same names are equal)."""
    changed = field_diff(before, after)
    ordered = [name for name in FIELD_ORDER if name in changed]
    return {name: changed[name] for name in [*ordered, *sorted(set(changed) - set(ordered))]}


def _blobs(source: Source, limits: ArchiveLimits, budget: list[int]) -> dict[str, _Blob]:
    if source.archive is not None:
        return _zip_blobs(source.archive, limits, budget)
    return {path: _inline_blob(text, budget) for path, text in source.files.items()}


def _inline_blob(text: str, budget: list[int]) -> _Blob:
    data = text.encode()
    return _Blob(len(data), zlib.crc32(data), data if _take(budget, len(data)) else None)


def _take(budget: list[int], size: int) -> bool:
    """Whether a file of ``size`` bytes is read and diffed: under the per-file bound and what
    is left of the comparison's (which it then uses up)."""
    if size > MAX_FILE_BYTES or size > budget[0]:
        return False
    budget[0] -= size
    return True


def _zip_blobs(data: bytes, limits: ArchiveLimits, budget: list[int]) -> dict[str, _Blob]:
    """The files of a zip, checked first (``inspect_zip``: names, sizes, bombs); folders are
    not files. Members are read in archive order, matched to the checked entries as
    archives.safe_extract does."""
    entries = inspect_zip(data, limits)
    found: dict[str, _Blob] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member, entry in zip(archive.infolist(), entries, strict=True):
            if not entry.is_dir:
                found[entry.name] = _member_blob(archive, member, budget)
    return found


def _member_blob(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: list[int]) -> _Blob:
    if not _take(budget, member.file_size):
        return _Blob(member.file_size, member.CRC, None)
    try:
        content = archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError):
        # Checked at upload, yet corrupt now: said so for this file, the rest still compares.
        return _Blob(member.file_size, member.CRC, None, unreadable=True)
    return _Blob(len(content), member.CRC, content)


def _file_diff(path: str, old: _Blob | None, new: _Blob | None, base_label: str, head_label: str) -> FileDiff:
    status = _status(old, new)
    kind = _kind(old, new)
    if status == "unchanged" or kind != "text":
        return FileDiff(path, status, kind)
    before, after = _lines(old), _lines(new)
    lines = difflib.unified_diff(
        before, after, fromfile=f"{base_label}/{path}", tofile=f"{head_label}/{path}"
    )
    return FileDiff(path, status, kind, "".join(lines))


def _status(old: _Blob | None, new: _Blob | None) -> Status:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if (old.size, old.crc) != (new.size, new.crc):
        return "changed"
    same = old.data == new.data if old.data is not None and new.data is not None else True
    return "unchanged" if same else "changed"


def _kind(old: _Blob | None, new: _Blob | None) -> Kind:
    """What can be shown of a path: the worst of its two sides."""
    sides = [blob for blob in (old, new) if blob is not None]
    if any(blob.unreadable for blob in sides):
        return "unreadable"
    if any(blob.data is None for blob in sides):
        return "too_large"
    if any(_text(blob) is None for blob in sides):
        return "binary"
    return "text"


def _text(blob: _Blob) -> str | None:
    """The blob as text; None when it is binary (not UTF-8, or a NUL in it) or was not read."""
    if blob.data is None or b"\0" in blob.data:
        return None
    try:
        return blob.data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _lines(blob: _Blob | None) -> list[str]:
    """A text blob's lines (split at "\\n" only), each ending with one; a last line without
    one is marked as git marks it, so a change of only the final newline still shows. None (the
    side that has no such file): no lines."""
    text = _text(blob) if blob is not None else ""
    lines = [line + "\n" for line in (text or "").split("\n")]
    if lines[-1] == "\n":
        lines.pop()  # the text ended with a newline (or was empty)
    else:
        lines[-1] += NO_NEWLINE
    return lines


def _mark(line: str) -> str:
    """What a diff line below the two header lines is."""
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "added"
    if line.startswith("-"):
        return "removed"
    return "note" if line.startswith("\\") else "context"
