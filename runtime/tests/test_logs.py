"""The log collector's budgets: one tenant's flood costs only its own lines."""

from __future__ import annotations

from runtime.logs import LogCollector


def test_a_flooding_namespace_loses_only_its_own_lines() -> None:
    collector = LogCollector(None, 1000)
    collector.NAMESPACE_BUDGET = 10_000
    loud, quiet = (lambda: ("faas-loud", "f", "uid-f")), (lambda: ("faas-quiet", "g", "uid-g"))

    for _ in range(1000):
        collector._raw(loud, "stdout", b"x" * 1000)
    collector._raw(quiet, "stdout", b"still heard")

    queued = [entry for _, entry in list(collector.queue._queue)]  # type: ignore[attr-defined]
    assert sum(e["namespace"] == "faas-loud" for e in queued) < 10  # its budget, then dropped
    assert [e["message"] for e in queued if e["namespace"] == "faas-quiet"] == ["still heard"]
    assert collector.dropped["faas-loud"] > 900
    assert collector.queued["faas-loud"] <= collector.NAMESPACE_BUDGET


def test_the_dropped_lines_are_said_once_there_is_room_again() -> None:
    collector = LogCollector(None, 1000)
    collector.NAMESPACE_BUDGET = 3_000
    loud = lambda: ("faas-loud", "f", "uid-f")  # noqa: E731
    for _ in range(10):
        collector._raw(loud, "stdout", b"x" * 1000)
    batch = [collector.queue.get_nowait() for _ in range(collector.queue.qsize())]
    collector._written(batch)  # stored: the budget is free again

    collector._raw(loud, "stdout", b"after")

    messages = [entry["message"] for _, entry in list(collector.queue._queue)]  # type: ignore[attr-defined]
    assert messages[0].startswith("[runtime] 8 lines were dropped")
    assert messages[1] == "after"
