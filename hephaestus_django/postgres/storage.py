"""``DjangoStorage``: workflow instances in the ``workflow_instances`` table.

Each operation is exactly one SQL statement on the database alias ``using``,
so it takes part in the caller's transaction (``transaction.atomic(using=...)``)
and costs one round trip:

- ``get``: ``SELECT ... WHERE id = %s``
- ``put``: a new instance's ``INSERT ... ON CONFLICT DO NOTHING RETURNING ...``, every
  later write's ``UPDATE ... WHERE id = %s AND revision = %s RETURNING ...``; no row back
  means another writer got there first (:class:`StaleInstanceError`), or, when the row is
  gone, that the instance was deleted (:class:`InstanceDeletedError`, found out by a second
  statement on that rare path): a write after the first never inserts, so a deleted
  instance stays deleted. ``inserted_at`` is left out of the update, so it never changes,
  and ``workflow_version`` changes only by an upgrade of the stored version.
- ``delete``: ``DELETE ... WHERE id = %s``, with the instance's concurrency slots in the same
  statement
- ``query``: ``SELECT ... WHERE <filters> ORDER BY inserted_at, id LIMIT %s``
- ``claim``: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...``: the
  due timers and the stalled runs are separate candidate sets, each an index scan
- ``renew``: ``UPDATE ... SET lease_expires_at WHERE id = %s AND lease_owner = %s``
- the map items (``map_progress``, ``record_map_item``, ``map_results``): one statement each on
  the ``workflow_map_items`` table (:mod:`~hephaestus_django.postgres.map_items`)

Time is the database's: ``claim`` and ``renew`` compare and compute leases with
``statement_timestamp()``, and :meth:`DjangoStorage.now` (what runners base the leases
and timers they write on) is the database's time, read once a minute per alias
(:class:`~hephaestus_django.runtime.clock.DatabaseClock`).

``update`` (a locked read-modify-write for transitions coming from any process)
is the one composite: a short transaction around ``SELECT ... FOR UPDATE`` and
the ``put``.

Outside a transaction, every operation survives a dropped connection (a restart of
PostgreSQL, a terminated backend): it connects again and goes on, see
:mod:`~hephaestus_django.postgres.reconnect`. A ``put`` or ``update`` whose outcome the lost
connection left unknown reads the row to find out, and writes again only if nothing was written.

The state is sent and read as JSON text produced by the codec, so what comes
back is decoded with the same rules as every other backend. Rows are read with
:func:`~hephaestus_django.postgres.cursors.fetch_one` and ``fetch_all``: through Django's cursor,
reading timestamps with psycopg's compiled loader where that changes nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from django.db import DatabaseError, connections, transaction

from hephaestus_django.core.errors import (
    CorruptInstanceError,
    DuplicateInstanceError,
    InstanceDeletedError,
    InstanceNotFound,
    StaleInstanceError,
)
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import Instance, instance_key
from hephaestus_django.postgres import bulk, debounce, map_items, schedules, slots, workflow_pauses
from hephaestus_django.postgres.cursors import fetch_all, fetch_one
from hephaestus_django.postgres.reconnect import again, dropped
from hephaestus_django.postgres.sql import (
    CLAIM,
    CLOCK,
    COLUMNS,
    DELETE,
    INSERT,
    KEY_HOLDER,
    MARK_RUNNING,
    MARK_RUNNING_RELAXED,
    QUARANTINE,
    RENEW,
    REVISION,
    SELECT_ONE,
    TABLE,
    UPDATE,
    UPDATE_PLAIN,
    WRITTEN,
    WRITTEN_COLUMNS,
)
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.clock import DatabaseClock
from hephaestus_django.runtime.contract import (
    BulkSpec,
    BulkState,
    MapCounts,
    MapItemState,
    ScheduleState,
    WorkflowPause,
)
from hephaestus_django.runtime.debounce import Debounced, PendingStart
from hephaestus_django.runtime.document import (
    StoredRow,
    decode_claimed,
    decode_rows,
    from_row,
    to_row,
)
from hephaestus_django.runtime.filters import (
    QueryFilters,
    claim_limit,
    parent_document,
    parse_filters,
    schedule_document,
)
from hephaestus_django.runtime.importable import require_importable
from hephaestus_django.runtime.limits import check_state_size
from hephaestus_django.runtime.slots import LimitUse, Place


class JobsSQL(NamedTuple):
    """Jobs a dispatcher enqueues in the statement of a put (:meth:`DjangoStorage.put_with_jobs`,
    what :class:`~hephaestus_django.runtime.dispatch.JobsForPut` dispatchers return for a
    ``DjangoStorage``): an SQL expression with ``%s`` parameters, evaluated once if, and only
    if, the put writes."""

    expression: str
    params: Sequence[Any]


_clocks: dict[str, DatabaseClock] = {}
_clocks_lock = threading.Lock()


def database_clock(using: str) -> DatabaseClock:
    """The clock of the database alias ``using``, shared by every storage on it."""
    with _clocks_lock:
        clock = _clocks.get(using)
        if clock is None:
            clock = _clocks[using] = DatabaseClock(lambda: read_database_time(using))
        return clock


def read_database_time(using: str) -> datetime:
    """The database's clock, read with one statement."""
    try:
        found = fetch_one(connections[using], CLOCK, [])
    except DatabaseError as error:
        found = again(using, error, lambda db: fetch_one(db, CLOCK, []))
    assert found is not None
    moment: datetime = found[0]
    return moment


