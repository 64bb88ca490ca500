"""Counting without paying for it: counts capped with a ``LIMIT`` inside, and the planner's
estimates for what is too large to count on every page view.

A ``count(*)`` over a million contacts costs a sequential scan on every page load; a count of at
most ``cap + 1`` rows stops as soon as it knows the answer is "more than cap". Lists show the exact
number below the cap and "more than …" (or the planner's estimate, labelled as one) above it.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet


def capped_count(queryset: QuerySet[Any], cap: int) -> tuple[int, bool]:
    """(count, exact?): the exact count up to ``cap``; ``(cap, False)`` when there are more."""
    counted = queryset.order_by()[: cap + 1].count()
    if counted <= cap:
        return counted, True
    return cap, False


def planner_estimate(queryset: QuerySet[Any]) -> int:
    """The planner's row estimate for the queryset (EXPLAIN, no execution: about a millisecond)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def estimated_count(queryset: QuerySet[Any], cap: int) -> tuple[int, bool]:
    """(count, exact?): exact up to ``cap``; beyond it the planner's estimate (at least cap + 1),
    which the page must label as an estimate."""
    count, exact = capped_count(queryset, cap)
    if exact:
        return count, True
    return max(planner_estimate(queryset), cap + 1), False


def table_rows_estimate(table: str) -> int:
    """The row count ANALYZE last saw for ``table`` (0 before the first ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


class CappedPaginator(Paginator):
    """A paginator whose ``count`` stops at ``count_cap`` (see ``capped_count``); ``is_capped``
    says the real total is larger, so a page of a huge list never pays for counting all of it."""

    count_cap = 10_000
    is_capped = False

    def __init__(self, object_list: Any, per_page: int, *, count_cap: int | None = None, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, **kwargs)
        if count_cap is not None:
            self.count_cap = count_cap

    @property
    def count(self) -> int:
        if not hasattr(self, "_capped_count"):
            # a QuerySet: a list would have nothing to cap
            self._capped_count, exact = capped_count(cast(QuerySet[Any], self.object_list), self.count_cap)
            self.is_capped = not exact
        return self._capped_count
