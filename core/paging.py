"""One page of a list, and how many the whole list holds, asking ``COUNT`` only when needed.

The list is read with one row more than the page: when that row is not there, the page is the
last one (unless it is empty past the start), so the count is its offset plus its rows. Most
lists fit in one page, so most pages cost one query, not two. Used by the API's pagination
(core.api.pagination) and the pages' lists (functions.selectors.function_list)."""

from __future__ import annotations

from typing import Any


def page_and_count(rows: Any, offset: int, limit: int) -> tuple[list[Any], int]:
    """The rows ``offset`` to ``offset + limit`` of ``rows`` (a queryset, or a list), and how
    many ``rows`` holds in all."""
    found = list(rows[offset : offset + limit + 1])
    if len(found) <= limit and (found or offset == 0):
        return found, offset + len(found)
    return found[:limit], rows.count() if hasattr(rows, "query") else len(rows)