class DjangoStorage:
    """The storage contract on a Django database alias (PostgreSQL only)."""

    def __init__(self, *, using: str = "default") -> None:
        if not isinstance(using, str) or not using:
            raise ValueError(f"using must be a database alias, not {using!r}")
        self.using = using
        self._clock = database_clock(using)
        """The database's time; a test may give a storage a clock of its own."""

    def __repr__(self) -> str:
        return f"DjangoStorage(using={self.using!r})"

    def in_transaction(self) -> bool:
        """Whether this thread is inside ``transaction.atomic()`` on the storage's database.

        The runner then runs a fan-out's branches in this thread, so that they see the
        caller's uncommitted rows as every other step does (a pool thread's connection would
        not).
        """
        return bool(connections[self.using].in_atomic_block)

    def atomic(self) -> transaction.Atomic:
        """``transaction.atomic(using=...)`` on the storage's database: ``QueuedRunner`` records
        a transition and enqueues its jobs inside one, so they commit together."""
        return transaction.atomic(using=self.using)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """``transaction.on_commit`` on the storage's database (at once outside a transaction)."""
        transaction.on_commit(callback, using=self.using)

    def get(self, instance_id: UUID | str) -> Instance:
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        try:
            found = fetch_one(connections[self.using], SELECT_ONE, [key])
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_one(db, SELECT_ONE, [key]))
        if found is None:
            raise InstanceNotFound(instance_id)
        return from_row(stored_row(found))

    def put(self, instance: Instance) -> None:
        """Insert a new instance (``revision`` 0), or update the stored one at ``revision``.

        A later write never inserts: when the row is gone it raises
        :class:`InstanceDeletedError`, so a deleted instance stays deleted.
        """
        self._put(instance, None)

    def put_with_jobs(self, instance: Instance, jobs: object) -> None:
        """``put``, enqueueing ``jobs`` (a :class:`JobsSQL`, or None for none) in its statement.

        Still one statement: ``WITH written AS (<the put>) SELECT ..., <jobs' expression> FROM
        written``, whose expression is evaluated once for the row written, and not at all for
        a stale put. So outside a transaction the write and its jobs commit together without
        ``BEGIN`` and ``COMMIT`` round trips, and inside one they join it as any put does.
        For an instance stored already: a new one holding a business key is inserted by ``put``,
        whose statement finds a taken key without a unique violation.
        """
        if instance.revision == 0 and instance.business_key is not None and jobs is not None:
            raise ValueError(
                f"put_with_jobs() writes instances stored already; instance {instance.id} is new "
                f"and holds a business key: put() it, then enqueue its jobs"
            )
        self._put(instance, _jobs_sql(jobs))

    def _put(self, instance: Instance, jobs: JobsSQL | None) -> None:
        """Write ``instance`` with :data:`INSERT` or :data:`UPDATE`, with ``jobs`` in the same
        statement when given."""
        row = to_row(instance)
        state = codec.dumps_encoded(row.state)
        check_state_size(state, instance.id)
        if row.revision == 0:
            require_importable(instance.workflow.umbrella() or instance.workflow)
        sql, params = _write_statement(row, state)
        if jobs is not None:
            around = f"SELECT {WRITTEN_COLUMNS}, {jobs.expression} FROM written"
            sql = f"WITH written AS ({sql}) {around}"
            params = [*params, *jobs.params]
        try:
            written = fetch_one(connections[self.using], sql, params)
        except DatabaseError as error:
            if not dropped(self.using, error):
                raise
            written = self._put_again(row, state, sql, params)
        if written is None:
            written = self._not_written(instance, row, params)
        revision, version, inserted_at, updated_at = written[:4]
        instance.revision = revision
        instance.workflow_version = version
        instance.inserted_at = inserted_at
        instance.updated_at = updated_at

    def _not_written(self, instance: Instance, row: StoredRow, params: list[Any]) -> Any:
        """Why a put wrote nothing, as its error; or what a keyed insert tried again wrote.

        An insert found its id taken (stale) or its business key held
        (``DuplicateInstanceError``, unless the holder let it go meanwhile: then it is tried
        again); an update found another revision (stale) or no row at all (deleted).
        """
        if row.revision == 0 and row.key_claim is not None:
            written = self._insert_or_find_holder(instance, row, params)
            if written is not None:
                return written
        elif row.revision > 0 and self._revision(row.id) is None:
            raise InstanceDeletedError(instance.id, instance.revision)
        raise StaleInstanceError(instance.id, instance.revision)

    def _revision(self, key: UUID) -> int | None:
        found = fetch_one(connections[self.using], REVISION, [key])
        return None if found is None else int(found[0])

    def _insert_or_find_holder(self, instance: Instance, row: StoredRow, params: list[Any]) -> Any:
        """A keyed insert wrote nothing: ``DuplicateInstanceError`` naming the instance that
        holds the key; None when none does (the id was taken: the put is stale).

        The holder may release the key between the insert and the lookup (it completed, under
        ``"active"``): the insert is then tried again, a few times.
        """
        connection = connections[self.using]
        for _ in range(3):
            holder = fetch_one(connection, KEY_HOLDER, [row.key_claim])
            if holder is not None and holder[0] != row.id:
                raise DuplicateInstanceError(
                    str(row.business_key), instance.workflow.__qualname__, holder[0]
                )
            if holder is not None or self._revision(row.id) is not None:
                return None
            written = fetch_one(connection, INSERT, params)
            if written is not None:
                return written
        return None

    def _put_again(self, row: StoredRow, state: str, sql: str, params: list[Any]) -> Any:
        """After the connection dropped under a put: what it wrote, writing it if it did not.

        The row says whether the lost write landed: then it holds this very state at the next
        revision (and the jobs its statement enqueued landed with it). If it still holds the
        revision the put was based on (or, for a new instance, is absent), nothing was written
        and the put is made again, jobs and all. Any other revision is another writer's, and a
        row gone is a deletion: None, for :meth:`_not_written` to tell which.
        """
        landed = fetch_one(
            connections[self.using],
            WRITTEN,
            [row.id, row.revision + 1, state, row.lease_owner, row.status],
        )
        if landed is not None:
            return landed
        current = self._revision(row.id)
        if current == row.revision or (current is None and row.revision == 0):
            return fetch_one(connections[self.using], sql, params)
        return None

    def update(self, instance_id: UUID | str, change: Callable[[Instance], Instance]) -> Instance:
        """Read the row locked (``SELECT ... FOR UPDATE``), apply ``change``, put, commit.

        The transaction lasts one read and one write: ``change`` is an engine transition,
        never a step, so no lock is held while steps run. If the connection drops before the
        commit, nothing was written and the whole update is made again, ``change`` applied to
        a fresh read; if it drops during the commit, the row says whether the write landed.
        """
        return self._locked_update(instance_id, change, None)

    def update_with_jobs(
        self,
        instance_id: UUID | str,
        change: Callable[[Instance], Instance],
        jobs: Callable[[Instance], object],
    ) -> Instance:
        """``update``, with what ``jobs(changed)`` returns (a :class:`JobsSQL` or None) enqueued
        in the statement of its write, as :meth:`put_with_jobs` does: a resume on
        ``QueuedRunner`` with procrastinate is then the locked read and one write, in one
        transaction, instead of a savepoint around them and a statement more for the jobs."""
        return self._locked_update(instance_id, change, jobs)

    def _locked_update(
        self,
        instance_id: UUID | str,
        change: Callable[[Instance], Instance],
        jobs: Callable[[Instance], object] | None,
    ) -> Instance:
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        written: list[Instance] = []
        try:
            return self._update(key, instance_id, change, jobs, written)
        except DatabaseError as error:
            if not dropped(self.using, error):
                raise
            if written and self._landed(written[0]):
                return written[0]
            return self._update(key, instance_id, change, jobs, [])

    def _update(
        self,
        key: UUID,
        instance_id: UUID | str,
        change: Callable[[Instance], Instance],
        jobs: Callable[[Instance], object] | None,
        written: list[Instance],
    ) -> Instance:
        with transaction.atomic(using=self.using):
            found = fetch_one(connections[self.using], SELECT_ONE + " FOR UPDATE", [key])
            if found is None:
                raise InstanceNotFound(instance_id)
            current = from_row(stored_row(found))
            changed = change(current)
            if changed is not current:
                self._put(changed, None if jobs is None else _jobs_sql(jobs(changed)))
                written.append(changed)
        return changed

    def _landed(self, instance: Instance) -> bool:
        """Whether the row holds ``instance`` as its put left it (before the commit was lost)."""
        row = to_row(instance)
        state = codec.dumps_encoded(row.state)
        params = [row.id, row.revision, state, row.lease_owner, row.status]
        return fetch_one(connections[self.using], WRITTEN, params) is not None

    def now(self) -> datetime:
        """The database's time (estimated from a reading taken at most a minute ago)."""
        return self._clock.now()

    def claim(self, owner: str, *, lease: timedelta, limit: int) -> list[Instance]:
        """One statement; one more, rarely, to quarantine the rows that cannot be decoded."""
        params = {"owner": owner, "lease": lease, "limit": claim_limit(limit)}
        try:
            found = fetch_all(connections[self.using], CLAIM, params)
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_all(db, CLAIM, params))
        claimed, quarantined = decode_claimed(found, stored_row, _identify)
        if quarantined:
            marks = [[bad.id for bad in quarantined], [bad.revision for bad in quarantined]]
            marks.append([bad.reason for bad in quarantined])
            try:
                _changed(connections[self.using], QUARANTINE, marks)
            except DatabaseError as error:  # setting a mark twice changes nothing
                again(self.using, error, lambda db: _changed(db, QUARANTINE, marks))
        return claimed

    def mark_running(
        self,
        instance_id: UUID | str,
        step: str,
        on: str,
        attempt: int | None = None,
    ) -> Instance | None:
        """One statement; a second one (a ``get``) only when nothing was marked, to raise
        ``InstanceNotFound`` for an instance that is gone. Outside a transaction the mark is
        committed without waiting for the disk (:data:`MARK_RUNNING_RELAXED`): a job's
        fsync fewer, for a write that is only a display."""
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        params = {"id": key, "step": step, "on": on, "attempt": attempt}
        try:
            connection = connections[self.using]
            sql = MARK_RUNNING if connection.in_atomic_block else MARK_RUNNING_RELAXED
            found = fetch_one(connection, sql, params)
        except DatabaseError as error:
            # Whether a mark lost with the connection landed or not, marking again is what the
            # caller wants: the mark is a display, not a result.
            found = again(self.using, error, lambda db: fetch_one(db, sql, params))
        if found is None:
            self.get(key)
            return None
        return from_row(stored_row(found))

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """One statement (:data:`~hephaestus_django.postgres.sql.SCHEDULE_STATES`)."""
        return schedules.schedule_states(self.using, names)

    def advance_schedule(self, name: str, tick: datetime, next_due: datetime | None) -> bool:
        """One statement (:data:`~hephaestus_django.postgres.sql.ADVANCE_SCHEDULE`)."""
        return schedules.advance_schedule(self.using, name, tick, next_due)

    def pause_schedule(self, name: str, paused: bool, next_due: datetime | None) -> bool:
        """One statement (:data:`~hephaestus_django.postgres.sql.PAUSE_SCHEDULE`)."""
        return schedules.pause_schedule(self.using, name, paused, next_due)

    def push_start(
        self, pending: PendingStart, window: timedelta, max_wait: timedelta | None
    ) -> Debounced:
        """One statement (:data:`~hephaestus_django.postgres.sql.PUSH_START`)."""
        return debounce.push_start(self.using, pending, window, max_wait)

    def due_starts(self, limit: int) -> list[PendingStart]:
        """One statement (:data:`~hephaestus_django.postgres.sql.DUE_STARTS`)."""
        return debounce.due_starts(self.using, limit)

    def take_start(self, workflow: str, key: str, instance_id: UUID) -> PendingStart | None:
        """One statement (:data:`~hephaestus_django.postgres.sql.TAKE_START`)."""
        return debounce.take_start(self.using, workflow, key, instance_id)

    def forget_schedules(self, keep: Sequence[str]) -> list[str]:
        """One statement (:data:`~hephaestus_django.postgres.sql.FORGET_SCHEDULES`)."""
        return schedules.forget_schedules(self.using, keep)

    # --- workflows held (WorkflowPausing): postgres/workflow_pauses.py ----------------------

    def pause_workflow(self, workflow: str, version: int, reason: str | None) -> bool:
        """One statement (:data:`~hephaestus_django.postgres.sql.PAUSE_WORKFLOW`)."""
        return workflow_pauses.pause_workflow(self.using, workflow, version, reason)

    def unpause_workflow(self, workflow: str, version: int) -> bool:
        """One statement (:data:`~hephaestus_django.postgres.sql.UNPAUSE_WORKFLOW`)."""
        return workflow_pauses.unpause_workflow(self.using, workflow, version)

    def workflow_pauses(self) -> list[WorkflowPause]:
        """One statement (:data:`~hephaestus_django.postgres.sql.WORKFLOW_PAUSES`)."""
        return workflow_pauses.workflow_pauses(self.using)

    def renew(self, instance_id: UUID | str, owner: str, lease: timedelta) -> bool:
        key = instance_key(instance_id)
        if key is None:
            return False
        params = {"lease": lease, "id": key, "owner": owner}
        try:
            return _changed(connections[self.using], RENEW, params)
        except DatabaseError as error:
            return again(self.using, error, lambda db: _changed(db, RENEW, params))

    # --- concurrency slots (SlotKeeping): postgres/slots.py --------------------------------

    def admit(
        self,
        instance_id: UUID,
        step: str,
        request: SlotRequest,
        *,
        priority: int,
        lease: timedelta,
    ) -> bool:
        """Two statements in a transaction: the limit's lock, then the admission."""
        return slots.admit(self.using, instance_id, step, request, priority=priority, lease=lease)

    def release(
        self, instance_id: UUID, step: str, request: SlotRequest, *, lease: timedelta
    ) -> list[tuple[UUID, str]]:
        """Two statements in a transaction (the caller's, if it has one open): the limit's
        lock, then the release with the next waiters' admission."""
        return slots.release(self.using, instance_id, step, request, lease=lease)

    def admit_waiting(self, *, lease: timedelta) -> list[tuple[UUID, str]]:
        return slots.admit_waiting(self.using, lease=lease)

    def lock_slots(self, instance_id: UUID) -> None:
        slots.lock_slots(self.using, instance_id)

    def free(self, instance_id: UUID, *, lease: timedelta) -> list[tuple[UUID, str]]:
        """Per limit the instance is in: its lock, then its rows gone and the next admitted
        (in the caller's transaction, if it has one open)."""
        return slots.free(self.using, instance_id, lease=lease)

    def limits(self) -> list[LimitUse]:
        return slots.limits(self.using)

    def places(self, instance_id: UUID) -> list[Place]:
        return slots.places(self.using, instance_id)

    def delete(self, instance_id: UUID | str) -> None:
        key = instance_key(instance_id)
        if key is None:
            return
        try:
            _changed(connections[self.using], DELETE, {"id": key})
        except DatabaseError as error:
            again(self.using, error, lambda db: _changed(db, DELETE, {"id": key}))

    # --- bulk operations (BulkTable): see postgres/bulk.py -------------------------------------

    def create_bulk(self, spec: BulkSpec) -> BulkState:
        return bulk.create(self.using, spec)

    def bulk_state(self, bulk_id: UUID | str) -> BulkState:
        return bulk.state(self.using, bulk_id)

    def count_bulk(self, spec: BulkSpec) -> int:
        return bulk.count(self.using, spec)

    def claim_bulk(
        self, owner: str, lease: timedelta, bulk_id: UUID | None = None
    ) -> BulkState | None:
        return bulk.claim(self.using, owner, lease, bulk_id)

    def bulk_batch(self, state: BulkState) -> list[UUID]:
        return bulk.batch(self.using, state)

    def record_bulk_outcome(
        self, bulk_id: UUID, instance_id: UUID, *, done: bool, reason: str | None
    ) -> None:
        bulk.record(self.using, bulk_id, instance_id, done, reason)

    def finish_bulk_batch(self, bulk_id: UUID, owner: str, last: UUID | None) -> BulkState:
        return bulk.finish(self.using, bulk_id, owner, last)

    def bulk_refusals(self, bulk_id: UUID, limit: int = 100) -> list[tuple[UUID, str]]:
        return bulk.refusals(self.using, bulk_id, limit)

    # --- map items (MapItems): rows of workflow_map_items, see postgres/map_items.py ---------

    def map_progress(self, instance_id: UUID | str, step: str) -> dict[int, MapItemState]:
        return map_items.progress(self.using, instance_id, step)

    def record_map_item(
        self,
        instance_id: UUID | str,
        step: str,
        index: int,
        *,
        attempts: int,
        done: bool,
        result: Any = None,
        failed: bool = False,
    ) -> None:
        map_items.record(
            self.using,
            instance_id,
            step,
            index,
            attempts=attempts,
            done=done,
            result=result,
            failed=failed,
        )

    def forget_map_items(self, instance_id: UUID | str, steps: Sequence[str]) -> int:
        return map_items.forget(self.using, instance_id, list(steps))

    def map_results(self, instance_id: UUID | str, step: str) -> list[Any]:
        return map_items.results(self.using, instance_id, step)

    # --- map items as jobs (MapItemJobs) ----------------------------------------------------

    def map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        return map_items.one(self.using, instance_id, step, index)

    def mark_map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        return map_items.mark(self.using, instance_id, step, index)

    def map_counts(self, instance_id: UUID | str, step: str) -> MapCounts:
        return map_items.counts(self.using, instance_id, step)

    def map_trouble(self, instance_id: UUID | str, step: str) -> MapCounts:
        return map_items.trouble(self.using, instance_id, step)

    def map_failure(self, instance_id: UUID | str, step: str, index: int) -> tuple[int, str]:
        return map_items.failure(self.using, instance_id, step, index)

    def restart_map_items(self, instance_id: UUID | str, step: str) -> None:
        map_items.restart(self.using, instance_id, step)

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        parsed = parse_filters(filters, limit=limit)
        if parsed.matches_nothing or parsed.limit == 0:
            return []
        where, params = where_clause(parsed)
        sql = f"SELECT {COLUMNS} FROM {TABLE}{where} ORDER BY inserted_at, id"
        if parsed.limit is not None:
            sql += " LIMIT %s"
            params.append(parsed.limit)
        try:
            found = fetch_all(connections[self.using], sql, params)
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_all(db, sql, params))
        return decode_rows(found, stored_row)


