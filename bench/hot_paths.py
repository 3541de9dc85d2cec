"""Item 3b (issue 25): "start then wait" and "resume to the next wait" with ``LocalRunner`` +
``DjangoStorage``, against a hand-written floor with the same durability.

The workflow (:class:`~bench.workflows.Approval`) waits for an event at once; the event runs one
step (no-op, like every bench step) to a second wait.

*Start then wait*. Ours: ``LocalRunner().start(Approval, context)``. The floor: the one write the
durability needs, an ``INSERT`` of the instance waiting (the statement ``DjangoStorage.put`` uses
for a new row, autocommit), the document computed in advance.

*Resume to the next wait*. Ours: ``LocalRunner().resume(id, "approved")`` of an instance started
beforehand (outside the timing). The floor: what a resume serialized per instance and never lost
needs before a step with effects runs, then the step's result: ``BEGIN; SELECT ... FOR UPDATE``
of the row, the ``UPDATE`` at its revision recording the event with the step active, ``COMMIT``;
then the ``UPDATE`` of the step's result with the next wait (autocommit): 3 statements, 2
commits. Its rows are inserted waiting beforehand, outside the timing; its documents are the
ones ours writes, computed in advance, so no engine and no codec.

*With QueuedRunner* (``ProcrastinateDispatcher``, where procrastinate is installed; its
``PROCRASTINATE_DATABASE_ALIAS`` the storage's alias, so the job joins the write). Start then
wait: ours writes the instance waiting and enqueues nothing (the wait is settled in that write);
the floor is the same ``INSERT``. Resume to the next wait, up to the commit that makes the step
durable and queued (the step then runs on a worker: a queued step's own cost is the queued
section's): ours is ``BEGIN; SELECT ... FOR UPDATE``, the ``UPDATE`` recording the event with the
step active and deferring its procrastinate job in the same statement, ``COMMIT``: 2 statements,
1 commit. The floor: the same lock, then the plain ``UPDATE`` with procrastinate's
``procrastinate_defer_jobs_v1`` of the same job in a ``WITH``, ``COMMIT``: 2 statements, 1 commit.

Like-for-like configurations: both prepare statements (ours on the ``prepared`` alias), neither
prepares (the floor's connection without prepared statements); Django's defaults (ours
unprepared, the floor prepared) are reported, not targeted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import psycopg
from django.db import connection
from django.test.utils import override_settings

from bench.data import raw_write
from bench.environment import PREPARED, QUEUED_APPS
from bench.measure import interleave, repeat
from bench.workflows import Approval, initial_context
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.sql import TABLE, UPDATE_PLAIN, WRITTEN_COLUMNS
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, QueuedRunner, configure
from hephaestus_django.runtime.document import to_row
from hephaestus_django.runtime.verbs import Runner
from hephaestus_django.storage import DjangoStorage

TARGET = 0.7
"""Each scenario's ops/s against its floor's, like for like (issue 25)."""

_LOCK = f"SELECT revision FROM {TABLE} WHERE id = %s FOR UPDATE"


class _Recorder(InMemoryStorage):
    """Keeps every instance put, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[Instance] = []

    def put(self, instance: Instance) -> None:
        super().put(instance)
        self.written.append(instance)

    def update(self, instance_id: Any, change: Any) -> Instance:
        changed: list[bool] = []

        def recorded_change(current: Instance) -> Instance:
            after = change(current)
            changed[:] = [after is not current]
            return after

        after = super().update(instance_id, recorded_change)
        if changed and changed[0]:
            self.written.append(after)
        return after


def _text(instance: Instance) -> str:
    return json.dumps(to_row(instance).state, ensure_ascii=False, separators=(",", ":"))


def recorded() -> dict[str, list[tuple[str, str]]]:
    """Our writes of each scenario, run once in memory: the floor writes the same documents."""
    storage = _Recorder()
    runner = LocalRunner()
    try:
        started = runner.start(Approval, initial_context(40_000_000), storage=storage)
        start = list(storage.written)
        del storage.written[:]
        runner.resume(started.id, "approved", storage=storage)
        resume = list(storage.written)
        del storage.written[:]
        runner.resume(started.id, "shipped", storage=storage)
        shipped = list(storage.written)
    finally:
        runner.close()
    return {
        "start": [(_text(i), i.status.value) for i in start],
        "resume": [(_text(i), i.status.value) for i in resume],
        "shipped": [(_text(i), i.status.value) for i in shipped],
    }


def floor_approval(
    raw: psycopg.Connection[Any], name: str, documents: dict[str, list[tuple[str, str]]]
) -> None:
    """An :class:`~bench.workflows.Approval` from its start to its end as the floor writes it
    (section 13's wait-and-resume): the start waiting (one commit), the first event and its
    step (two), the second event to the end (the lock and the write: one)."""
    key = uuid4()
    text, status = documents["start"][-1]
    with raw.cursor() as cursor:
        assert raw_write(cursor, key, name, status, text, 0) is not None
    _floor_resume(raw, name, key, documents["resume"])
    text, status = documents["shipped"][-1]
    with raw.transaction(), raw.cursor() as cursor:
        cursor.execute(_LOCK, [key])
        found = cursor.fetchone()
        assert found is not None
        assert raw_write(cursor, key, name, status, text, found[0]) is not None


