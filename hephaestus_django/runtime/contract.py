"""The storage contract every backend implements.

::

    storage.get(instance_id) -> Instance        # InstanceNotFound (also for a malformed id)
    storage.put(instance) -> None               # insert a new one, else update; StaleInstanceError
                                                # on a stale read, InstanceDeletedError when gone
    storage.delete(instance_id) -> None         # idempotent
    storage.query(limit=None, **filters) -> list[Instance]

    # what runners and workers need to share instances across processes
    storage.update(instance_id, change) -> Instance   # atomic get -> change -> put
    storage.now() -> datetime                         # the storage's clock (the database's)
    storage.claim(owner, lease=, limit=) -> list[Instance]   # due timers, stalled runs
    storage.renew(instance_id, owner, lease) -> bool  # extend the owner's lease

``put`` records the stored ``revision``, ``inserted_at``, ``updated_at`` and
``workflow_version`` on the instance it was given, so the same object can be
put again. A put whose ``revision`` is not the stored one raises
:class:`StaleInstanceError` and writes nothing: an update is never lost
silently. Only an instance's first put (``revision`` 0) inserts it; a later put whose
instance is gone raises :class:`InstanceDeletedError` and writes nothing, so an instance
deleted (or pruned) while one of its steps runs stays deleted, and nothing after it runs.
``workflow_version`` and ``inserted_at`` are set by the first put and never changed by later
ones, but for one case: a put of an instance whose latest upgrade (``instance.upgrades[-1]``, see
:mod:`~hephaestus_django.core.upgrades`) came from the stored version writes the version it
was upgraded to. ``query`` returns instances oldest first (by ``inserted_at``, then id) and
leaves out, with a logged error, rows that cannot be decoded,
so one corrupt row never hides the others; ``get`` raises for it.

``update`` serializes changes to one instance (a row lock, a mutex): two
processes resuming the same instance never lose an update, and never hold the
lock while a step runs. ``claim`` hands each instance that has a due timer, or
that is running with no live lease (its runner died), to exactly one caller
and leases it to ``owner`` for ``lease``; it bumps the revision, so writes
based on earlier reads are stale. ``renew`` extends a lease its owner still
holds by ``lease`` from now, without a new revision.

Time is the storage's: ``claim`` and ``renew`` compare and compute with its
clock (the database's, inside the statement), and runners base what they write
(a lease's expiry, a timer's due time) on ``now()``, never on their own clock,
so processes whose clocks disagree still agree on which lease is live and which
timer is due (see :mod:`~hephaestus_django.runtime.clock`).

A row that ``claim`` finds but cannot decode (corrupt, or of a workflow no
longer defined) is *quarantined*: logged once, its reason kept with the row,
and never claimed again until a write to it (any ``put``) lifts the quarantine.

A storage whose writes can join the caller's open transaction (``DjangoStorage``
inside ``transaction.atomic()``) may also answer ``in_transaction()``
(:class:`TransactionAware`): the runner then executes a fan-out's branches in the
caller's thread, one after another, rather than on pool threads whose own
connections would not see the caller's uncommitted rows. Without the method, the
caller is taken to be outside any transaction.

A storage whose writes are transactional may also offer ``atomic()`` and
``on_commit(callback)`` (:class:`Transactional`): ``QueuedRunner`` records a
transition and enqueues its jobs in one transaction with them, and enqueues
after the commit where the job engine cannot join it. Without them (the
in-memory storage), every write stands alone and ``on_commit`` runs the callback
at once; use :func:`atomic` and :func:`on_commit`, which know the difference.

``QueuedRunner`` marks the step a job starts as running, and where, when the storage
offers ``mark_running`` (:class:`StepMarking`): one statement that also reads the
instance for the job, so the admin tells queued steps from running ones.

A storage that can write a dispatcher's jobs in the very statement of a ``put`` offers
``put_with_jobs(instance, jobs)`` (:class:`JobsInPut`), for a dispatcher that can hand
it its jobs that way (:class:`~hephaestus_django.runtime.dispatch.JobsForPut`):
``QueuedRunner`` then records a step's result and enqueues what it made runnable in one
statement instead of a transaction of several. Its counterpart for the locked update,
``update_with_jobs(instance_id, change, jobs)`` (:class:`JobsInUpdate`), makes a resume one
locked read and one write that carries the jobs.

A storage that can run map steps (:class:`~hephaestus_django.core.maps.Map`) keeps each
item's result in a record of its own, keyed by (instance, step, index), beside the instance and
not in its state (:class:`MapItems`): a map of 10,000 items then costs a write of one item's
size per item, not one of the whole list's. Both storages offer it; the records go with their
instance when it is deleted.

A storage that keeps schedules' state offers :class:`ScheduleTable`: one small record per
schedule name (paused or not, the last tick started, when ticks count from, the next tick
due), shared by every worker, so that pausing and the ticks already handled survive restarts.


A storage that keeps concurrency slots offers :class:`SlotKeeping` (``admit``, ``release``,
``admit_waiting``, ``free``, ``limits``, ``places``; see
:mod:`~hephaestus_django.runtime.slots`): the runners then honour the steps'
:class:`~hephaestus_django.Concurrency` limits. Its ``renew`` extends the instance's held slots
with its lease, and its ``delete`` forgets them (``Runner.delete`` frees them first, admitting
the next in line).

The test-suite in ``tests/contract`` runs against every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable
from uuid import UUID

from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.slots import LimitUse, Place


@runtime_checkable
class Storage(Protocol):
    """What the runner and the ``Workflow`` facade need from a storage backend."""

    def get(self, instance_id: UUID | str) -> Instance:
        """The stored instance; ``InstanceNotFound`` when there is none."""
        ...

    def put(self, instance: Instance) -> None:
        """Insert a new instance (``revision`` 0), or replace the stored one if
        ``instance.revision`` is current; never re-insert one that was deleted."""
        ...

    def delete(self, instance_id: UUID | str) -> None:
        """Remove the instance; no error when it is absent."""
        ...

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        """Instances matching every filter, oldest first."""
        ...

    def update(self, instance_id: UUID | str, change: Callable[[Instance], Instance]) -> Instance:
        """Apply ``change`` to the stored instance and store its result, atomically.

        If ``change`` raises, nothing is written and the error propagates.
        """
        ...

    def now(self) -> datetime:
        """The storage's current time: what leases and timers are measured against."""
        ...

    def claim(self, owner: str, *, lease: timedelta, limit: int) -> list[Instance]:
        """Lease up to ``limit`` instances that need a worker to ``owner`` for ``lease``: a
        timer due by the storage's clock, or running with no live lease. Each is handed to
        one caller only; rows that cannot be decoded are quarantined instead."""
        ...

    def renew(self, instance_id: UUID | str, owner: str, lease: timedelta) -> bool:
        """Extend ``owner``'s lease to ``lease`` from the storage's now; False when it no
        longer holds it."""
        ...