def _jobs_sql(jobs: object) -> JobsSQL | None:
    """``jobs`` as given to :meth:`DjangoStorage.put_with_jobs` or returned by the ``jobs`` of
    :meth:`DjangoStorage.update_with_jobs`: a :class:`JobsSQL`, or None for none."""
    if jobs is not None and not isinstance(jobs, JobsSQL):
        raise TypeError(f"jobs must be a JobsSQL or None, not {jobs!r}")
    return jobs


def _write_statement(row: StoredRow, state: str) -> tuple[str, list[Any]]:
    """The statement writing ``row`` (its state encoded as ``state``), and its parameters:
    :data:`INSERT` for a new instance, :data:`UPDATE` of the revision read for any other:
    :data:`UPDATE_PLAIN` when the instance has no business key (no key claim to write: the
    stored one is NULL and stays so) and was never upgraded (no version to move)."""
    running = None if row.running is None else codec.dumps_encoded(row.running)
    if row.revision == 0:
        return INSERT, [
            row.id,
            row.workflow,
            row.status,
            row.workflow_version,
            state,
            row.lease_owner,
            row.lease_expires_at,
            row.due_at,
            row.business_key,
            row.key_claim,
            running,
        ]
    if row.business_key is None and row.upgraded_from is None:
        return UPDATE_PLAIN, [
            row.workflow,
            row.status,
            state,
            row.lease_owner,
            row.lease_expires_at,
            row.due_at,
            running,
            row.id,
            row.revision,
        ]
    return UPDATE, [
        row.workflow,
        row.status,
        state,
        row.lease_owner,
        row.lease_expires_at,
        row.due_at,
        row.key_claim,
        running,
        row.upgraded_from,
        row.workflow_version,
        row.id,
        row.revision,
    ]


