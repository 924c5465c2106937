"""Package archives: fetched (literal or url), verified against their sha256, unpacked once.

Archives are content-addressed under ``<state>/packages/<sha256>/``, so a restart or a
second function using the same archive costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import aiohttp

from runtime.errors import PackageUnavailable
from runtime.objects import Archive

MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_FILES = 20_000
SINGLE_FILE_NAME = "function.py"


class Packages:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "packages"

    async def materialize(self, archive: Archive) -> Path:
        """Path to give ``/v2/specialize``: a directory (zip) or a single ``.py`` file."""
        if archive.checksum:
            ready = self._ready_path(archive.checksum)
            if ready is not None:
                return ready
        data = await self._fetch(archive)
        digest = hashlib.sha256(data).hexdigest()
        if archive.checksum and digest != archive.checksum:
            raise PackageUnavailable(f"checksum mismatch: expected {archive.checksum}, got {digest}")
        return self._ready_path(digest) or self._unpack(data, digest)

    def _ready_path(self, digest: str) -> Path | None:
        target = self.root / digest
        if not (target / ".complete").exists():
            return None
        return target / SINGLE_FILE_NAME if (target / ".single").exists() else target / "deploy"

    async def _fetch(self, archive: Archive) -> bytes:
        if archive.type == "literal":
            try:
                return base64.b64decode(archive.literal or "", validate=True)
            except (binascii.Error, ValueError):
                raise PackageUnavailable("spec.deployment.literal is not valid base64") from None
        assert archive.url is not None
        timeout = aiohttp.ClientTimeout(total=60)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(archive.url) as response,
            ):
                if response.status != 200:
                    raise PackageUnavailable(f"fetching {archive.url} answered {response.status}")
                data = await response.content.read(MAX_ARCHIVE_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PackageUnavailable(f"fetching {archive.url} failed: {exc}") from None
        if len(data) > MAX_ARCHIVE_BYTES:
            raise PackageUnavailable(f"the archive exceeds {MAX_ARCHIVE_BYTES} bytes")
        return data

    def _unpack(self, data: bytes, digest: str) -> Path:
        target = self.root / digest
        staging = self.root / f".{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if zipfile.is_zipfile(io.BytesIO(data)):
            _safe_extract(data, staging / "deploy")
        else:
            (staging / SINGLE_FILE_NAME).write_bytes(data)
            (staging / ".single").touch()
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        ready = self._ready_path(digest)
        assert ready is not None
        return ready


def _safe_extract(data: bytes, destination: Path) -> None:
    """Unzip refusing absolute paths, ``..``, links, too many files and zip bombs."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > MAX_FILES:
            raise PackageUnavailable(f"the archive has more than {MAX_FILES} files")
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise PackageUnavailable(f"the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        for member in members:
            _check_member(member)
        destination.mkdir(parents=True)
        archive.extractall(destination)


def _check_member(member: zipfile.ZipInfo) -> None:
    path = PurePosixPath(member.filename)
    if path.is_absolute() or ".." in path.parts or member.filename.startswith("\\"):
        raise PackageUnavailable(f"unsafe path in archive: {member.filename}")
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise PackageUnavailable(f"links are not allowed in archives: {member.filename}")