@runtime_checkable
class TransactionAware(Protocol):
    """The optional part of the storage contract: is the caller inside a transaction?"""

    def in_transaction(self) -> bool:
        """True when this thread's writes through the storage join an open transaction."""
        ...


_OFFERS: dict[tuple[type, type], bool] = {}


def offers(storage: object, part: type) -> bool:
    """``isinstance(storage, part)`` for an optional part of the contract (a runtime-checkable
    protocol), found once per storage type: the protocol's own check walks its members on every
    call (microseconds, several times per step). The parts are methods of the storage's class.
    """
    key = (type(storage), part)
    found = _OFFERS.get(key)
    if found is None:
        found = _OFFERS[key] = isinstance(storage, part)
    return found


def in_callers_transaction(storage: object) -> bool:
    """Whether ``storage`` says the calling thread is inside a transaction (False if it cannot
    say: the method is optional)."""
    return offers(storage, TransactionAware) and bool(
        cast(TransactionAware, storage).in_transaction()
    )


@runtime_checkable
class Transactional(Protocol):
    """The optional part of the storage contract: transactions a caller can open."""

    def atomic(self) -> AbstractContextManager[object]:
        """A block whose writes through this storage commit together (nested: a savepoint)."""
        ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the open transaction commits; at once outside one."""
        ...


def atomic(storage: object) -> AbstractContextManager[object]:
    """``storage.atomic()``, or a block that does nothing for a storage without transactions."""
    if offers(storage, Transactional):
        return cast(Transactional, storage).atomic()
    return nullcontext()


def on_commit(storage: object, callback: Callable[[], None]) -> None:
    """``storage.on_commit(callback)``, or ``callback()`` now for a storage without transactions."""
    if offers(storage, Transactional):
        cast(Transactional, storage).on_commit(callback)
    else:
        callback()


@runtime_checkable
class StepMarking(Protocol):
    """The optional part of the storage contract: mark a queued step as running."""

    def mark_running(
        self,
        instance_id: UUID | str,
        step: str,
        on: str,
        attempt: int | None = None,
    ) -> Instance | None:
        """Record that ``step`` (a dotted path) started running on ``on`` (host:pid) at the
        storage's now, as a write of the marks alone (a new revision; ``updated_at`` and the
        lease are left as they were), and return the instance as stored after it.

        Only while the step is runnable (the instance running, the step active and not
        waiting), given an ``attempt``, while that is the step's next attempt (its count
        of failed attempts, ``Instance.attempts``, plus one), and while nobody else runs it
        (:func:`~hephaestus_django.runtime.leases.runs_elsewhere`: it has a running mark under
        a live queue lease, or a live lease is not a queue lease); None otherwise, with nothing
        written. The lease is the job's heartbeat's to renew, not the mark's: the mark stays a
        write PostgreSQL can make in place. Raises ``InstanceNotFound`` when there is no such
        instance.
        """
        ...


@runtime_checkable
class JobsInPut(Protocol):
    """The optional part of the storage contract: a put that also enqueues jobs, in its own
    statement, so the write and its jobs need no transaction of several statements."""

    def put_with_jobs(self, instance: Instance, jobs: object) -> None:
        """``put(instance)``, and, in the same statement, exactly when it writes, ``jobs``: what
        a :class:`~hephaestus_django.runtime.dispatch.JobsForPut` dispatcher's
        ``jobs_for_put`` returned for this storage (None: nothing to enqueue). A stale put
        raises ``StaleInstanceError`` and enqueues nothing."""
        ...


@runtime_checkable
class JobsInUpdate(Protocol):
    """The optional part of the storage contract: a locked update whose write also enqueues
    jobs, in its own statement, so a resume is one read and one write in one transaction,
    and no statement more for the enqueue (:class:`JobsInPut`'s counterpart for ``update``)."""

    def update_with_jobs(
        self,
        instance_id: UUID | str,
        change: Callable[[Instance], Instance],
        jobs: Callable[[Instance], object],
    ) -> Instance:
        """``update(instance_id, change)``, and, in the statement that writes the changed
        instance, what ``jobs(changed)`` returns for this storage (a
        :class:`~hephaestus_django.runtime.dispatch.JobsForPut` dispatcher's ``jobs_for_put``;
        None: nothing to enqueue). ``jobs`` is called under the row lock, after ``change``,
        only when there is something to write, and again with the new instance if the update
        is made again; nothing is enqueued when nothing is written."""
        ...


@dataclass(frozen=True, slots=True)
class MapItemState:
    """Where one item of a map stands: ``done`` (its result is recorded), and how many of its
    attempts failed (``attempts``)."""

    done: bool
    attempts: int
    failed: bool = False
    """It failed for good: its step fails once the items in flight end."""
    running: bool = False
    """Its item job runs it (``QueuedRunner``, :class:`MapItemJobs`)."""


@runtime_checkable
class MapItems(Protocol):
    """The optional part of the storage contract: the items of a map step, a record each.

    ``step`` is the map step's dotted path, ``index`` the item's position in its list. Each
    call is one bounded write or one read: recording an item never rewrites the others, nor
    the instance's state.
    """

    def map_progress(self, instance_id: UUID | str, step: str) -> dict[int, MapItemState]:
        """The items of ``step`` recorded so far, by index (an item never recorded is absent)."""
        ...

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
        """Record item ``index`` of ``step``: its failed ``attempts``, and, ``done``, its
        ``result`` (anything the codec stores: ``SerializationError``, nothing written, for
        anything else); ``failed``, it failed for good, ``result`` then the error's text.
        Replaces the item's earlier record (no longer running). ``InstanceNotFound`` when the
        instance is gone."""
        ...

    def map_results(self, instance_id: UUID | str, step: str) -> list[Any]:
        """The results of the done items of ``step``, in index order."""


class MapCounts(NamedTuple):
    """A map step's items by where they stand, counted without reading them."""

    done: int
    failed: int
    running: int
    first_failed: int | None
    """The lowest index of an item that failed for good (None when none did)."""


@runtime_checkable
class MapItemJobs(Protocol):
    """What ``QueuedRunner`` needs beyond :class:`MapItems` to run each item of a map as a job
    of its own (optional: without it, a map's items run on the threads of the map step's job).

    Each call is one statement whose cost is one item's, or an aggregate that sends no rows.
    """

    def map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        """Where item ``index`` of ``step`` stands (None: never recorded)."""
        ...

    def mark_map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        """Mark item ``index`` running, for its job to run it; where it stood, or None when it
        is done or runs already (then that job does nothing)."""
        ...

    def map_counts(self, instance_id: UUID | str, step: str) -> MapCounts:
        """How many items of ``step`` are done, failed for good and running (an aggregate over
        the step's items)."""
        ...

    def map_trouble(self, instance_id: UUID | str, step: str) -> MapCounts:
        """:meth:`map_counts` without ``done`` (0): the items failed or running only, a few
        whatever the length of the list."""
        ...

    def map_failure(self, instance_id: UUID | str, step: str, index: int) -> tuple[int, str]:
        """The failed attempts and the error's text of item ``index``, which failed for good."""
        ...

    def restart_map_items(self, instance_id: UUID | str, step: str) -> None:
        """No item of ``step`` runs any more; those that failed for good start anew."""


@runtime_checkable
class ForgetsMapItems(Protocol):
    """The optional part of the storage contract a rewind across a map step needs."""

    def forget_map_items(self, instance_id: UUID | str, steps: Sequence[str]) -> int:
        """Delete the item records of the map steps ``steps`` (dotted paths) of the instance,
        of every generation (recorded as ``step`` or ``step#N``, see
        :func:`~hephaestus_django.core.rewind.items_key`); how many went. Called inside the
        rewind's locked write (its transaction on a transactional storage), so the rewind and
        the forgetting commit together."""
        ...


class ScheduleState(NamedTuple):
    """What every worker shares of one schedule (:mod:`~hephaestus_django.runtime.schedules`)."""

    name: str
    paused: bool
    since: datetime
    """Ticks after this time count: when the record was made, or the schedule last resumed."""
    last_tick: datetime | None
    """The latest tick started by a worker (None before the first)."""
    next_due: datetime | None
    """The next tick due, as a worker computed it when it last moved the schedule."""
    updated_at: datetime


@runtime_checkable
class ScheduleTable(Protocol):
    """The optional part of the storage contract: the state of schedules, by name."""

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """The state of each schedule named; a name without a record gets one, not paused,
        counting ticks from the storage's now. Concurrent callers get the same record."""
        ...

    def advance_schedule(self, name: str, tick: datetime, next_due: datetime | None) -> bool:
        """Record ``tick`` as the schedule's last tick (and ``next_due``), unless a tick as
        late or later is recorded already; whether it was recorded. The last tick never goes
        back."""
        ...

    def pause_schedule(self, name: str, paused: bool, next_due: datetime | None) -> bool:
        """Pause or resume the schedule (whether it changed). Resuming counts ticks from the
        storage's now: the ticks that fell while it was paused are not run."""
        ...

    def forget_schedules(self, keep: Sequence[str]) -> list[str]:
        """Remove the record of every schedule not named in ``keep``; the names removed (in
        no particular order). A schedule configured again later gets a new record, counting
        ticks from then."""
        ...


class WorkflowPause(NamedTuple):
    """A whole workflow (or one version of it) held: its new instances are stored paused
    (:mod:`~hephaestus_django.runtime.workflow_pauses`)."""

    workflow: str
    """The workflow's dotted path."""
    version: int
    """The version held; 0 for every version."""
    reason: str | None
    since: datetime


@runtime_checkable
class WorkflowPausing(Protocol):
    """The optional part of the storage contract: the workflows (or versions) held, shared by
    every process."""

    def pause_workflow(self, workflow: str, version: int, reason: str | None) -> bool:
        """Hold ``workflow`` (``version`` 0: every version); whether it was not held yet."""
        ...

    def unpause_workflow(self, workflow: str, version: int) -> bool:
        """Release that hold; whether there was one."""
        ...

    def workflow_pauses(self) -> list[WorkflowPause]:
        """Every hold, by workflow and version."""
        ...


@runtime_checkable
class SlotKeeping(Protocol):
    """The optional part of the storage contract: concurrency slots, shared by every process.

    Every operation on one limit and key is serialized; see
    :mod:`~hephaestus_django.runtime.slots` for the rules.
    """

    def admit(
        self,
        instance_id: UUID,
        step: str,
        request: SlotRequest,
        *,
        priority: int,
        lease: timedelta,
    ) -> bool:
        """Take (or keep, extended by ``lease``) a slot for ``step`` of the instance: True.
        False when the line or the holders leave no room: the request waits in line (keeping
        its place when asked again)."""
        ...

    def release(
        self, instance_id: UUID, step: str, request: SlotRequest, *, lease: timedelta
    ) -> list[tuple[UUID, str]]:
        """Give up the step's slot and admit the next waiters in line, in one transaction:
        their slots taken for ``lease``, their parked instances woken. Returns them (instance,
        step dotted path). A rate limit's slot (``request.per`` set) is spent instead of
        freed: kept under :data:`~hephaestus_django.runtime.slots.SPENT`, counted, for
        ``request.per``."""
        ...

    def admit_waiting(self, *, lease: timedelta) -> list[tuple[UUID, str]]:
        """The sweep's pass: admit waiters of every limit whose holders' leases lapsed, and
        forget slots of instances that no longer run."""
        ...

    def free(self, instance_id: UUID, *, lease: timedelta) -> list[tuple[UUID, str]]:
        """Give back every slot and place in line of the instance (cancelled, deleted, ended)
        and admit the next waiters of each of its limits, in the caller's transaction: their
        slots taken for ``lease``, their parked instances woken. Returns them."""
        ...

    def lock_slots(self, instance_id: UUID) -> None:
        """Take the locks of the limits the instance holds or waits in, until the caller's
        transaction ends, in the order every transaction takes them. A write that will free
        them takes them before it locks the instance's row: a release holding a limit's lock
        may be waking that very row."""
        ...

    def limits(self) -> list[LimitUse]:
        """Each limit and key in use: its live holders and its waiters."""
        ...

    def places(self, instance_id: UUID) -> list[Place]:
        """Where the instance's waiting steps stand in their lines."""
        ...


@dataclass(frozen=True)
class BulkSpec:
    """A bulk operation as asked (:mod:`~hephaestus_django.runtime.bulk`), checked: the
    operation's name, the workflow's path, the filters and options as stored (JSON)."""

    operation: str
    workflow: str
    filters: dict[str, Any]
    options: dict[str, Any]
    batch_size: int


@dataclass(frozen=True)
class BulkState(BulkSpec):
    """A stored bulk operation and its progress."""

    id: UUID
    status: str
    """``pending`` (no batch yet), ``running``, ``done``."""
    cursor: UUID | None
    """The last instance id of the last committed batch."""
    done: int
    refused: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status == "done"


@runtime_checkable
class BulkTable(Protocol):
    """The optional part of the storage contract: bulk operations and their outcomes."""

    def create_bulk(self, spec: BulkSpec) -> BulkState:
        """Store a new bulk operation, pending."""
        ...

    def bulk_state(self, bulk_id: UUID | str) -> BulkState:
        """The stored operation; ``BulkOperationError`` when there is none."""
        ...

    def count_bulk(self, spec: BulkSpec) -> int:
        """How many instances the operation's filters select now; given a stored operation
        (a :class:`BulkState`), how many remain (past its cursor, without an outcome)."""
        ...

    def claim_bulk(
        self, owner: str, lease: timedelta, bulk_id: UUID | None = None
    ) -> BulkState | None:
        """Lease an unfinished operation (``bulk_id``, or the oldest needing a runner) to
        ``owner`` for ``lease``, for one batch: one free, held by ``owner``, or whose lease
        lapsed (its holder died mid-batch); None if there is none."""
        ...

    def bulk_batch(self, state: BulkState) -> list[UUID]:
        """The next ``batch_size`` ids past the cursor matching the filters, in id order, that
        have no outcome recorded yet."""
        ...

    def record_bulk_outcome(
        self, bulk_id: UUID, instance_id: UUID, *, done: bool, reason: str | None
    ) -> None:
        """Record what the operation did to one instance (in the caller's transaction)."""
        ...

    def finish_bulk_batch(self, bulk_id: UUID, owner: str, last: UUID | None) -> BulkState:
        """Move the cursor to ``last``, count the outcomes recorded up to it and let the
        lease go, in one statement (nothing when ``owner`` no longer holds it); with ``last``
        None (no instance left), mark it done."""
        ...

    def bulk_refusals(self, bulk_id: UUID, limit: int = 100) -> list[tuple[UUID, str]]:
        """The instances refused, with the reason, in id order."""
        ...
