"""What runs, what is late, what failed: the questions ``hephaestus_status`` and the admin's
dashboard answer, asked of the database in one place so they cannot disagree.

:func:`snapshot` runs a bounded number of statements (at most ten, whatever the table's size)
in one transaction whose statements may each take :data:`STATEMENT_TIMEOUT_MS`, with sequential
scans discouraged (``enable_seqscan = off``): every question is answered through an index, and
none reads more than a fixed number of rows. Where an exact answer would read the whole table,
the answer says it is not exact (:class:`Count`'s ``kind``):

- **Instances per workflow and status.** Each status is counted exactly up to
  :data:`COUNT_LIMIT` rows (through the status index). A status within the limit is then
  counted per workflow exactly. One past it is split by workflow with PostgreSQL's own
  statistics: the extended statistics ``workflow_instances_wf_status`` (migration ``0009``)
  sample which (workflow, status) pairs are common, and each pair's frequency times the
  table's estimated size ("about N") is what the planner itself would estimate. A pair too rare
  to be in the sample shows as unknown, and before the first ``ANALYZE`` a status past the
  limit is "more than N".
- **Per hour over 24 hours.** *Started* counts ``inserted_at``; *completed* and *failed* count
  the ``updated_at`` of instances in those statuses now (the last write of a finished
  instance is the one that finished it; an instance retried since its failure counts where it
  is now). Each hour reads at most :data:`HOUR_SAMPLE` index entries per series, newest first:
  an hour with fewer is exact; one with more is extrapolated from the time those newest rows
  span within the time all of that hour's rows span ("about N"), so a burst is not taken for a
  steady rate.
- **Errors of the last day** are grouped by the error's type over the :data:`ERROR_SAMPLE`
  most recent failures of the last 24 hours (``sampled`` and ``capped`` say how many were read).
- **Overdue timers** (``due_at`` passed, through ``idx_workflow_instances_due``), **stalled
  instances** (running, their lease lapsed more than :data:`STALL_GRACE` ago, through
  ``idx_workflow_instances_stall``), **quarantined** ones (``idx_workflow_instances_quar``),
  and **failures in the last hour** (``idx_workflow_instances_prune``) are counted up to the
  limit, with the worst lateness read from the first entry of the index.
- **The last worker pass** is read from ``hephaestus_worker_passes``
  (:mod:`hephaestus_django.postgres.worker_passes`): the sweep's passes, and apart from them the
  *step workers'* (role ``jobs``: a job engine's workers receiving ``QueuedRunner``'s jobs).
- **The job queue** of a configured ``QueuedRunner``
  (:mod:`hephaestus_django.postgres.step_workers`):
  how many jobs are due and untaken, how long the oldest has waited, the engine's heartbeat.
  Read after the transaction above, on the queue's own database; two more statements.

:func:`queue_verdict` and :func:`step_worker_verdict` judge the last two against limits (by
default :data:`MAX_QUEUE_WAIT` and :data:`MAX_STEP_WORKER_SILENCE`), for ``--check`` and the
dashboard alike.

Every time is the database's: "now" is read once, at the start, and every question is asked
relative to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from django.db import connections, transaction

from hephaestus_django.core.status import Status
from hephaestus_django.postgres.sql import (
    ERRORS,
    ESTIMATES,
    HEALTH,
    HOURLY,
    HOURS,
    LIMIT_USE,
    PER_WORKFLOW,
    QUARANTINED,
    SNAPSHOT_BEGIN,
    SNAPSHOT_RESTORE,
    STATUS_COUNTS,
    WORKERS,
)
from hephaestus_django.postgres.step_workers import QueueState, configured_queue_state
from hephaestus_django.postgres.worker_passes import JOBS, SWEEP
from hephaestus_django.runtime.slots import LimitUse

COUNT_LIMIT = 10_000
"""Rows counted exactly, per status and per question, before an answer becomes "more than"."""
HOUR_SAMPLE = 250
"""Index entries read per hour and series of the 24-hour chart, at the most."""
ERROR_SAMPLE = 1_000
"""Failures of the last day whose errors are grouped, at the most (the most recent)."""
TOP_ERRORS = 10
"""Error types listed."""
MESSAGE_CHARS = 200
"""Characters of an error's message kept."""
QUARANTINED_SHOWN = 5
"""Quarantined instances listed, the most recent first."""
WORKERS_SHOWN = 10
LIMITS_SHOWN = 50
"""Concurrency limits and keys listed (those with the most waiting are not singled out)."""
"""Workers listed, the most recently seen first."""
STALL_GRACE = timedelta(minutes=1)
"""How long a running instance's lease may have lapsed before it counts as stalled: a worker
takes such an instance over in its next pass, so one that waits longer says that no worker
runs, or that they cannot keep up."""
MAX_QUEUE_WAIT = timedelta(minutes=5)
"""How long a due job may wait in ``QueuedRunner``'s queue for a worker before ``--check``
fails (``--max-queue-wait``) and the dashboard warns: workers too few, or gone."""
MAX_STEP_WORKER_SILENCE = timedelta(minutes=2)
"""How long no step worker may be seen (see :func:`step_worker_verdict`) before ``--check``
fails (``--max-step-worker-silence``) and the dashboard warns."""
STATEMENT_TIMEOUT_MS = 2_000
"""The most any one statement of a snapshot may take; PostgreSQL cancels it past that."""

