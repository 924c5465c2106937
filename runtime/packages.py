"""Package archives: fetched (literal or url), verified against their sha256, unpacked once per
namespace.

Archives are content-addressed under ``<state>/packages/<namespace>/<sha256>/``, so a restart or a
second function using the same archive costs nothing. A namespace's directory is what its sandbox
sees as ``/packages`` (read-only): one tenant's packages are never in another tenant's view, even
when the archives are the same. Unpacked files are world-readable (the sandbox runs as another uid)
and never writable but by the runtime.
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
    def __init__(self, root: Path) -> None:
        """``root``: the directory holding one directory of packages per namespace."""
        self.root = root
        # (namespace, sha256) -> the ready path, once seen ready: an apply asks again for every
        # function's package, and a package never changes once unpacked (it is content-addressed);
        # only ``remove_namespace`` takes packages away.
        self._known: dict[tuple[str, str], Path] = {}

    async def materialize(self, archive: Archive, namespace: str) -> Path:
        """Host path of the code to specialize: a directory (zip) or a single ``.py`` file. A
        package already unpacked (by this process or before a restart) is neither fetched nor
        unpacked again."""
        if archive.checksum:
            known = self._known.get((namespace, archive.checksum))
            if known is not None:
                return known
            ready = self._ready_path(namespace, archive.checksum)
            if ready is not None:
                self._known[(namespace, archive.checksum)] = ready
                return ready
        data = await self._fetch(archive)
        digest = hashlib.sha256(data).hexdigest()
        if archive.checksum and digest != archive.checksum:
            raise PackageUnavailable(f"checksum mismatch: expected {archive.checksum}, got {digest}")
        ready = self._ready_path(namespace, digest) or self._unpack(data, namespace, digest)
        self._known[(namespace, digest)] = ready
        return ready

    def _ready_path(self, namespace: str, digest: str) -> Path | None:
        target = os.path.join(self.root, namespace, digest)  # strings: a restore asks 10,000 times
        if not os.path.exists(os.path.join(target, ".complete")):
            return None
        single = os.path.exists(os.path.join(target, ".single"))
        return Path(target, SINGLE_FILE_NAME if single else "deploy")

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

    def _unpack(self, data: bytes, namespace: str, digest: str) -> Path:
        directory = self.root / namespace
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        target = directory / digest
        # Staged in the same directory, so that the rename into place is atomic; workers are only
        # ever pointed at complete packages.
        staging = directory / f".{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        if zipfile.is_zipfile(io.BytesIO(data)):
            _safe_extract(data, staging / "deploy")
        else:
            (staging / SINGLE_FILE_NAME).write_bytes(data)
            (staging / ".single").touch()
        _readable_by_all(staging)
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        ready = self._ready_path(namespace, digest)
        assert ready is not None
        return ready

    def namespaces(self) -> set[str]:
        """The namespaces that have packages here."""
        return {path.name for path in self.root.iterdir()} if self.root.is_dir() else set()

    def remove_namespace(self, namespace: str) -> None:
        """Forget a deleted namespace's packages."""
        self._known = {key: path for key, path in self._known.items() if key[0] != namespace}
        shutil.rmtree(self.root / namespace, ignore_errors=True)


def _readable_by_all(root: Path) -> None:
    """Directories 0755, files 0644 (0755 when executable by their owner): the sandbox's uid reads
    them whatever the runtime's umask, and only the runtime may change them."""
    for path in (root, *root.rglob("*")):
        mode = path.stat().st_mode
        path.chmod(0o755 if path.is_dir() or mode & stat.S_IXUSR else 0o644)


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
