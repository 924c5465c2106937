"""Upload checks: every refusal kind, with real malicious zips, and nothing written when refused."""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from core.errors import ValidationFailed
from functions import archives
from functions.archives import ArchiveLimits, ZipEntry, inspect_zip, make_zip, safe_extract, sha256

Member = tuple[str | zipfile.ZipInfo, bytes]


def zip_of(members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def info(name: str, mode: int) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name)
    member.external_attr = mode << 16
    return member


def patch_headers(data: bytes, patch: dict[str, int], index: int = 0) -> bytes:
    """The zip with fields of member ``index`` changed in its local and central headers
    (``flags``, ``method``, ``crc``, ``size``, ``offset`` — the last in the central header only)."""
    local_fields = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I"), "size": (22, "<I")}
    central_fields = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "size": (24, "<I")}
    central_fields["offset"] = (42, "<I")
    out = bytearray(data)
    for signature, fields in ((b"PK\x03\x04", local_fields), (b"PK\x01\x02", central_fields)):
        start = _nth(out, signature, index)
        for key, value in patch.items():
            if key in fields:
                offset, fmt = fields[key]
                struct.pack_into(fmt, out, start + offset, value)
    return bytes(out)


def _nth(data: bytearray, signature: bytes, index: int) -> int:
    position = -1
    for _ in range(index + 1):
        position = data.index(signature, position + 1)
    return position


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """An empty folder that holds the extraction destination; it must stay empty on refusal."""
    folder = tmp_path / "box"
    folder.mkdir()
    return folder