Kind = Literal["exact", "about", "more_than"]


@dataclass(frozen=True)
class Count:
    """A number of rows: exact, PostgreSQL's estimate (``about``), or a floor (``more_than``)."""

    value: int
    kind: Kind = "exact"

    def __str__(self) -> str:
        if self.kind == "about":
            return f"about {self.value:,}"
        if self.kind == "more_than":
            return f"more than {self.value:,}"
        return f"{self.value:,}"

    def as_json(self) -> dict[str, Any]:
        return {"count": self.value, "kind": self.kind}


def _capped(counted: int, limit: int = COUNT_LIMIT) -> Count:
    """A count made with ``LIMIT limit + 1``."""
    return Count(limit, "more_than") if counted > limit else Count(counted)


@dataclass(frozen=True)
class WorkflowCounts:
    """One workflow's instances per status; a status missing from ``statuses`` is unknown
    (too rare in a status too large to count to appear in PostgreSQL's sample)."""

    workflow: str
    statuses: dict[str, Count]


@dataclass(frozen=True)
class Hour:
    """Instances started, completed and failed in the hour from ``start``."""

    start: datetime
    started: Count
    completed: Count
    failed: Count


@dataclass(frozen=True)
class ErrorGroup:
    """One error type among the last day's failures, and its most recent occurrence."""

    type: str
    count: int
    message: str
    step: str
    last_at: datetime


@dataclass(frozen=True)
class Quarantined:
    """A row a worker could not decode, and why."""

    id: UUID
    workflow: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class WorkerSeen:
    """A worker process's latest recorded pass on one storage."""

    worker: str
    storage: str
    host: str
    pid: int
    started_at: datetime
    last_pass_at: datetime
    passes: int
    handled: int


