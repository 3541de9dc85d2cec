"""The admin's count of an unfiltered list: exact up to a limit, PostgreSQL's estimate beyond.

A ``count(*)`` of a million rows costs the list page more than the page itself; the admin shows
"more than N" with the planner's estimate instead, both read in one round trip.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import QuerySet

from hephaestus_django.postgres.sql import COUNT_AND_ESTIMATE


def count_and_estimate(queryset: QuerySet[Any], limit: int) -> tuple[int, int]:
    """Rows of ``queryset``'s table counted up to ``limit + 1``, and the planner's estimate of
    the table's size (-1 before the table is first analysed)."""
    connection = connections[queryset.db]
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(COUNT_AND_ESTIMATE.format(table=table), [limit + 1, table])
        counted, estimate = cursor.fetchone()
    return int(counted), int(estimate)