def assert_refused(data: bytes, code: str, box: Path, limits: ArchiveLimits = archives.DEFAULT_LIMITS) -> str:
    """Both entry points refuse ``data`` with ``code``, and nothing is written; returns the message."""
    with pytest.raises(ValidationFailed) as inspected:
        inspect_zip(data, limits)
    with pytest.raises(ValidationFailed) as extracted:
        safe_extract(data, box / "out", limits)
    for error in (inspected.value, extracted.value):
        assert error.code == code, error.message
        assert error.detail == {"archive": [error.message]}
    assert list(box.iterdir()) == []
    return inspected.value.message


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under ``root``, by relative name."""
    return {
        path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


# --- safe archives ---------------------------------------------------------------------------------


def test_safe_archive_extracts_exactly(box: Path) -> None:
    data = zip_of(
        [
            ("main.py", b"def main():\n    return 'hi'\n"),
            (info("lib/", 0o40700), b""),
            ("lib/util.py", b"X = 1\n"),
            ("./pkg//deep/mod.py", b""),
            (info("empty/", 0), b""),
            (info("script.sh", 0o100777), b"#!/bin/sh\n"),
        ]
    )

    entries = safe_extract(data, box / "out")

    assert entries[0] == ZipEntry(
        name="main.py", size=28, compressed_size=entries[0].compressed_size, is_dir=False
    )
    assert [entry.name for entry in entries] == [
        "main.py",
        "lib",
        "lib/util.py",
        "pkg/deep/mod.py",
        "empty",
        "script.sh",
    ]
    assert tree(box / "out") == {
        "empty": None,
        "lib": None,
        "lib/util.py": b"X = 1\n",
        "main.py": b"def main():\n    return 'hi'\n",
        "pkg": None,
        "pkg/deep": None,
        "pkg/deep/mod.py": b"",
        "script.sh": b"#!/bin/sh\n",
    }
    for path in [box / "out", *(box / "out").rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.lstat().st_mode) == expected, path
    assert [path.name for path in box.iterdir()] == ["out"]  # no staging folder left behind


def test_extracts_into_an_existing_empty_folder(box: Path) -> None:
    (box / "out").mkdir()
    safe_extract(zip_of([("main.py", b"x")]), box / "out")
    assert tree(box / "out") == {"main.py": b"x"}


def test_refuses_a_destination_with_content(box: Path) -> None:
    (box / "out").mkdir()
    (box / "out" / "old.py").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        safe_extract(zip_of([("main.py", b"x")]), box / "out")
    assert tree(box / "out") == {"old.py": b"old"}


def test_small_repetitive_files_are_not_bombs(box: Path) -> None:
    spaces = b" " * 500_000  # compresses about 1000 times, but is too small to matter
    safe_extract(zip_of([("table.txt", spaces)]), box / "out")
    assert (box / "out" / "table.txt").read_bytes() == spaces


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not a zip at all", zip_of([("main.py", b"x" * 100)])[:-30]])
def test_not_a_zip(data: bytes, box: Path) -> None:
    assert "not a readable zip" in assert_refused(data, "archive_invalid", box)


def test_corrupt_member_data(box: Path) -> None:
    good = zip_of([("main.py", os.urandom(2000))], compression=zipfile.ZIP_STORED)
    corrupt = good.replace(good[100:110], b"\0" * 10, 1)
    with pytest.raises(ValidationFailed) as error:
        safe_extract(corrupt, box / "out")
    assert error.value.code == "archive_invalid"
    assert "'main.py'" in error.value.message
    assert list(box.iterdir()) == []


def test_empty_archive(box: Path) -> None:
    assert_refused(zip_of([]), "archive_invalid", box)


def test_too_large(box: Path) -> None:
    data = bytes(archives.DEFAULT_LIMITS.max_archive_bytes + 1)
    with pytest.raises(ValidationFailed) as error:
        inspect_zip(data)
    assert error.value.code == "archive_too_large"
    assert error.value.status == 413
    assert_refused(
        zip_of([("a.py", os.urandom(2000))]), "archive_too_large", box, ArchiveLimits(max_archive_bytes=1000)
    )


def test_too_many_files(box: Path) -> None:
    data = zip_of((f"f{number}.py", b"") for number in range(2001))
    assert "2001 entries" in assert_refused(data, "archive_too_many_files", box)


def test_far_too_many_files_are_refused_before_parsing(box: Path) -> None:
    data = zip_of(((f"{number}", b"") for number in range(20_001)), compression=zipfile.ZIP_STORED)
    assert "far more than 2000 entries" in assert_refused(data, "archive_too_many_files", box)


def test_unpacked_size_over_the_limit(box: Path) -> None:
    data = zip_of([("a.bin", os.urandom(600)), ("b.bin", os.urandom(600))])
    message = assert_refused(data, "archive_too_large", box, ArchiveLimits(max_unpacked_bytes=1000))
    assert "unpacks to 1200 bytes" in message


@pytest.fixture(scope="module")
def gigabyte_of_zeros() -> bytes:
    """A real zip bomb: 1 GiB of zeros, deflated (about 4.5 MiB), built from a generator."""
    buffer = io.BytesIO()
    member = zipfile.ZipInfo("zeros.bin")
    member.compress_type = zipfile.ZIP_DEFLATED
    member._compresslevel = 1  # type: ignore[attr-defined]  # the fastest level still makes a bomb
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(buffer, "w") as archive, archive.open(member, "w") as output:
        for _ in range(1024):
            output.write(chunk)
    return buffer.getvalue()


def test_zip_bomb(gigabyte_of_zeros: bytes, box: Path) -> None:
    message = assert_refused(gigabyte_of_zeros, "archive_bomb", box)
    assert "'zeros.bin' unpacks" in message


def test_declared_huge_size_from_a_small_stream(box: Path) -> None:
    data = patch_headers(zip_of([("zeros.bin", bytes(10_000))]), {"size": 1 << 30})
    assert_refused(data, "archive_bomb", box)


def test_total_ratio(box: Path) -> None:
    # Each member is under the exemption, but together they unpack far more than they weigh.
    data = zip_of((f"z{number}.bin", bytes(9_000)) for number in range(20))
    message = assert_refused(data, "archive_bomb", box, ArchiveLimits(ratio_exempt_bytes=10_000))
    assert message.startswith("The archive unpacks")


def test_overlapping_members(box: Path) -> None:
    # Two central-directory entries sharing one compressed stream (a "non-recursive" zip bomb).
    data = patch_headers(zip_of([("a.bin", b"a" * 100), ("b.bin", b"a" * 100)]), {"offset": 0}, index=1)
    assert "overlap" in assert_refused(data, "archive_bomb", box)


def test_header_lying_about_size_is_refused_while_extracting(box: Path) -> None:
    data = zip_of([("main.py", os.urandom(1000))], compression=zipfile.ZIP_STORED)
    lying = patch_headers(data, {"size": 10})  # the stored stream holds 1000 bytes
    inspect_zip(lying)  # the declared sizes look fine
    with pytest.raises(ValidationFailed) as error:
        safe_extract(lying, box / "out")
    assert error.value.code == "archive_invalid"  # zipfile stops at the declared size; the CRC fails
    assert list(box.iterdir()) == []


def test_byte_counter_stops_at_the_declared_size_and_the_budget() -> None:
    # zipfile already stops at the declared size; this counter is the second guard behind it.
    with pytest.raises(ValidationFailed) as error:
        archives._copy_member(
            io.BytesIO(bytes(100)), io.BytesIO(), name="a", declared=10, budget=archives._Budget(1000)
        )
    assert error.value.code == "archive_bomb"
    budget = archives._Budget(150)
    archives._copy_member(io.BytesIO(bytes(100)), io.BytesIO(), name="a", declared=100, budget=budget)
    with pytest.raises(ValidationFailed, match="more than 150 bytes"):
        archives._copy_member(io.BytesIO(bytes(100)), io.BytesIO(), name="b", declared=100, budget=budget)


@pytest.mark.parametrize(
    "name", ["/etc/cron.d/x", "C:\\x.py", "C:/x.py", "\\\\server\\share\\x.py", "//server/x"]
)
def test_absolute_paths(name: str, box: Path) -> None:
    assert "absolute" in assert_refused(zip_of([(name, b"x")]), "archive_unsafe_path", box)


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "a/..", "lib/../../../etc/passwd"])
def test_parent_components(name: str, box: Path) -> None:
    assert repr(name) in assert_refused(zip_of([(name, b"x")]), "archive_unsafe_path", box)


def test_backslashes(box: Path) -> None:
    assert "backslash" in assert_refused(zip_of([("lib\\util.py", b"x")]), "archive_unsafe_path", box)


@pytest.mark.parametrize("name", ["a\x01.py", "a\n.py", "a\x7f.py"])
def test_control_characters(name: str, box: Path) -> None:
    assert_refused(zip_of([(name, b"x")]), "archive_unsafe_path", box)


def test_nul_in_a_name(box: Path) -> None:
    # zipfile cuts names at NUL ("a" here); the check reads the name as stored.
    data = zip_of([("aXb.py", b"x")]).replace(b"aXb.py", b"a\0b.py")
    assert "'a\\x00b.py'" in assert_refused(data, "archive_unsafe_path", box)


def test_too_long_path(box: Path) -> None:
    assert_refused(zip_of([("a" * 256, b"x")]), "archive_unsafe_path", box)


def test_symlink(box: Path) -> None:
    data = zip_of([("main.py", b"x"), (info("secrets", 0o120777), b"/etc/shadow")])
    assert "'secrets' is a symbolic link" in assert_refused(data, "archive_link", box)


@pytest.mark.parametrize("mode", [stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644, stat.S_IFSOCK | 0o644])
def test_special_files(mode: int, box: Path) -> None:
    assert "special file" in assert_refused(zip_of([(info("dev", mode), b"")]), "archive_link", box)


def test_type_that_contradicts_the_name(box: Path) -> None:
    assert_refused(zip_of([(info("folder", 0o40755), b"")]), "archive_invalid", box)


def test_duplicate_names(box: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_of([("main.py", b"one"), ("main.py", b"two")])
    assert "more than once" in assert_refused(data, "archive_invalid", box)
    assert_refused(zip_of([("main.py", b"one"), ("./main.py", b"two")]), "archive_invalid", box)


def test_a_file_used_as_a_folder(box: Path) -> None:
    data = zip_of([("lib", b"file"), ("lib/util.py", b"x")])
    assert "both a file and a folder" in assert_refused(data, "archive_invalid", box)


def test_encrypted_member(box: Path) -> None:
    data = patch_headers(zip_of([("main.py", b"x")]), {"flags": 0x1})
    assert "'main.py' is encrypted" in assert_refused(data, "archive_encrypted", box)


def test_unsupported_compression(box: Path) -> None:
    data = patch_headers(zip_of([("main.py", b"x")]), {"method": 99})  # AES (WinZip)
    assert "compression method 99" in assert_refused(data, "archive_invalid", box)


# --- single files ----------------------------------------------------------------------------------


def test_python_module_name() -> None:
    assert archives.python_module_name("handler.py") == "handler"
    assert archives.python_module_name("_private2.py") == "_private2"


@pytest.mark.parametrize(
    "name", ["1x.py", "my-func.py", "a.txt", "class.py", "../x.py", "x.PY", "x.py.py", ".py"]
)
def test_python_module_name_refuses(name: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        archives.python_module_name(name)
    assert error.value.detail == {"file": [error.value.message]}


def test_single_file_keeps_its_name() -> None:
    assert archives.single_file("handler.py", b"def main(): ...\n") == {"handler.py": "def main(): ...\n"}
    assert archives.single_file("main.py", "x = 1\n") == {"main.py": "x = 1\n"}
    with pytest.raises(ValidationFailed):
        archives.single_file("main.py", b"\xff\xfe")
    with pytest.raises(ValidationFailed) as error:
        archives.single_file("main.py", b"x" * 11, ArchiveLimits(max_archive_bytes=10))
    assert error.value.status == 413


def test_check_path_normalizes() -> None:
    assert archives.check_path("./a//b/") == "a/b"
    with pytest.raises(ValidationFailed):
        archives.check_path("./")


# --- reproducible zips -----------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "main.py").write_text("import pkg\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "data.json").write_text('{"a": 1}')
    return root


def test_make_zip_is_deterministic(tmp_path: Path) -> None:
    first = make_zip(make_tree(tmp_path / "one"))
    assert make_zip(tmp_path / "one") == first
    # Another copy, made at another time with other modes, zips to the same bytes.
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    os.utime(tmp_path / "two" / "main.py", (0, 0))
    (tmp_path / "two" / "main.py").chmod(0o700)
    assert sha256(make_zip(tmp_path / "two")) == sha256(first)
    (tmp_path / "two" / "main.py").write_text("import pkg  # changed\n")
    assert sha256(make_zip(tmp_path / "two")) != sha256(first)


def test_make_zip_entries(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(make_zip(make_tree(tmp_path / "src")))) as archive:
        members = archive.infolist()
    names = ["empty/", "main.py", "pkg/", "pkg/__init__.py", "pkg/sub/", "pkg/sub/data.json"]
    assert [member.filename for member in members] == names
    for member in members:
        assert member.date_time == (1980, 1, 1, 0, 0, 0)
        assert member.external_attr >> 16 == (0o40755 if member.is_dir() else 0o100644)


def test_make_zip_round_trips(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src")
    safe_extract(make_zip(source), tmp_path / "copy")
    assert tree(tmp_path / "copy") == tree(source)


def test_make_zip_refuses_links(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src")
    (source / "pkg" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ValidationFailed) as error:
        make_zip(source)
    assert error.value.code == "archive_link"
    assert "'pkg/passwd'" in error.value.message
    (source / "pkg" / "passwd").unlink()
    (source / "linked").symlink_to(source / "pkg", target_is_directory=True)
    with pytest.raises(ValidationFailed):
        make_zip(source)


def test_sha256() -> None:
    assert sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
