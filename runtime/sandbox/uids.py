"""One unprivileged uid per tenant namespace, allocated once and kept.

The allocation is a JSON file (``{namespace: uid}``), written atomically. A uid is never given to
a second namespace, and never reused: a namespace deleted and created again gets its old uid back,
which is safe because nothing of the old one (processes, files) outlives its deletion. uids that
belong to an account of this machine (``/etc/passwd``), or to a user's subordinate range
(``/etc/subuid``, ``/etc/subgid``: rootless containers run as those), are skipped.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
from pathlib import Path


class UidsExhausted(RuntimeError):
    """Every uid of the configured range is taken."""


class UidMap:
    def __init__(self, path: Path, base: int, count: int = 1_000_000) -> None:
        """Namespaces get uids ``base``, ``base + 1``, ... below ``base + count``."""
        if base < 1000:
            raise ValueError("the sandbox uid range must start at 1000 or above")
        self.path = path
        self.base = base
        self.count = count
        self._lock = threading.Lock()
        self._uids: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}

    def uid(self, namespace: str) -> int:
        """The namespace's uid, allocated (and saved) on first use."""
        with self._lock:
            if namespace not in self._uids:
                self._uids[namespace] = self._next_free()
                self._save()
            return self._uids[namespace]

    def _next_free(self) -> int:
        taken = set(self._uids.values())
        reserved = _subordinate_ranges()
        candidate = max(taken, default=self.base - 1) + 1
        while candidate in taken or _is_account(candidate) or any(candidate in r for r in reserved):
            candidate += 1
        if candidate >= self.base + self.count:
            raise UidsExhausted(f"no free uid left in {self.base}..{self.base + self.count - 1}")
        return candidate

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self._uids, sort_keys=True))
        os.replace(temp, self.path)


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _subordinate_ranges(files: tuple[str, ...] = ("/etc/subuid", "/etc/subgid")) -> list[range]:
    """The ids delegated to users (``name:first:count`` lines); a bad line is ignored."""
    ranges = []
    for name in files:
        try:
            lines = Path(name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                first, count = int(fields[1]), int(fields[2])
                ranges.append(range(first, first + count))
    return ranges