@dataclass(frozen=True)
class Snapshot:
    """The state of one database's instances and workers, at the database's ``now``."""

    using: str
    now: datetime
    by_status: dict[str, Count]
    by_workflow: list[WorkflowCounts]
    overdue: Count
    oldest_due_at: datetime | None
    stalled: Count
    oldest_lapsed_at: datetime | None
    quarantined: Count
    quarantined_latest: list[Quarantined]
    failed_last_hour: Count
    hours: list[Hour]
    errors: list[ErrorGroup]
    errors_sampled: int
    workers: list[WorkerSeen] = field(default_factory=list)
    """The sweep's (``hephaestus_worker``) latest passes, the most recent first."""
    step_workers: list[WorkerSeen] = field(default_factory=list)
    """The step workers' (role ``jobs``) latest records, the most recent first."""
    queue: QueueState | None = None
    """``QueuedRunner``'s queue; None with ``LocalRunner`` (the sweep runs the steps)."""
    limits: list[LimitUse] = field(default_factory=list)
    """Each concurrency limit and key in use: its slots held, and its line."""

    @property
    def step_worker_seen_at(self) -> datetime | None:
        """When a step worker was last seen: its last recorded job, or the engine's heartbeat."""
        seen = [w.last_pass_at for w in self.step_workers[:1]]
        if self.queue is not None and self.queue.heartbeat_at is not None:
            seen.append(self.queue.heartbeat_at)
        return max(seen, default=None)

    @property
    def step_worker_silence(self) -> timedelta | None:
        """Time since a step worker was last seen; None if none ever was."""
        seen = self.step_worker_seen_at
        return None if seen is None else max(self.now - seen, ZERO)

    @property
    def total(self) -> Count:
        """All instances: exact if every status was, else the least kind of them."""
        value = sum(count.value for count in self.by_status.values())
        kinds = {count.kind for count in self.by_status.values()}
        kind: Kind = "exact" if kinds <= {"exact"} else "about" if "about" in kinds else "more_than"
        return Count(value, kind)

    @property
    def worst_lateness(self) -> timedelta | None:
        """How late the most overdue timer is; None when none is."""
        return None if self.oldest_due_at is None else max(self.now - self.oldest_due_at, ZERO)

    @property
    def longest_stall(self) -> timedelta | None:
        """How long ago the longest-lapsed lease of a stalled instance lapsed."""
        return None if self.oldest_lapsed_at is None else self.now - self.oldest_lapsed_at

    @property
    def last_pass(self) -> WorkerSeen | None:
        """The most recent recorded worker pass; None if no worker was ever seen here."""
        return self.workers[0] if self.workers else None

    @property
    def worker_silence(self) -> timedelta | None:
        """Time since the last recorded worker pass; None if no worker was ever seen."""
        last = self.last_pass
        return None if last is None else max(self.now - last.last_pass_at, ZERO)

    @property
    def errors_capped(self) -> bool:
        """Whether the last day had more failures than were sampled for ``errors``."""
        return self.errors_sampled >= ERROR_SAMPLE

    def as_json(self) -> dict[str, Any]:
        """The snapshot as JSON-ready data (``hephaestus_status --json``)."""
        lateness, stall, silence = self.worst_lateness, self.longest_stall, self.worker_silence
        return {
            "database": self.using,
            "at": self.now.isoformat(),
            "instances": {
                "total": self.total.as_json(),
                "by_status": {name: count.as_json() for name, count in self.by_status.items()},
                "by_workflow": [
                    {
                        "workflow": row.workflow,
                        "statuses": {name: c.as_json() for name, c in row.statuses.items()},
                    }
                    for row in self.by_workflow
                ],
            },
            "overdue_timers": {
                **self.overdue.as_json(),
                "oldest_due_at": _iso(self.oldest_due_at),
                "worst_lateness_s": _seconds(lateness),
            },
            "stalled": {
                **self.stalled.as_json(),
                "oldest_lease_expired_at": _iso(self.oldest_lapsed_at),
                "longest_s": _seconds(stall),
                "grace_s": STALL_GRACE.total_seconds(),
            },
            "quarantined": {
                **self.quarantined.as_json(),
                "latest": [
                    {"id": str(q.id), "workflow": q.workflow, "reason": q.reason, "at": _iso(q.at)}
                    for q in self.quarantined_latest
                ],
            },
            "failed_last_hour": self.failed_last_hour.as_json(),
            "hours": [
                {
                    "start": _iso(hour.start),
                    "started": hour.started.as_json(),
                    "completed": hour.completed.as_json(),
                    "failed": hour.failed.as_json(),
                }
                for hour in self.hours
            ],
            "concurrency": [
                {
                    "limit": use.name,
                    "key": use.key,
                    "slots": use.limit,
                    "in_use": use.holding,
                    "waiting": use.waiting,
                }
                for use in self.limits
            ],
            "errors": {
                "sampled": self.errors_sampled,
                "capped": self.errors_capped,
                "top": [
                    {
                        "type": error.type,
                        "count": error.count,
                        "message": error.message,
                        "step": error.step,
                        "last_at": _iso(error.last_at),
                    }
                    for error in self.errors
                ],
            },
            "queue": None
            if self.queue is None
            else {
                **self.queue.as_json(),
                "step_worker_seen_at": _iso(self.step_worker_seen_at),
                "step_worker_silence_s": _seconds(self.step_worker_silence),
                "step_workers": [
                    {
                        "worker": w.worker,
                        "storage": w.storage,
                        "host": w.host,
                        "pid": w.pid,
                        "started_at": _iso(w.started_at),
                        "last_seen_at": _iso(w.last_pass_at),
                        "jobs": w.passes,
                    }
                    for w in self.step_workers
                ],
            },
            "workers": {
                "last_pass_at": _iso(self.last_pass.last_pass_at if self.last_pass else None),
                "silence_s": _seconds(silence),
                "seen": [
                    {
                        "worker": w.worker,
                        "storage": w.storage,
                        "host": w.host,
                        "pid": w.pid,
                        "started_at": _iso(w.started_at),
                        "last_pass_at": _iso(w.last_pass_at),
                        "passes": w.passes,
                        "handled": w.handled,
                    }
                    for w in self.workers
                ],
            },
        }


ZERO = timedelta(0)
STATUSES = [status.value for status in Status]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds(), 3)