def _floor_start(raw: psycopg.Connection[Any], name: str, document: tuple[str, str]) -> None:
    with raw.cursor() as cursor:
        assert raw_write(cursor, uuid4(), name, document[1], document[0], 0) is not None


def _floor_resume(
    raw: psycopg.Connection[Any], name: str, key: UUID, writes: list[tuple[str, str]]
) -> None:
    # The event's write, then the last: what a floor with this durability writes, whatever
    # writes of ours came between.
    (event_text, event_status), (result_text, result_status) = writes[0], writes[-1]
    with raw.transaction(), raw.cursor() as cursor:
        cursor.execute(_LOCK, [key])
        found = cursor.fetchone()
        assert found is not None
        written = raw_write(cursor, key, name, event_status, event_text, found[0])
        assert written is not None
    with raw.cursor() as cursor:
        assert raw_write(cursor, key, name, result_status, result_text, written[0]) is not None


def _floor_resume_queued(
    raw: psycopg.Connection[Any], name: str, key: UUID, write: tuple[str, str], job: Any
) -> None:
    """The lock, then the event's write with the step's job deferred in the same statement."""
    from hephaestus_django.queues.procrastinate import defer_expression

    text, status = write
    expression, job_params = defer_expression([job])
    sql = f"WITH written AS ({UPDATE_PLAIN}) SELECT {WRITTEN_COLUMNS}, {expression} FROM written"
    with raw.transaction(), raw.cursor() as cursor:
        cursor.execute(_LOCK, [key])
        found = cursor.fetchone()
        assert found is not None
        params = [name, status, text, None, None, None, None, key, found[0], *job_params]
        cursor.execute(sql, params)
        assert cursor.fetchone() is not None


def _counted(action: Any) -> tuple[int, int]:
    """Statements and commits of one ``action()`` on the ``default`` alias, as Django sends them
    (a statement in autocommit is a commit; so is each ``commit()`` closing an atomic block).
    ``BEGIN`` and ``COMMIT``, which Django's query log may list, are not statements here."""
    database = connection
    commits = [0]
    statements = [0]

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements[0] += 1
        if database.get_autocommit():
            commits[0] += 1
        return execute(sql, params, many, context)

    commit = database.commit

    def counted_commit() -> None:
        commits[0] += 1
        commit()

    database.commit = counted_commit  # type: ignore[method-assign]
    try:
        with database.execute_wrapper(wrapper):
            action()
    finally:
        del database.commit
    return statements[0], commits[0]


