"""Retention: delete old finished instances in batches, never in one huge DELETE.

A single ``DELETE`` of millions of rows holds its locks and its WAL for the whole run and
bloats the table in one go; batches of ``batch_size`` rows, each its own short statement
(``SKIP LOCKED``, so rows a runner is touching are left for the next run), keep the table
available to everything else while the prune goes on. Age is measured from ``updated_at``:
for a finished instance, the moment it finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections
from django.utils import timezone

from hephaestus_django.runtime.filters import status_value

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

_MATCHING = "FROM workflow_instances WHERE status = ANY(%s) AND updated_at < %s"
COUNT = f"SELECT count(*) {_MATCHING}"
DELETE_BATCH = (
    "DELETE FROM workflow_instances WHERE id IN "
    f"(SELECT id {_MATCHING} ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED)"
)


def parse_age(text: str) -> timedelta:
    """``"30d"`` -> 30 days; units s, m, h, d, w."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not an age; write a number and a unit: 45s, 90m, 12h, 30d, 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class PruneReport:
    """What a prune found and did."""

    matched: int
    deleted: int
    batches: int
    cutoff: datetime


class Pruner:
    """Deletes instances in some statuses whose last change is older than a cutoff."""

    def __init__(
        self,
        *,
        statuses: Iterable[str],
        older_than: timedelta,
        using: str = "default",
        batch_size: int = 1000,
        now: datetime | None = None,
    ) -> None:
        self.statuses = sorted({status_value(status) for status in statuses})
        if not self.statuses:
            raise ValueError("name at least one status to prune")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.cutoff = (now or timezone.now()) - older_than
        self.using = using
        self.batch_size = batch_size

    def run(self, *, dry_run: bool = False) -> PruneReport:
        """Delete batch after batch until none is full; with ``dry_run``, only count."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(COUNT, [self.statuses, self.cutoff])
            (matched,) = cursor.fetchone()
            if dry_run:
                return PruneReport(matched, 0, 0, self.cutoff)
            deleted = batches = 0
            while True:
                cursor.execute(DELETE_BATCH, [self.statuses, self.cutoff, self.batch_size])
                batches += 1
                deleted += cursor.rowcount
                if cursor.rowcount < self.batch_size:
                    return PruneReport(matched, deleted, batches, self.cutoff)