def snapshot(
    using: str = "default", *, storages: Sequence[str] | None = None, with_queue: bool = True
) -> Snapshot:
    """Ask the database ``using`` how its instances and workers are doing.

    ``storages`` limits the workers listed to those that served these storage aliases (by
    default, every worker that recorded a pass in this database). ``with_queue``: read
    the configured ``QueuedRunner``'s queue too
    (:mod:`~hephaestus_django.postgres.step_workers`). Raises
    :class:`django.db.DatabaseError` if a statement runs out of :data:`STATEMENT_TIMEOUT_MS`
    (see :func:`timed_out`).
    """
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(SNAPSHOT_BEGIN, [f"{STATEMENT_TIMEOUT_MS}ms"])
        now, *previous = cursor.fetchone()[:5]

        cursor.execute(STATUS_COUNTS, [COUNT_LIMIT + 1, STATUSES])
        counted = {status: int(n) for status, n in cursor.fetchall()}
        small = [s for s, n in counted.items() if 0 < n <= COUNT_LIMIT]
        large = [s for s, n in counted.items() if n > COUNT_LIMIT]
        cells: dict[str, dict[str, Count]] = {}
        if small:
            cursor.execute(PER_WORKFLOW, [small])
            for workflow, status, n in cursor.fetchall():
                cells.setdefault(workflow, {})[status] = Count(int(n))
        by_status = {status: Count(n) for status, n in counted.items() if n <= COUNT_LIMIT}
        if large:
            cursor.execute(ESTIMATES)
            by_status.update(_estimated(cursor.fetchall(), large, cells))

        cursor.execute(
            HEALTH,
            {
                "now": now,
                "limit": COUNT_LIMIT + 1,
                "stalled": now - STALL_GRACE,
                "hour_ago": now - timedelta(hours=1),
            },
        )
        overdue, oldest_due, stalled, oldest_lapsed, quarantined, failed = cursor.fetchone()
        latest: list[Quarantined] = []
        if quarantined:
            cursor.execute(QUARANTINED, [MESSAGE_CHARS, QUARANTINED_SHOWN])
            latest = [Quarantined(*row) for row in cursor.fetchall()]

        first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
        cursor.execute(HOURLY, {"first": first, "sample": HOUR_SAMPLE})
        hours = [
            Hour(row[0], _hour(row[1:5]), _hour(row[5:9]), _hour(row[9:13]))
            for row in cursor.fetchall()
        ]

        cursor.execute(
            ERRORS,
            {
                "chars": MESSAGE_CHARS,
                "day_ago": now - timedelta(hours=24),
                "sample": ERROR_SAMPLE,
                "top": TOP_ERRORS,
            },
        )
        found = cursor.fetchall()
        errors = [ErrorGroup(t, int(n), m, s, at) for t, n, at, m, s, _ in found]
        sampled = int(found[0][5]) if found else 0

        where, params = "", []
        if storages is not None:
            where, params = "AND storage = ANY(%s::text[])", [list(storages)]
        cursor.execute(WORKERS.format(where=where), [SWEEP, *params, WORKERS_SHOWN])
        workers = [WorkerSeen(*row) for row in cursor.fetchall()]
        cursor.execute(WORKERS.format(where=where), [JOBS, *params, WORKERS_SHOWN])
        step_workers = [WorkerSeen(*row) for row in cursor.fetchall()]
        cursor.execute(LIMIT_USE, [LIMITS_SHOWN])
        limits = [LimitUse(*row) for row in cursor.fetchall()]
        cursor.execute(SNAPSHOT_RESTORE, previous)
    queue = configured_queue_state() if with_queue else None

    return Snapshot(
        using=using,
        now=now,
        by_status={status: by_status.get(status, Count(0)) for status in STATUSES},
        by_workflow=[
            # A status counted exactly that a workflow has no row of is 0; one estimated that
            # the statistics do not pair with the workflow is unknown, and left out.
            WorkflowCounts(
                workflow,
                {
                    s: row.get(s, Count(0))
                    for s in STATUSES
                    if s in row or counted.get(s, 0) <= COUNT_LIMIT
                },
            )
            for workflow, row in sorted(cells.items())
        ],
        overdue=_capped(int(overdue)),
        oldest_due_at=oldest_due,
        stalled=_capped(int(stalled)),
        oldest_lapsed_at=oldest_lapsed,
        quarantined=_capped(int(quarantined)),
        quarantined_latest=latest,
        failed_last_hour=_capped(int(failed)),
        hours=hours,
        errors=errors,
        errors_sampled=sampled,
        workers=workers,
        step_workers=step_workers,
        queue=queue,
        limits=limits,
    )