def _changed(connection: Any, sql: str, params: list[Any] | dict[str, Any]) -> bool:
    """Execute a statement that changes rows; whether it changed exactly one."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def where_clause(filters: QueryFilters) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and its parameters for parsed query filters."""
    conditions: list[str] = []
    params: list[Any] = []
    if filters.id is not None:
        conditions.append("id = %s")
        params.append(filters.id)
    if filters.key is not None:
        conditions.append("business_key = %s")
        params.append(filters.key)
    if filters.statuses is not None:
        conditions.append("status = ANY(%s)")
        params.append(sorted(filters.statuses))
    if filters.workflow is not None:
        conditions.append("workflow = %s")
        params.append(filters.workflow)
    if filters.workflow_version is not None:
        conditions.append("workflow_version = %s")
        params.append(filters.workflow_version)
    if filters.workflows is not None:  # a tag: the workflows carrying it
        conditions.append("workflow = ANY(%s)")
        params.append(sorted(filters.workflows))
    if filters.workflow_family is not None:
        family = filters.workflow_family
        if family.endswith("."):
            conditions.append("workflow LIKE %s")
            params.append(like_prefix(family))
        else:
            conditions.append("(workflow = %s OR workflow LIKE %s)")
            params.extend([family, like_prefix(family + ".")])
    if filters.schedule is not None:  # through the GIN index on state
        conditions.append("state @> %s::jsonb")
        params.append(json.dumps(schedule_document(filters.schedule)))
    if filters.parent is not None:  # through the GIN index on state
        conditions.append("state @> %s::jsonb")
        params.append(json.dumps(parent_document(filters.parent)))
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def stored_row(values: Any) -> StoredRow:
    """The row read as the columns of :data:`FIELDS`, in their order, the state as text.

    ``CorruptInstanceError`` if the state's text cannot be read (see :func:`parse_state`).
    """
    (
        instance_id,
        workflow,
        status,
        version,
        state,
        revision,
        inserted_at,
        updated_at,
        due_at,
        lease_owner,
        lease_expires_at,
        quarantine_reason,
        business_key,
        running,
    ) = values
    loaded = parse_state(instance_id, state)
    return StoredRow(
        id=instance_id,
        workflow=workflow,
        status=status,
        workflow_version=version,
        state=loaded,
        plain=codec.is_plain_jsonb(state, loaded),
        revision=revision,
        inserted_at=inserted_at,
        updated_at=updated_at,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
        due_at=due_at,
        quarantine_reason=quarantine_reason,
        business_key=business_key,
        running=None if running is None else parse_running(instance_id, running),
    )


def _identify(values: Any) -> tuple[UUID, int]:
    """The id and revision of a row read as :data:`FIELDS`, before anything is decoded."""
    return values[0], values[5]


def parse_running(instance_id: object, text: str) -> codec.JSON:
    """The ``running`` column's text, parsed; ``CorruptInstanceError`` if it cannot be."""
    try:
        return codec.loads(text)
    except ValueError as error:
        raise CorruptInstanceError(
            instance_id, "running", f"its JSON cannot be read: {error}"
        ) from None


def parse_state(instance_id: object, text: str) -> codec.JSON:
    """The ``state`` column's text, parsed; ``CorruptInstanceError`` if it cannot be.

    PostgreSQL always prints valid JSON, but a value written by hand in SQL may be nested
    deeper than Python can parse: that row is corrupt, and must not fail the others read with
    it.
    """
    try:
        return codec.loads(text)
    except ValueError as error:
        problem = f"its JSON cannot be read: {error}"
        raise CorruptInstanceError(instance_id, "state", problem) from None
