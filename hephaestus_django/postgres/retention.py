"""Retention: delete old finished instances in batches, never in one huge DELETE.

A single ``DELETE`` of millions of rows holds its locks and its WAL for the whole run and
bloats the table in one go; batches of ``batch_size`` rows, each its own short statement
(``SKIP LOCKED``, so rows a runner is touching are left for the next run), keep the table
available to everything else while the prune goes on. Age is measured from ``updated_at``:
for a finished instance, the moment it finished.

Each batch is an index scan of ``idx_workflow_instances_prune`` (``status, updated_at, id``)
that starts where the previous batch stopped: statuses are pruned one at a time, oldest first,
and every batch asks only for rows after the last ``(updated_at, id)`` the previous one deleted
(keyset pagination). Without that, every batch would walk again over the index entries of the
rows earlier batches deleted, which stay in the index until a vacuum removes them, and a
``status = ANY(...)`` over several statuses could not be read from the index in
``updated_at`` order at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from django.db import connections
from django.utils import timezone

from hephaestus_django.core.status import Status
from hephaestus_django.postgres.sql import PRUNE_AFTER, PRUNE_BATCH
from hephaestus_django.runtime.filters import status_value

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

INDEX = "idx_workflow_instances_prune"
"""The index every batch is read from."""
INDEXED_STATUSES = (Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value)
"""The statuses the prune index covers: it is partial, so that the writes of instances still
under way (several per instance) do not pay for it; a finished instance is written once more at
most. Pruning other statuses works too, read through the status index and sorted per batch."""


def _literal(status: str) -> str:
    """``status`` as an SQL literal; only the statuses of :class:`Status` are accepted.

    Statuses are written into the SQL rather than bound, so that the planner can prove a batch
    matches the partial index's condition also when the database alias binds parameters on the
    server (``server_side_binding``), where a generic plan cannot see a parameter's value.
    """
    if status not in {member.value for member in Status}:
        raise ValueError(f"unknown status {status!r}")
    return f"'{status}'"


def count_sql(statuses: Iterable[str]) -> str:
    """The statement counting the rows in ``statuses`` changed before ``%(cutoff)s``."""
    listed = ", ".join(_literal(status) for status in statuses)
    return (
        f"SELECT count(*) FROM workflow_instances WHERE status IN ({listed})"
        " AND updated_at < %(cutoff)s"
    )


def batch_sql(status: str, *, first: bool) -> str:
    """The statement deleting one batch of ``status``: its row count and last key deleted.

    It deletes the oldest ``%(limit)s`` rows changed before ``%(cutoff)s`` that no one holds
    locked and returns one row, ``(deleted, updated_at, id)`` of the last row deleted, or none
    if it deleted nothing. After the first batch of a status (``first=False``) it starts after
    the key ``(%(after_at)s, %(after_id)s)`` the previous batch returned.
    """
    return PRUNE_BATCH.format(status=_literal(status), after="" if first else PRUNE_AFTER)


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
    """What a prune found and did; ``interrupted`` when it was stopped before the end."""

    matched: int
    deleted: int
    batches: int
    cutoff: datetime
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Rows deleted per second so far (0 before the first batch)."""
        return self.deleted / self.elapsed_s if self.elapsed_s > 0 else 0.0


Progress = Callable[[PruneReport], None]
"""Called after every batch with the totals so far."""


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

    def count(self) -> int:
        """How many rows match now."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(count_sql(self.statuses), {"cutoff": self.cutoff})
            (matched,) = cursor.fetchone()
        return int(matched)

    def run(
        self,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> PruneReport:
        """Delete batch after batch until none is full; with ``dry_run``, only count.

        ``progress`` is called after every batch. ``stop`` is asked before every batch: once it
        returns true, the prune ends there (the batches done stay deleted) and the report says
        ``interrupted``. Each batch is one statement in autocommit, so a batch is either
        deleted whole or not at all, also when the process is interrupted in the middle of it.
        """
        matched = self.count()
        report = PruneReport(matched, 0, 0, self.cutoff)
        if dry_run:
            return report
        started = time.monotonic()

        def clock() -> float:
            return time.monotonic() - started

        with connections[self.using].cursor() as cursor:
            for status in self.statuses:
                after: tuple[datetime, UUID] | None = None
                while True:
                    if stop is not None and stop():
                        return replace(report, elapsed_s=clock(), interrupted=True)
                    params: dict[str, object] = {"cutoff": self.cutoff, "limit": self.batch_size}
                    if after is not None:
                        params.update(after_at=after[0], after_id=after[1])
                    cursor.execute(batch_sql(status, first=after is None), params)
                    last = cursor.fetchone()
                    deleted = int(last[0]) if last else 0
                    report = replace(
                        report,
                        deleted=report.deleted + deleted,
                        batches=report.batches + 1,
                        elapsed_s=clock(),
                    )
                    if progress is not None:
                        progress(report)
                    if deleted < self.batch_size:
                        break
                    after = (last[1], last[2])
        return replace(report, elapsed_s=clock())
