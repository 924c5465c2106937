"""The hash chain of audit records: each record's hash covers its content and the hash of the
record before it in its chain, so editing, removing or reordering any record breaks every hash
after it. ``verify`` walks the chains and names the first record of each that does not hold.

Retention (``services.prune``) removes a chain's oldest records and appends an ``audit.pruned``
record naming the last removed one (``through_seq``, ``through_hash``): the chain then verifies
from that anchor, and removing records without such a record is still detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
PRUNED = "audit.pruned"
# The fields a hash covers, in order; ``id`` and ``hash`` itself are not covered.
HASHED = (
    "chain", "seq", "at", "tenant_id", "tenant_slug", "actor_type", "actor_user_id", "actor_name",
    "token_id", "ip", "user_agent", "object_type", "object_name", "action", "changes", "effects",
    "prev_hash",
)  # fmt: skip


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes a record's hash covers: its HASHED fields as sorted, compact JSON, the time in
    UTC with microseconds (what PostgreSQL keeps)."""
    values = {name: fields[name] for name in HASHED}
    at = values["at"]
    if isinstance(at, datetime):
        values["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


@dataclass(frozen=True)
class Break:
    """A record that does not hold, and why."""

    record_id: int
    chain: int
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"chain {self.chain}, record {self.record_id} (#{self.seq}): {self.reason}"


def breaks(records: Iterable[dict[str, Any]]) -> Iterator[Break]:
    """The first break of one chain, given its records in ``seq`` order (dicts of every HASHED
    field plus ``id`` and ``hash``): after a break nothing later can be trusted. The first record
    is taken as it is when it is not #1; ``anchor_break`` checks that a prune explains it."""
    expected: tuple[int, str] | None = None
    for record in records:
        seq, prev = expected or (record["seq"], record["prev_hash"])
        if record["seq"] == 1 and expected is None:
            prev = GENESIS
        problem = _problem(record, seq, prev)
        if problem:
            yield Break(record["id"], record["chain"], record["seq"], problem)
            return
        expected = (record["seq"] + 1, record["hash"])


def _problem(record: dict[str, Any], seq: int, prev: str) -> str:
    if record["seq"] != seq:
        return f"expected #{seq} next: records are missing"
    if record["prev_hash"] != prev:
        return "its previous hash is not the hash of the record before it"
    if digest(record) != record["hash"]:
        return "its content does not match its hash (edited)"
    return ""


def anchor_break(first: dict[str, Any], prunes: list[dict[str, Any]]) -> Break | None:
    """A chain whose first remaining record is not #1 needs an ``audit.pruned`` record naming
    the record just before it; otherwise records were removed by hand."""
    if first["seq"] == 1:
        return None
    for prune in prunes:
        through = prune["changes"].get("through_seq", [None, None])[1]
        through_hash = prune["changes"].get("through_hash", [None, None])[1]
        if through == first["seq"] - 1 and through_hash == first["prev_hash"]:
            return None
    return Break(first["id"], first["chain"], first["seq"], "records before it were removed without a prune")
