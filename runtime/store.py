"""The runtime's objects, kept in memory and on disk so a restart serves everything again.

Each object is one JSON file, written atomically (temp file + rename), under
``<state>/objects/<plural>/<namespace>/<name>.json``.

In memory each object is kept twice: parsed (``parsed``, what the runtime acts on) and as the
JSON it is stored as (``raw``, a read-only mapping that decodes an object when it is read:
the control API's GETs and lists, the asynchronous caller's policy). Keeping the stored bytes
rather than their decoded dicts makes an idle function cost the runtime a few KiB instead of a dozen
(issue 19): a Function's dicts of dicts are ten times the size of its JSON.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.errors import Conflict, InvalidObject, NotFound
from runtime.objects import PARSERS, Parsed

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # plural, namespace, name


class RawObjects(Mapping[Key, dict[str, Any]]):
    """The stored objects as their compact JSON; each read decodes a fresh dict (the caller may
    change it freely). Membership, ``len`` and iteration read no JSON."""

    def __init__(self) -> None:
        self._encoded: dict[Key, bytes] = {}

    def __getitem__(self, key: Key) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self._encoded[key])
        return decoded

    def __contains__(self, key: object) -> bool:
        return key in self._encoded

    def __iter__(self) -> Iterator[Key]:
        return iter(self._encoded)

    def __len__(self) -> int:
        return len(self._encoded)

    def keep(self, key: Key, encoded: bytes) -> None:
        """``encoded``: the object's JSON, as stored."""
        self._encoded[key] = encoded

    def forget(self, key: Key) -> None:
        del self._encoded[key]


class Store:
    def __init__(self, state_dir: Path, check: Callable[[Parsed], None] | None = None) -> None:
        """``check``: a rule beyond the object's own validity (raises InvalidObject), applied to
        every object accepted or loaded."""
        self.check = check
        self.root = state_dir / "objects"
        self.raw = RawObjects()
        self.parsed: dict[Key, Any] = {}
        # The same objects by kind, in the same order: ``items`` reads one kind without going
        # through every object (an apply reads each kind, and a restore holds tens of thousands).
        self._kinds: dict[str, dict[Key, Any]] = {}
        self._version = 0

    def load(self) -> int:
        """Read every stored object, in the order of their paths; invalid files are logged and
        skipped. Returns the count."""
        # Tens of thousands of fresh dicts would set off a full collection every few hundred
        # objects, each walking everything loaded so far; none of them is garbage yet.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for key, path in self._stored():
                try:
                    with open(path, "rb") as file:
                        encoded = file.read()
                    self._remember(key, json.loads(encoded), encoded)
                except (OSError, ValueError, InvalidObject) as exc:
                    log.error("skipping unreadable object %s: %s", path, exc)
        finally:
            if collecting:
                gc.enable()
        return len(self.raw)

    def _stored(self) -> Iterator[tuple[Key, str]]:
        """(key, path) of every ``<plural>/<namespace>/<name>.json`` under the root, sorted."""
        for plural in _directories(str(self.root)):
            for namespace in _directories(os.path.join(self.root, plural)):
                directory = os.path.join(self.root, plural, namespace)
                namespace = sys.intern(namespace)  # one string for all the namespace's objects
                for entry in sorted(os.listdir(directory)):
                    if entry.endswith(".json"):
                        yield (plural, namespace, entry[: -len(".json")]), os.path.join(directory, entry)

    def _parse(self, plural: str, namespace: str, raw: dict[str, Any]) -> Parsed:
        parsed = PARSERS[plural](raw, namespace)
        if self.check is not None:
            self.check(parsed)
        return parsed

    def _remember(self, key: Key, raw: dict[str, Any], encoded: bytes) -> None:
        parsed = self._parse(key[0], key[1], raw)
        self.parsed[key] = parsed
        self._kinds.setdefault(key[0], {})[key] = parsed
        self.raw.keep(key, encoded)
        self._version = max(self._version, int(raw["metadata"].get("resourceVersion", "0") or 0))

    def get(self, key: Key) -> dict[str, Any]:
        if key not in self.raw:
            raise NotFound(f"{key[0]} {key[1]}/{key[2]} not found")
        return self.raw[key]

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        keys = sorted(key for key in self._kinds.get(plural, ()) if namespace in (None, key[1]))
        return [self.raw[key] for key in keys]

    def items(self, plural: str) -> Iterator[Any]:
        return iter(list(self._kinds.get(plural, {}).values()))

    def put(self, plural: str, namespace: str, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """Create (409 if it exists) or replace (409 on a stale ``metadata.resourceVersion``)."""
        parsed = self._parse(plural, namespace, body)
        key = (plural, namespace, parsed.meta.name)
        current = self.raw.get(key)
        if create and current is not None:
            raise Conflict(f"{plural} {namespace}/{parsed.meta.name} already exists")
        if not create and current is None:
            raise NotFound(f"{plural} {namespace}/{parsed.meta.name} not found")
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if current is not None and expected and expected != current["metadata"]["resourceVersion"]:
            raise Conflict("metadata.resourceVersion is stale: read the object again")
        raw = self._stamp(body, namespace, current)
        self._remember(key, raw, self._write(key, raw))
        return raw

    def delete(self, key: Key) -> None:
        self.get(key)
        self._path(key).unlink(missing_ok=True)
        self.raw.forget(key)
        del self.parsed[key], self._kinds[key[0]][key]

    def _stamp(self, body: dict[str, Any], namespace: str, current: dict[str, Any] | None) -> dict[str, Any]:
        self._version += 1
        metadata = dict(body.get("metadata") or {})
        old = (current or {}).get("metadata", {})
        metadata.update(
            namespace=namespace,
            resourceVersion=str(self._version),
            uid=old.get("uid") or str(uuid.uuid4()),
            creationTimestamp=old.get("creationTimestamp")
            or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        return {**body, "metadata": metadata}

    def _path(self, key: Key) -> Path:
        return self.root / key[0] / key[1] / f"{key[2]}.json"

    def _write(self, key: Key, raw: dict[str, Any]) -> bytes:
        """Store ``raw``; returns the JSON written (compact: it is also what memory holds)."""
        encoded = json.dumps(raw, separators=(",", ":")).encode()
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_bytes(encoded)
        os.replace(temp, path)
        return encoded


def _directories(path: str) -> list[str]:
    """The names of the directories in ``path``, sorted; none when it does not exist."""
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except FileNotFoundError:
        return []
