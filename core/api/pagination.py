from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.views import APIView

from core.paging import page_and_count


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; responses carry ``count``, ``next``, ``previous``, ``results``. The
    count is asked only when the page does not tell it (core.paging)."""

    default_limit = 50
    max_limit = 500

    def paginate_queryset(
        self, queryset: Any, request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        page, self.count = page_and_count(queryset, self.offset, self.limit)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return page