def run(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    """Both scenarios on ``LocalRunner``, then on ``QueuedRunner`` where procrastinate is
    installed (names suffixed ``(queued)``)."""
    results = _run_local(raw, unprepared, rounds=rounds, n=n)
    if QUEUED_APPS:
        results.update(_run_queued(raw, unprepared, rounds=rounds, n=n))
    return results


def _run_local(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    runner = LocalRunner()
    name = Approval.path()
    documents = recorded()
    order_ids = iter(range(50_000_000, 60_000_000))

    def ours_start(count: int, storage: DjangoStorage) -> list[int]:
        contexts = [initial_context(next(order_ids)) for _ in range(count)]
        return repeat(lambda i: runner.start(Approval, contexts[i], storage=storage), count)

    def floor_start(count: int, conn: psycopg.Connection[Any]) -> list[int]:
        return repeat(lambda i: _floor_start(conn, name, documents["start"][-1]), count)

    def ours_resume(count: int, storage: DjangoStorage) -> list[int]:
        waiting = [
            runner.start(Approval, initial_context(next(order_ids)), storage=storage).id
            for _ in range(count)
        ]
        return repeat(lambda i: runner.resume(waiting[i], "approved", storage=storage), count)

    def floor_resume(count: int, conn: psycopg.Connection[Any]) -> list[int]:
        keys = [uuid4() for _ in range(count)]
        text, status = documents["start"][-1]
        with conn.cursor() as cursor:
            for key in keys:
                raw_write(cursor, key, name, status, text, 0)
        return repeat(lambda i: _floor_resume(conn, name, keys[i], documents["resume"]), count)

    storage = DjangoStorage()
    storage.now()  # the clock's reading, at most once a minute, is no cost of an operation
    waiting = runner.start(Approval, initial_context(2), storage=storage).id
    counts = {
        "start_then_wait": (
            _counted(lambda: runner.start(Approval, initial_context(1), storage=storage)),
            (1, 1),
        ),
        "resume_to_next_wait": (
            _counted(lambda: runner.resume(waiting, "approved", storage=storage)),
            (3, 2),
        ),
    }
    sides = {
        "start_then_wait": (ours_start, floor_start),
        "resume_to_next_wait": (ours_resume, floor_resume),
    }

    def storage_on(using: str) -> DjangoStorage:
        return DjangoStorage(using=using)

    try:
        return _versus(sides, counts, storage_on, raw, unprepared, rounds=rounds, n=n)
    finally:
        runner.close()


_Side = Callable[..., list[int]]


def _versus(
    sides: dict[str, tuple[_Side, _Side]],
    counts: dict[str, tuple[tuple[int, int], tuple[int, int]]],
    storage_on: Callable[[str], DjangoStorage],
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    """Each scenario of ``sides`` (ours, the floor) interleaved in the three configurations,
    with the statements and commits of ``counts`` (ours, the floor's)."""

    def versus(label: str, using: str, conn: psycopg.Connection[Any]) -> Any:
        ours, floor = sides[label]
        return interleave(
            partial(ours, storage=storage_on(using)),
            partial(floor, conn=conn),
            rounds=rounds,
            n=n,
            warmup=min(n, 20),
        )

    results: dict[str, Any] = {}
    for label, ((statements, commits), (floor_statements, floor_commits)) in counts.items():
        results[label] = {
            "defaults": versus(label, "default", raw),
            "prepared": versus(label, PREPARED, raw),
            "unprepared": versus(label, "default", unprepared),
            "ours_statements": statements,
            "ours_commits": commits,
            "floor_statements": floor_statements,
            "floor_commits": floor_commits,
        }
    return results


def _run_queued(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    from hephaestus_django.queues.procrastinate import STEP_TASK, ProcrastinateDispatcher

    dispatcher = ProcrastinateDispatcher(queue="hephaestus-bench-hot-paths")  # no worker reads
    runner: Runner = QueuedRunner(dispatcher=dispatcher)
    # A queued job names its storage by alias: the storages measured are configured ones.
    storages = {using: DjangoStorage(using=using) for using in ("default", PREPARED)}
    configure(storages=storages)
    name = Approval.path()
    documents = recorded()
    order_ids = iter(range(60_000_000, 70_000_000))

    def on(storage: DjangoStorage) -> Any:
        return override_settings(PROCRASTINATE_DATABASE_ALIAS=storage.using)

    # Ours' instances this section leaves running (their jobs go to a queue no worker reads),
    # and the floor's left running by its event write, deleted at its end: a later section's
    # worker pass would take them over as stalled (bench/leftovers.py).
    made: list[UUID] = []

    def ours_start(count: int, storage: DjangoStorage) -> list[int]:
        contexts = [initial_context(next(order_ids)) for _ in range(count)]

        def start(i: int) -> None:
            made.append(runner.start(Approval, contexts[i], storage=storage).id)

        with on(storage):
            return repeat(start, count)

    def floor_start(count: int, conn: psycopg.Connection[Any]) -> list[int]:
        return repeat(lambda i: _floor_start(conn, name, documents["start"][-1]), count)

    def ours_resume(count: int, storage: DjangoStorage) -> list[int]:
        with on(storage):
            waiting = [
                runner.start(Approval, initial_context(next(order_ids)), storage=storage).id
                for _ in range(count)
            ]
            made.extend(waiting)
            return repeat(lambda i: runner.resume(waiting[i], "approved", storage=storage), count)

    storage = storages["default"]
    storage.now()  # the clock's reading, at most once a minute, is no cost of an operation
    waiting = runner.start(Approval, initial_context(3), storage=storage).id
    made.append(waiting)
    counts = {
        "start_then_wait (queued)": (
            _counted(
                lambda: made.append(runner.start(Approval, initial_context(4), storage=storage).id)
            ),
            (1, 1),
        ),
        "resume_to_next_wait (queued)": (
            _counted(lambda: runner.resume(waiting, "approved", storage=storage)),
            (2, 1),
        ),
    }
    # The job ours deferred, deferred again by the floor (its payload names ours' instance: no
    # worker reads this queue).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT queue_name, task_name, priority, args FROM procrastinate_jobs "
            "WHERE task_name = %s AND queue_name = %s ORDER BY id DESC LIMIT 1",
            [STEP_TASK, dispatcher.queue],
        )
        queue, task, priority, args = cursor.fetchone()
    job = (queue, task, priority, args if isinstance(args, dict) else json.loads(args), None)
    # The floor's event write: ours' first write of the resume (the step active).
    event_write = documents["resume"][0]

    def floor_resume(count: int, conn: psycopg.Connection[Any]) -> list[int]:
        keys = [uuid4() for _ in range(count)]
        made.extend(keys)  # left running, never leased, by the event write: deleted at the end
        text, status = documents["start"][-1]
        with conn.cursor() as cursor:
            for key in keys:
                raw_write(cursor, key, name, status, text, 0)
        return repeat(lambda i: _floor_resume_queued(conn, name, keys[i], event_write, job), count)

    sides = {
        "start_then_wait (queued)": (ours_start, floor_start),
        "resume_to_next_wait (queued)": (ours_resume, floor_resume),
    }
    try:
        return _versus(sides, counts, storages.__getitem__, raw, unprepared, rounds=rounds, n=n)
    finally:
        runner.close()
        configure()
        raw.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", [made])