def _estimated(
    rows: Iterable[tuple[str, str | None, str | None, float]],
    large: list[str],
    cells: dict[str, dict[str, Count]],
) -> dict[str, Count]:
    """Totals of the ``large`` statuses, and their cells added to ``cells``, from statistics."""
    size = 0.0
    status_freq: dict[str, float] = {}
    pairs: list[tuple[str, str, float]] = []
    for kind, workflow, status, value in rows:
        if kind == "table":
            size = max(float(value or 0), 0.0)
        elif kind == "status" and status is not None:
            status_freq[status] = float(value)
        elif kind == "pair" and workflow is not None and status is not None:
            pairs.append((workflow, status, float(value)))
    totals: dict[str, Count] = {}
    for status in large:
        estimate = round(status_freq.get(status, 0.0) * size)
        known = estimate > COUNT_LIMIT
        totals[status] = Count(estimate, "about") if known else Count(COUNT_LIMIT, "more_than")
    for workflow, status, freq in pairs:
        if status in large and size > 0:
            cells.setdefault(workflow, {})[status] = Count(max(round(freq * size), 1), "about")
    return totals


def _hour(values: Sequence[Any]) -> Count:
    """One hour of one series: exact below the sample, else extrapolated (see the module)."""
    n, newest, nth, oldest = values
    n = int(n)
    if n < HOUR_SAMPLE:
        return Count(n)
    sampled_span = (newest - nth).total_seconds()
    if sampled_span <= 0:  # the sample shares one instant: its rate says nothing
        return Count(n, "more_than")
    whole_span = (newest - oldest).total_seconds()
    return Count(max(n, round(n * whole_span / sampled_span)), "about")


def duration(delta: timedelta) -> str:
    """``4m12s``, ``2h05m``, ``3d04h``: short, and exact enough for an operator."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(delta.total_seconds(), 0):.1f}s" if seconds < 10 else f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def timed_out(error: BaseException) -> bool:
    """Whether ``error`` is a statement of :func:`snapshot` cancelled for taking too long."""
    cause = getattr(error, "__cause__", None)
    return getattr(cause, "sqlstate", None) == "57014"


@dataclass(frozen=True)
class Judged:
    """A limit checked against a snapshot: whether it is crossed, and what was measured."""

    crossed: bool
    measured: str


def queue_verdict(found: Snapshot, limit: timedelta = MAX_QUEUE_WAIT) -> Judged | None:
    """Whether a job due in ``QueuedRunner``'s queue has waited longer than ``limit`` for a
    worker (workers too few, or none): None with no queue to watch (``LocalRunner``, where the
    sweep runs the steps and ``--max-stalled`` says when it does not). A queue that cannot be
    read crosses it: a probe that cannot see must not say all is well."""
    queue = found.queue
    if queue is None:
        return None
    if queue.problem is not None:
        return Judged(True, queue.problem)
    where = f"{queue.engine} queue {queue.queue!r}"
    wait = queue.longest_wait
    if wait is None:
        return Judged(False, f"no job waits in the {where}")
    return Judged(
        wait > limit,
        f"{queue.waiting_text} job(s) wait in the {where}, the oldest for {duration(wait)}",
    )


def step_worker_verdict(
    found: Snapshot, limit: timedelta = MAX_STEP_WORKER_SILENCE
) -> Judged | None:
    """Whether no step worker has been seen for ``limit``: None with no queue to watch.

    With procrastinate, whose workers beat while idle, silence alone crosses it. A
    ``db_worker`` is seen only by the jobs it receives, so an idle one cannot be told from a
    dead one: the limit is crossed when a job has waited longer than ``limit`` too, and no
    worker was seen meanwhile.
    """
    queue = found.queue
    if queue is None:
        return None
    silence = found.step_worker_silence
    seen = (
        "no step worker was ever seen"
        if silence is None
        else f"the last step worker was seen {duration(silence)} ago"
    )
    silent = silence is None or silence > limit
    if queue.heartbeats:
        return Judged(silent, f"{seen} ({queue.engine} workers beat while idle)")
    if queue.problem is not None:
        return Judged(silent, f"{seen}; the queue could not be read")
    wait = queue.longest_wait
    if wait is None:
        return Judged(False, f"{seen}; no job waits for one")
    return Judged(
        silent and wait > limit, f"{seen}; the oldest of the waiting jobs waits {duration(wait)}"
    )
