"""The runtime's objects, kept in memory and on disk so a restart serves everything again.

Each object is one JSON file, written atomically (temp file + rename), under
``<state>/objects/<plural>/<namespace>/<name>.json``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.errors import Conflict, InvalidObject, NotFound
from runtime.objects import PARSERS, Parsed

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # plural, namespace, name


class Store:
    def __init__(self, state_dir: Path, check: Callable[[Parsed], None] | None = None) -> None:
        """``check``: a rule beyond the object's own validity (raises InvalidObject), applied to
        every object accepted or loaded."""
        self.check = check
        self.root = state_dir / "objects"
        self.raw: dict[Key, dict[str, Any]] = {}
        self.parsed: dict[Key, Any] = {}
        self._version = 0

    def load(self) -> int:
        """Read every stored object; invalid files are logged and skipped. Returns the count."""
        for path in sorted(self.root.glob("*/*/*.json")):
            plural, namespace = path.parent.parent.name, path.parent.name
            try:
                raw = json.loads(path.read_text())
                self._remember((plural, namespace, path.stem), raw)
            except (ValueError, InvalidObject) as exc:
                log.error("skipping unreadable object %s: %s", path, exc)
        return len(self.raw)

    def _parse(self, plural: str, namespace: str, raw: dict[str, Any]) -> Parsed:
        parsed = PARSERS[plural](raw, namespace)
        if self.check is not None:
            self.check(parsed)
        return parsed

    def _remember(self, key: Key, raw: dict[str, Any]) -> None:
        self.parsed[key] = self._parse(key[0], key[1], raw)
        self.raw[key] = raw
        self._version = max(self._version, int(raw["metadata"].get("resourceVersion", "0") or 0))

    def get(self, key: Key) -> dict[str, Any]:
        if key not in self.raw:
            raise NotFound(f"{key[0]} {key[1]}/{key[2]} not found")
        return self.raw[key]

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            raw for (p, ns, _), raw in sorted(self.raw.items()) if p == plural and namespace in (None, ns)
        ]

    def items(self, plural: str) -> Iterator[Any]:
        return (obj for (p, _, _), obj in self.parsed.items() if p == plural)

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
        self._write(key, raw)
        self._remember(key, raw)
        return raw

    def delete(self, key: Key) -> None:
        self.get(key)
        self._path(key).unlink(missing_ok=True)
        del self.raw[key], self.parsed[key]

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

    def _write(self, key: Key, raw: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(raw))
        os.replace(temp, path)
