"""``QueuedRunner``: every runnable step is a job on a job engine's workers.

``start``, ``resume`` and ``retry`` make their transition and enqueue a job per
step it made runnable, in one transaction when the dispatcher can join it
(:mod:`~hephaestus_django.runtime.dispatch`), then return at once: the caller
(a web request, an admin click) never waits for a step. A job marks its step
running (where, since when), executes it outside any lock, then records the
result (one optimistic write; the storage's locked ``update`` when another job
wrote the instance meanwhile) and enqueues, in the same transaction, whatever
became runnable. So a
fan-out's branches are separate jobs that run on different machines at once,
and a join is decided from the stored state by whichever branch finishes last.

Delivery is at least once; effects are not repeated:

- a job whose step is no longer runnable (delivered twice, already done, the
  instance failed, was deleted or is corrupt) does nothing and says so in the
  log; a second job of a step that runs elsewhere (its running mark under the live
  queue lease its job renews) is refused by ``mark_running`` and does nothing, so a
  step body runs beside itself only when its first run's worker died or was cut off
  for longer than the lease; and the first result is the one recorded (a later write
  is stale, and the locked update finds the step done);
- a timer due within ``wakeup_horizon`` becomes a wake-up job at its due time;
  an early or repeated wake-up changes nothing.

Job engines do not re-run a job whose worker died, so recovery stays ours, as
with ``LocalRunner``: an instance with work outstanding holds a *queue lease*
(owner ``queued:…``) that the executing jobs renew while their step runs. When
no job renews it (the worker was killed, a job was lost, an enqueue after a
commit never happened), it lapses and the sweep (``hephaestus_worker``, which
calls :meth:`QueuedRunner.work`) enqueues every runnable step again, not running
them itself, except those whose job still waits in the queue, where the dispatcher
can tell (:class:`~hephaestus_django.runtime.dispatch.PendingJobs`): workers busy
or absent for many leases leave one job per step queued, not one per lease. A
waiting instance whose wake-up job is outstanding holds the lease
until the timer is due plus one lease, so the sweep fires a timer whose wake-up
was lost one lease late, and leaves alone one whose wake-up is on its way.
Timers further out than the horizon get no job: the sweep fires them when due.

The lease is the recovery time: size it above the longest pause between two
renewals (a step's heartbeat every third of it), and as short as you are willing
to wait after a worker dies. A job waiting longer than the lease costs a take-over
(a write) per lease, not a second job.

Why one module of some 800 lines: the job path (mark, run, record), the sweep's take-over
and the transitions of the verbs share one rule, that a write and the jobs it calls for
commit together (``_commit``), and the private state that rule needs (what a transition
decided, which jobs still wait, which slots a step holds, which children a write starts).
What could stand alone already does: admission to concurrency limits
(:mod:`~hephaestus_django.runtime.admission`), children
(:mod:`~hephaestus_django.runtime.children`), map items (:mod:`~hephaestus_django.runtime.maps`).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.durations import checked_duration
from hephaestus_django.core.effects import Effects, effects, unchanged
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.errors import (
    BulkOperationError,
    CorruptInstanceError,
    HephaestusError,
    InstanceNotFound,
    InvalidJobError,
    StaleInstanceError,
    StateTooLargeError,
    UnknownWorkflowError,
)
from hephaestus_django.core.flow import may_be_limited
from hephaestus_django.core.instance import Instance, evolve, instance_key
from hephaestus_django.core.maps import Map
from hephaestus_django.core.pause import is_paused
from hephaestus_django.core.rewind import items_key
from hephaestus_django.core.steps import Step, step_registry
from hephaestus_django.runtime import bulk, events, map_jobs, tracing
from hephaestus_django.runtime.admission import Admission, admit, priority_of, release
from hephaestus_django.runtime.children import (
    AfterWrite,
    Continuation,
    InTransaction,
    Started,
    after_write,
    composes,
    requested,
)
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.contract import (
    JobsInPut,
    JobsInUpdate,
    SlotKeeping,
    StepMarking,
    Storage,
    atomic,
    in_callers_transaction,
    offers,
    on_commit,
)
from hephaestus_django.runtime.dispatch import (
    BulkBatch,
    Dispatcher,
    Job,
    JobsForPut,
    PendingJobs,
    StepJob,
    WakeUp,
    job_from_payload,
)
from hephaestus_django.runtime.execution import as_too_large, log_retries, reach_ends
from hephaestus_django.runtime.freeing import frees_slots, lock_slots
from hephaestus_django.runtime.leases import (
    QUEUE_OWNER_PREFIX,
    Heartbeat,
    held_by_pause,
    new_owner,
)
from hephaestus_django.runtime.logs import InstanceFields, about
from hephaestus_django.runtime.maps import RetryLater, execute, run_item_to_end
from hephaestus_django.runtime.verbs import DEFAULT_LEASE, Runner

logger = logging.getLogger("hephaestus_django.queue")

DEFAULT_WAKEUP_HORIZON = timedelta(hours=1)

_EARLY_WAKEUP_SLEEP = timedelta(seconds=1)
"""A wake-up at most this early waits for its timer instead of enqueueing itself again."""


class QueuedRunner(Runner):
    """Runs each runnable step as a job of ``dispatcher`` (an object, or its dotted path).

    ``lease`` is how long an instance's outstanding work may go without a sign of life
    before the sweep enqueues it again; ``wakeup_horizon`` how far ahead a timer gets a
    wake-up job (later ones are fired by the sweep when due). ``dispatcher_options`` are
    the keyword arguments a dispatcher named by its dotted path is built with.
    """

    def __init__(
        self,
        *,
        dispatcher: Dispatcher | str,
        dispatcher_options: Mapping[str, Any] | None = None,
        lease: timedelta | float = DEFAULT_LEASE,
        wakeup_horizon: timedelta | float = DEFAULT_WAKEUP_HORIZON,
    ) -> None:
        super().__init__(lease=lease)
        self.wakeup_horizon = checked_duration("wakeup_horizon", wakeup_horizon, positive=False)
        self.dispatcher = _build_dispatcher(dispatcher, dispatcher_options)
        self._heartbeat = Heartbeat(self.lease)

    def __repr__(self) -> str:
        return f"QueuedRunner(dispatcher={self.dispatcher!r}, lease={self.lease})"

    # --- the verbs (:class:`Runner`): a transition and its jobs, committed together ----------

    def _begin(self, instance: Instance, storage: Storage, now: datetime) -> Instance:
        """Write the new instance running, and enqueue its start step; return without running
        it (nothing is written or enqueued when its business key is taken)."""
        alias = backends.alias_of(storage)
        reached = effects(None, reach_ends(instance, now))
        done = reached.settled(self._leased(reached.after, now, reached))
        composing = composes(instance)
        if (
            not composing
            and instance.business_key is None  # a taken key is found by statements of its own
            and offers(storage, JobsInPut)
            and self._jobs_in_statement(storage)
            and not any(map(may_be_limited, done.newly_runnable))  # no slot to take first
        ):
            # One statement, committed by itself: the insert, and in it the start step's job.
            jobs = self._statement_jobs(alias, done, storage)
            cast(JobsInPut, storage).put_with_jobs(done.after, jobs)
            events.written(storage, None, done.after, done=done)
            return done.after

        def write() -> Effects:
            storage.put(done.after)
            return done

        return self._commit(storage, alias, write, composing=composing)

    def _jobs_in_statement(self, storage: Storage) -> bool:
        """Whether the dispatcher can hand its jobs to a write to ``storage`` for its very
        statement (:class:`JobsForPut`, on the storage's transaction); the storage must also
        offer such a write (:class:`JobsInPut`, :class:`JobsInUpdate`)."""
        dispatcher = self.dispatcher
        return offers(dispatcher, JobsForPut) and dispatcher.joins_transaction(storage)

    def _statement_jobs(self, alias: str, done: Effects, storage: Storage) -> object:
        """The jobs the transition ``done`` calls for, as the dispatcher hands them to the
        statement of its write (where :meth:`_jobs_in_statement`)."""
        steps, wakeup = self._jobs(alias, done, storage)
        return cast(JobsForPut, self.dispatcher).jobs_for_put(steps, wakeup, storage)

    def work(self, *, storage: Storage, limit: int = 100) -> list[Instance]:
        """The sweep: fire due timers and enqueue again the work of instances whose lease
        lapsed; return the instances handled. Runs no step itself."""
        alias = backends.alias_of(storage)
        owner = new_owner()
        if offers(storage, SlotKeeping):  # slots whose holders died: to the next in line
            admitted = cast(SlotKeeping, storage).admit_waiting(lease=self.lease)
            self._enqueue_admitted(admitted, alias, storage)
        claimed_batch = storage.claim(owner, lease=self.lease, limit=limit)
        moment = storage.now()  # after the claim: never earlier than what it found due
        handled = []
        for claimed in claimed_batch:
            try:
                handled.append(self._take_over(claimed, storage, alias, moment))
            except InstanceNotFound:  # deleted since the claim: it stays deleted
                logger.info("instance %s was deleted while taken over", claimed.id)
            except HephaestusError as error:
                logger.error(
                    "could not move instance %s on: %s", claimed.id, error, extra=about(claimed)
                )
        return handled

    def close(self) -> None:
        """Stop the heartbeat thread (it starts again when a step runs)."""
        self._heartbeat.stop()

    # --- what a job engine's worker calls --------------------------------------------------

    @tracing.job
    def handle(self, job: Job) -> Instance | None:
        """Run one delivered job; the instance as it stands after, or None if it was dropped.

        A job that cannot do anything (its instance deleted, corrupt, its step no longer
        runnable) is logged and dropped. Any other error (the database is down) propagates,
        so the job engine records the job as failed; the lease then lapses and the sweep
        enqueues the work again.
        """
        storage = backends.storage(job.storage)
        if isinstance(job, BulkBatch):
            self._bulk_batch(job, storage)
            return None
        try:
            if isinstance(job, WakeUp):
                return self._wake(job, storage.get(job.instance_id), storage)
            if job.item is not None:
                return self._run_item(job, storage)
            return self._run_step(job, storage)
        except InstanceNotFound:
            logger.info("dropped the %s: the instance no longer exists", job, extra=_about_job(job))
        except (CorruptInstanceError, UnknownWorkflowError) as error:
            logger.error("dropped the %s: %s", job, error, extra=_about_job(job))
        return None

    def enqueue_bulk(self, bulk_id: UUID, storage: str) -> None:
        """Enqueue the first batch's job of the stored bulk operation ``bulk_id`` (of the
        storage configured as ``storage``); each batch's job enqueues the next one's."""
        self.dispatcher.enqueue_wakeup(BulkBatch(storage, bulk_id, datetime.now(UTC)))

    # --- internals ------------------------------------------------------------------------

    def _bulk_batch(self, job: BulkBatch, storage: Storage) -> None:
        """Run one batch of the operation, then enqueue the next one's job unless it is done.

        Another runner holding it (a worker's pass) leaves it to that one: the job ends, and
        the worker's passes carry the operation on."""
        owner = f"queued-bulk:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        try:
            report = bulk.run_batch(
                storage, self, owner=owner, lease=self.lease, bulk_id=job.instance_id
            )
        except BulkOperationError as error:
            logger.error("dropped the %s: %s", job, error)
            return
        if report is None or report.state.finished:
            return
        self.enqueue_bulk(job.instance_id, job.storage)

    def _run_step(self, job: StepJob, storage: Storage) -> Instance | None:
        admission = self._admission(job, storage)
        if admission is None:
            return None
        if admission.refused:  # its concurrency key could not be worked out: its failure
            failed = admission.refused[0]
            return self._transition(job.instance_id, storage, _recording(job, failed, storage))
        instance = self._start_step(job, storage)
        if instance is None:
            return None
        step = instance.workflow.graph.by_path[job.step]
        owner = instance.lease_owner
        held = (
            self._heartbeat.held(storage, instance.id, owner)
            if owner is not None and owner.startswith(QUEUE_OWNER_PREFIX)
            else nullcontext()
        )
        inside = in_callers_transaction(storage)
        activation = engine.activation(instance, step)
        if not inside and not admission.held and map_jobs.runs_as_jobs(step, instance, storage):
            planned = map_jobs.plan(instance, activation, storage)
            if not isinstance(planned, Executed):
                self._enqueue_items(job, instance, planned, storage)
                return instance
            result = planned
        else:
            with held:  # a step that overruns its timeout is abandoned: the renewals end with it
                result = execute(instance, activation, storage, in_transaction=inside)
        if not admission.held:
            return self._write_result(job, result, instance, storage)
        try:
            # The result, the slot it frees and the next waiter's job commit together.
            with atomic(storage):
                after = self._write_result(job, result, instance, storage)
                admitted = release(instance.id, admission.held, storage, self.lease)
                self._enqueue_admitted(admitted, job.storage, storage)
        except BaseException:
            release(instance.id, admission.held, storage, self.lease)
            raise
        return after

    def _write_result(
        self, job: StepJob, result: Executed, instance: Instance, storage: Storage
    ) -> Instance:
        """Record the job's ``result``; as its step's failure when, storable alone, it would
        make the state too large (:func:`as_too_large`). The refused write wrote nothing."""
        started = requested([result])
        record = _recording(job, result, storage)
        try:
            return self._transition(instance.id, storage, record, read=instance, started=started)
        except StateTooLargeError as error:
            if isinstance(result.error, StateTooLargeError):
                raise  # not even the failure fits: the state itself is over the bound
            (failed,) = as_too_large([result], error)
            record = _recording(job, failed, storage)
            return self._transition(instance.id, storage, record, read=instance, started=started)

    def _enqueue_items(
        self, job: StepJob, instance: Instance, indexes: Sequence[int], storage: Storage
    ) -> None:
        """Enqueue the item jobs of a map step's lanes (:mod:`~.map_jobs`), but those whose
        job still waits in the queue."""
        items = [replace(job, item=index, priority=priority_of(instance)) for index in indexes]
        items = self._not_pending(items, instance)
        if items:
            self.dispatcher.enqueue_steps(items)
        logger.info(
            "map step %s of instance %s: %d item job(s) enqueued",
            job.step,
            instance.id,
            len(items),
            extra=_about_job(job, instance),
        )

    def _run_item(self, job: StepJob, storage: Storage) -> Instance | None:
        """Run one item of a map step, then join (:mod:`~.map_jobs`): record whether the map
        has ended, with the jobs of the steps after it, or enqueue the lane's next item."""
        instance = storage.get(job.instance_id)
        step = instance.workflow.graph.by_path.get(job.step)
        index = job.item
        assert index is not None
        if (
            step is None
            or not issubclass(step, Map)
            or not map_jobs.runs_as_jobs(step, instance, storage)
            or step not in engine.runnable_steps(instance)
            or instance.attempts.get(step, 0) + 1 != job.attempt
        ):
            logger.info(
                "nothing to do for the %s: its map step is not running at this attempt "
                "(instance %s)",
                job,
                instance.status,
                extra=_about_job(job, instance),
            )
            return None
        try:
            items = map_jobs.items_of(instance, step)
        except Exception as error:  # the map's head read it; the context cannot have changed
            logger.error("dropped the %s: %s", job, error, extra=_about_job(job, instance))
            return None
        if index >= len(items):
            logger.error(
                "dropped the %s: the list has %d items", job, len(items), extra=_about_job(job)
            )
            return None
        if job.at is not None:  # an item's retry after its backoff
            early = job.at - storage.now()
            if early > _EARLY_WAKEUP_SLEEP:
                logger.info(
                    "the %s came %s early; enqueued again", job, early, extra=_about_job(job)
                )
                self.dispatcher.enqueue_steps([job])
                return None
            if early > timedelta(0):
                time.sleep(early.total_seconds())
        jobs_storage: Any = storage
        path = items_key(instance, step)
        state = jobs_storage.mark_map_item(instance.id, path, index)
        if state is None:
            logger.info(
                "nothing to do for the %s: the item is done, or its other job runs it",
                job,
                extra=_about_job(job, instance),
            )
            return None
        failure = None
        stopped = jobs_storage.map_trouble(instance.id, path).failed > 0
        if stopped:  # an item failed for good: no new item starts
            jobs_storage.record_map_item(
                instance.id, path, index, attempts=state.attempts, done=False
            )
        else:
            self._renew_if_short(instance, storage, storage.now())
            owner = instance.lease_owner
            held = (
                self._heartbeat.held(storage, instance.id, owner)
                if owner is not None and owner.startswith(QUEUE_OWNER_PREFIX)
                else nullcontext()
            )
            with held:
                ended = run_item_to_end(
                    instance, step, index, items[index], jobs_storage, state, defer=True
                )
            if isinstance(ended, RetryLater):
                # A durable timer: the item's job again, not taken before its backoff ends.
                later = replace(job, at=storage.now() + ended.delay)
                logger.info(
                    "item %d of map step %s of instance %s retries at %s",
                    index,
                    job.step,
                    instance.id,
                    later.at,
                    extra=_about_job(job, instance),
                )
                self.dispatcher.enqueue_steps([later])
                return instance
            failure = ended
        following = (
            None
            if stopped or failure is not None
            else map_jobs.next_in_lane(jobs_storage, instance, step, index, len(items))
        )
        if following is not None and not jobs_storage.map_trouble(instance.id, path).failed:
            # Not a lane's end and nothing failed: the map cannot have ended, so no lock and no
            # read of the instance; the lane's next job only (the item's row is committed).
            lane = [replace(job, item=following, priority=priority_of(instance))]
            self._enqueue(lane, None)
            return instance

        def joined(current: Instance) -> Instance:
            # The lane ends here, or an item failed for good (no new item starts): has the map?
            decided = map_jobs.join(
                jobs_storage, current, step, len(items), lane_ended=True, error=failure
            )
            if decided is None:
                return current
            return _recording(job, decided, storage)(current)

        # Under the row lock: the join, and the next steps' jobs with it, once.
        return self._transition(instance.id, storage, joined)

    def _admission(self, job: StepJob, storage: Storage) -> Admission | None:
        """The slot the job's step needs, taken (or found taken for it when it was enqueued);
        an empty admission for a step without a limit. None (logged) when the step waits in
        line: its job comes when a slot is freed for it."""
        step = _step_class(job.step)
        if step is None or not may_be_limited(step) or not offers(storage, SlotKeeping):
            return Admission()
        current = storage.get(job.instance_id)
        step = current.workflow.graph.by_path.get(job.step)
        if step is None or step not in engine.runnable_steps(current):
            return Admission()  # _start_step says why there is nothing to do
        decided = admit(current, [engine.activation(current, step)], storage, self.lease)
        if decided.waiting:
            logger.info(
                "the %s waits in line for a concurrency slot; its job comes when one is freed",
                job,
                extra=_about_job(job, current),
            )
            return None
        return decided

    def _slots_freed(self, admitted: Sequence[tuple[UUID, str]], storage: Storage) -> None:
        """The jobs of the waiters admitted to the slots of an instance that ended or went."""
        self._enqueue_admitted(admitted, backends.alias_of(storage), storage)

    def _enqueue_admitted(
        self, admitted: Sequence[tuple[UUID, str]], alias: str, storage: Storage
    ) -> None:
        """Enqueue the jobs of the waiters a release admitted: in its transaction when the
        dispatcher joins it, else once it commits (a lost one is the sweep's to mend)."""
        jobs = []
        trace = tracing.carrier()
        for instance_id, path in admitted:
            try:
                waiter = storage.get(instance_id)
            except InstanceNotFound:
                continue
            step = waiter.workflow.graph.by_path.get(path)
            if step is None:
                continue
            attempt = waiter.attempts.get(step, 0) + 1
            jobs.append(
                StepJob(
                    alias, instance_id, path, attempt, trace=trace, priority=priority_of(waiter)
                )
            )
        if not jobs:
            return
        if self.dispatcher.joins_transaction(storage):
            self._enqueue(jobs, None)
        else:
            on_commit(storage, lambda: self._enqueue_after_commit(jobs, None))

    def _start_step(self, job: StepJob, storage: Storage) -> Instance | None:
        """The instance with the job's step marked running, where the storage can mark it;
        None (logged) when the step is not runnable, not at the job's attempt (a late
        duplicate of an attempt that failed), or already run by someone else
        (:func:`~hephaestus_django.runtime.leases.runs_elsewhere`: a second job of a step
        must not run it beside the first)."""
        marking = offers(storage, StepMarking)
        if marking:
            marked = cast(StepMarking, storage).mark_running(
                job.instance_id, job.step, _here(), attempt=job.attempt
            )
            if marked is not None:
                self._renew_if_short(
                    marked, storage, marked.running[marked.workflow.graph.by_path[job.step]].since
                )
                return marked
        instance = storage.get(job.instance_id)
        if is_paused(instance):
            logger.info(
                "nothing to do for the %s: the instance is paused; its runnable steps are "
                "enqueued again when it is unpaused",
                job,
                extra=_about_job(job, instance),
            )
            return None
        step = instance.workflow.graph.by_path.get(job.step)
        if step is None or step not in engine.runnable_steps(instance):
            logger.info(
                "nothing to do for the %s: the step is not runnable (instance %s)",
                job,
                instance.status,
                extra=_about_job(job, instance),
            )
            return None
        expected = instance.attempts.get(step, 0) + 1
        if expected != job.attempt:
            logger.info(
                "nothing to do for the %s: the step is at attempt %d (a job delivered late)",
                job,
                expected,
                extra=_about_job(job, instance),
            )
            return None
        if marking:
            # Refused while runnable at this attempt: the step runs elsewhere (or the instance
            # changed in between, and whatever changed it enqueues what it calls for).
            mark = instance.running.get(step)
            logger.info(
                "nothing to do for the %s: it already runs%s under a live lease (%s); if that "
                "run dies, the lease lapses and the sweep enqueues the step again",
                job,
                f" on {mark.on} since {mark.since.isoformat()}" if mark is not None else "",
                instance.lease_owner,
                extra=_about_job(job, instance),
            )
            return None
        return instance

    def _renew_if_short(self, instance: Instance, storage: Storage, now: datetime) -> None:
        """Renew the queue lease at once when it would lapse before the heartbeat's first beat
        (a third of the lease from now, at the latest): the mark does not renew it, and a job
        that waited long in the queue finds it short or lapsed. One statement, only then."""
        owner, expires = instance.lease_owner, instance.lease_expires_at
        if owner is None or not owner.startswith(QUEUE_OWNER_PREFIX):
            return
        if expires is not None and expires - now >= self.lease / 2:
            return
        if storage.renew(instance.id, owner, self.lease):
            instance.lease_expires_at = now + self.lease

    @tracing.traced("timer")
    def _wake(self, job: WakeUp, instance: Instance, storage: Storage) -> Instance | None:
        due = engine.next_timer(instance)
        if due is None:
            logger.debug(
                "nothing to do for the %s: no timer waits (or the instance is paused: its "
                "timers wait for the unpause)",
                job,
                extra=_about_job(job, instance),
            )
            return None
        early = due - storage.now()
        if early > _EARLY_WAKEUP_SLEEP:
            logger.info(
                "the %s came %s early; enqueued again for %s",
                job,
                early,
                due,
                extra=_about_job(job, instance),
            )
            self.dispatcher.enqueue_wakeup(WakeUp(job.storage, instance.id, due, trace=job.trace))
            return None
        if early > timedelta(0):
            time.sleep(early.total_seconds())
        return self._transition(
            instance.id, storage, lambda current: engine.fire_due_timers(current, now=storage.now())
        )

    def _transition(
        self,
        instance_id: UUID | str,
        storage: Storage,
        transition: Callable[[Instance], Instance],
        *,
        read: Instance | None = None,
        started: Started = (),
    ) -> Instance:
        """``transition`` written leased, with the jobs it calls for.

        Given the instance as just ``read``, the write is optimistic (one ``put``, stale if
        another writer got in first, e.g. a sibling branch); else, and after a stale put,
        it is the storage's locked ``update``. Where the storage and the dispatcher can
        (:class:`JobsInPut`, :class:`JobsInUpdate`, :class:`JobsForPut`), the write carries
        the jobs in its own statement: the optimistic put needs no transaction to begin and
        commit around a write and an enqueue (what a job's recording of its step makes
        runnable), and the locked update (a resume) is its read and that write, in the
        storage's own transaction.
        """
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        alias = backends.alias_of(storage)
        # What the last run of ``change`` decided (it may run again, on a fresh locked read).
        decided: list[Effects] = []
        # Whether the write holds a child's start or a parent's wake in its transaction: known
        # from ``read``, or found out by the locked read (then the write is made again).
        wrapped = [read is not None and composes(read)]
        frees: list[bool] = []  # the write ends an instance that may hold slots

        def change(current: Instance) -> Instance:
            if not wrapped[0] and composes(current):
                raise InTransaction
            changed = transition(current)
            if changed is current:
                decided[:] = [unchanged(current)]
                return current
            now = storage.now()
            reached = effects(current, reach_ends(changed, now))
            settled = self._leased(_without_stale_marks(reached), now, reached)
            if not wrapped[0] and frees_slots(current, settled):
                frees.append(True)
                raise InTransaction  # its slots are freed in the transaction that ends it
            decided[:] = [reached.settled(settled)]
            return settled

        in_statement = not wrapped[0] and self._jobs_in_statement(storage)

        def jobs_of(changed: Instance) -> object:
            """What the write of ``changed`` enqueues in its statement: the jobs of the
            transition ``change`` just decided."""
            return self._statement_jobs(alias, decided[0], storage)

        if in_statement and read is not None and offers(storage, JobsInPut):
            try:
                changed = change(read)
            except InTransaction:  # nothing written: made again below, in a transaction
                wrapped[0] = True
            else:
                if changed is read:
                    return read
                try:
                    cast(JobsInPut, storage).put_with_jobs(changed, jobs_of(changed))
                except StaleInstanceError:
                    read = None  # another writer got in first: the locked update below
                else:
                    done = decided[0]
                    events.written(storage, done.before, done.after, done=done)
                    return changed
        if in_statement and not wrapped[0] and read is None and offers(storage, JobsInUpdate):
            try:
                after = cast(JobsInUpdate, storage).update_with_jobs(key, change, jobs_of)
            except InTransaction:  # nothing written: made again below, in a transaction
                wrapped[0] = True
            else:
                done = decided[0].settled(after)
                events.written(storage, done.before, done.after, done=done)
                return after

        def write() -> Effects:
            if frees:  # in the transaction: the limits' locks before the row's
                lock_slots(storage, key)
            if read is not None:
                changed = change(read)
                if changed is read:
                    return decided[0]
                try:
                    storage.put(changed)
                    return decided[0]
                except StaleInstanceError:
                    pass
            after = storage.update(key, change)
            return decided[0].settled(after)

        try:
            return self._commit(storage, alias, write, started=started, composing=wrapped[0])
        except InTransaction:  # nothing was written
            wrapped[0] = True
            return self._commit(storage, alias, write, started=started, composing=True)

    def _begin_child(self, child: Instance, storage: Storage, now: datetime) -> list[Continuation]:
        """Write a started child and its first job inside the caller's transaction."""
        self._begin(child, storage, now)
        return []

    def _wake_parent(
        self, parent_id: UUID, storage: Storage, deliver: Callable[[Instance], Instance]
    ) -> AfterWrite:
        """Resume a parent under the row lock with the jobs it calls for, inside the caller's
        transaction."""
        return AfterWrite(self._transition(parent_id, storage, deliver))

    @tracing.traced("takeover")
    def _take_over(
        self, claimed: Instance, storage: Storage, alias: str, now: datetime
    ) -> Instance:
        """Fire the claimed instance's due timers; enqueue all its work again."""

        def settle(base: Instance) -> Instance:
            fired = reach_ends(engine.fire_due_timers(base, now=now), now)
            # The jobs that marked steps running are gone (or late): their steps are queued again.
            return self._leased(evolve(fired, running={}), now)

        def write() -> tuple[Instance | None, Instance]:
            settled = settle(claimed)
            try:
                storage.put(settled)
                return claimed, settled
            except StaleInstanceError:
                seen: list[Instance] = []

                def again(current: Instance) -> Instance:
                    seen[:] = [current]
                    return settle(current)

                settled = storage.update(claimed.id, again)
                return (seen[0] if seen else claimed), settled

        logger.info(
            "%s; its work is enqueued again",
            engine.describe_claim(claimed, now),
            extra=about(claimed),
        )
        return self._commit(storage, alias, write, taken_over=True, composing=composes(claimed))

    def _commit(
        self,
        storage: Storage,
        alias: str,
        write: Callable[[], Effects | tuple[Instance | None, Instance]],
        *,
        taken_over: bool = False,
        started: Started = (),
        composing: bool = False,
    ) -> Instance:
        """Run ``write``, then enqueue the jobs its transition calls for: in its transaction
        when the dispatcher joins it, else once it has committed. A write that may start or
        end a child (``composing``) does so in its transaction
        (:mod:`~hephaestus_django.runtime.children`). ``write`` returns what its
        transition did (:class:`Effects`), or the instance it started from and the one written,
        whose effects are then worked out here, once. ``taken_over``: the sweep claimed the
        instance, and every runnable step is enqueued again, not only new ones.

        The lifecycle events of the write are told once it commits (``events.written``)."""
        if self.dispatcher.joins_transaction(storage):
            with atomic(storage):
                done = _effects_of(write())
                events.written(storage, done.before, done.after, taken_over=taken_over, done=done)
                steps, wakeup = self._jobs(alias, done, storage, taken_over=taken_over)
                self._enqueue(steps, wakeup)
                if composing:
                    return after_write(self, storage, done.before, done.after, started).after
            return done.after
        with atomic(storage) if composing else nullcontext():
            done = _effects_of(write())
            events.written(storage, done.before, done.after, taken_over=taken_over, done=done)
            steps, wakeup = self._jobs(alias, done, storage, taken_over=taken_over)
            if steps or wakeup is not None:
                on_commit(storage, lambda: self._enqueue_after_commit(steps, wakeup))
            if composing:
                return after_write(self, storage, done.before, done.after, started).after
        return done.after

    def _jobs(
        self, alias: str, done: Effects, storage: Storage, *, taken_over: bool = False
    ) -> tuple[list[StepJob], WakeUp | None]:
        """The jobs the transition ``done`` calls for: a job per step it made runnable (per
        runnable step whose job does not still wait in the queue, ``taken_over``), and a
        wake-up for a new timer due within the horizon."""
        if not done.changed:
            return [], None
        after = done.after
        fresh = done.runnable if taken_over else done.newly_runnable
        trace = tracing.carrier()
        priority = priority_of(after)
        steps = [
            StepJob(
                alias,
                after.id,
                step.path(),
                after.attempts.get(step, 0) + 1,
                trace=trace,
                priority=priority,
            )
            for step in after.workflow.graph.sorted(fresh)
        ]
        if taken_over:
            steps = self._not_pending(steps, after)
        steps = self._admitted(steps, after, storage)
        due = done.due
        wakeup = None
        if (
            due is not None
            and (taken_over or done.due_moved)
            and due <= storage.now() + self.wakeup_horizon
        ):
            wakeup = WakeUp(alias, after.id, due, trace=trace)
        return steps, wakeup

    def _admitted(
        self, steps: list[StepJob], instance: Instance, storage: Storage
    ) -> list[StepJob]:
        """``steps`` without those of limited steps that must wait in line for a slot: no job
        that would only wait is enqueued. A step whose concurrency key cannot be worked out
        keeps its job, which records the failure."""
        if not steps or instance.compensating or not offers(storage, SlotKeeping):
            return steps
        kept = []
        graph = instance.workflow.graph
        for job in steps:
            step = graph.by_path[job.step]
            decided = admit(instance, [engine.activation(instance, step)], storage, self.lease)
            if decided.waiting:
                logger.info(
                    "instance %s: %s waits in line for a concurrency slot",
                    instance.id,
                    step.__qualname__,
                    extra=about(instance, step=job.step),
                )
            else:
                kept.append(job)
        return kept

    def _not_pending(self, steps: list[StepJob], instance: Instance) -> list[StepJob]:
        """``steps`` without those whose job still waits in the queue (where the dispatcher
        can tell, :class:`PendingJobs`): a taken-over step gets a second job only when its
        first one was taken by a worker (that died, or the lease would not have lapsed) or is
        gone, so an outage of the workers, however long, leaves one job per step queued."""
        dispatcher = self.dispatcher
        if not steps or not offers(dispatcher, PendingJobs):
            return steps
        pending = cast(PendingJobs, dispatcher).pending_steps(steps)
        if not pending:
            return steps
        logger.info(
            "instance %s: not enqueued again, their jobs still wait in the queue: %s",
            instance.id,
            ", ".join(str(job) for job in steps if job in pending),
            extra=about(instance),
        )
        return [job for job in steps if job not in pending]

    def _enqueue(self, steps: Sequence[StepJob], wakeup: WakeUp | None) -> None:
        if steps:
            self.dispatcher.enqueue_steps(steps)
        if wakeup is not None:
            self.dispatcher.enqueue_wakeup(wakeup)

    def _enqueue_after_commit(self, steps: Sequence[StepJob], wakeup: WakeUp | None) -> None:
        """Enqueue what a committed transition calls for; a failure is the sweep's to mend."""
        try:
            self._enqueue(steps, wakeup)
        except Exception:
            pending: list[Job] = [*steps, *([wakeup] if wakeup else [])]
            logger.exception(
                "could not enqueue %s after the transition committed; the sweep enqueues "
                "the work again once the instance's lease lapses",
                ", ".join(str(job) for job in pending),
                extra=_about_job(pending[0]) if pending else None,
            )

    def _leased(self, instance: Instance, now: datetime, done: Effects | None = None) -> Instance:
        """The instance with a queue lease while it has work out as jobs, released otherwise.

        The owner is kept while the lease is live, so the jobs already running under it go on
        renewing it; a lapsed or foreign lease gets a new owner. ``done``: what the transition
        to ``instance`` decided, read instead of asking the engine again.
        """
        if is_paused(instance):  # its jobs wait for the unpause: the pause holds it
            return held_by_pause(instance)
        if done is None:
            done = effects(None, instance)
        runnable, due = done.runnable, done.due
        wakes = due is not None and due <= now + self.wakeup_horizon
        if not runnable and not wakes:
            if instance.lease_owner is None:
                return instance
            return evolve(instance, lease_owner=None, lease_expires_at=None)
        expires = now + self.lease
        if wakes and due is not None:
            expires = max(expires, due + self.lease)
        owner = instance.lease_owner
        live = instance.lease_expires_at is not None and instance.lease_expires_at > now
        if owner is None or not owner.startswith(QUEUE_OWNER_PREFIX) or not live:
            owner = f"{QUEUE_OWNER_PREFIX}{uuid.uuid4().hex[:16]}"
        return evolve(instance, lease_owner=owner, lease_expires_at=expires)


JobObserver = Callable[[Job], None]
"""Told of each job :func:`receive` accepts, before it runs: how the Django layer records that
a step worker is alive (:class:`hephaestus_django.postgres.worker_passes.JobRecorder`)."""

_observers: list[JobObserver] = []


def observe_jobs(observer: JobObserver) -> Callable[[], None]:
    """Have ``observer`` told of every job this process receives; returns what removes it.

    An observer must be quick and must not raise: an error it raises is logged and the job
    runs regardless (a job's step matters more than a record that it ran).
    """
    _observers.append(observer)

    def remove() -> None:
        if observer in _observers:
            _observers.remove(observer)

    return remove


def _observed(job: Job) -> None:
    for observer in list(_observers):
        try:
            observer(job)
        except Exception:
            logger.exception("a job observer failed on the %s; the job runs regardless", job)


def receive(payload: object) -> Instance | None:
    """Run the job a job engine delivered, with the configured ``QueuedRunner``.

    What the adapters' tasks call. A malformed payload is logged and dropped (running it
    again would not help); the runner not being a ``QueuedRunner`` is a configuration error
    raised to the job engine, which records the job as failed.
    """
    try:
        job = job_from_payload(payload)
    except InvalidJobError as error:
        logger.error("dropped a job: %s", error)
        return None
    runner = backends.runner()
    if not isinstance(runner, QueuedRunner):
        raise InvalidJobError(
            f"a worker received the {job}, but the runner configured in this process is "
            f"{runner!r}; set settings.HEPHAESTUS['RUNNER'] to QueuedRunner in the workers too"
        )
    _observed(job)
    return runner.handle(job)


def _about_job(job: Job, instance: Instance | None = None) -> InstanceFields:
    """The ``extra`` of a log record about ``job``: its instance, and its step if it has one."""
    step = job.step if isinstance(job, StepJob) else None
    if instance is not None:
        return about(instance, step=step)
    return about(instance_id=job.instance_id, step=step)


def _effects_of(written: Effects | tuple[Instance | None, Instance]) -> Effects:
    """What a write's transition did: as the write said, or worked out from its two ends."""
    return written if isinstance(written, Effects) else effects(*written)


def _recording(job: StepJob, result: Executed, storage: Storage) -> Callable[[Instance], Instance]:
    """The transition that records ``result`` of the job's step, unless it was recorded
    already or the instance moved on."""

    def record(current: Instance) -> Instance:
        if not engine.accepts(current, result):
            logger.info(
                "the %s ran, but its result is not recorded: it was recorded already, or "
                "the instance is %s",
                job,
                "compensating" if current.compensating else current.status,
                extra=_about_job(job, current),
            )
            return current
        applied = engine.apply(current, [result], now=storage.now(), random=random.random)
        log_retries([result], applied)
        return applied

    return record


def _step_class(path: str) -> type[Step] | None:
    """The step class registered under ``path``; None when there is none."""
    if path not in step_registry:
        return None
    return step_registry.resolve(path)


def _without_stale_marks(done: Effects) -> Instance:
    """``done.after`` with the running marks of steps that are no longer runnable (done,
    failed, waiting) dropped."""
    instance = done.after
    running = instance.running
    if not running:
        return instance
    runnable = done.runnable
    kept = {step: mark for step, mark in running.items() if step in runnable}
    return instance if len(kept) == len(running) else evolve(instance, running=kept)


def _here() -> str:
    """Where a step runs: this host and process (read each time: a worker may fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _build_dispatcher(
    dispatcher: Dispatcher | str, options: Mapping[str, Any] | None
) -> Dispatcher:
    if not isinstance(dispatcher, str):
        if options:
            raise ValueError("dispatcher_options only go with a dispatcher named by dotted path")
        if not isinstance(dispatcher, Dispatcher):
            raise TypeError(
                f"dispatcher must implement enqueue_steps, enqueue_wakeup and "
                f"joins_transaction, not {dispatcher!r}"
            )
        return dispatcher
    module_name, _, name = dispatcher.rpartition(".")
    try:
        built = getattr(importlib.import_module(module_name), name)(**(options or {}))
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"the dispatcher {dispatcher!r} could not be built: {error}") from error
    return _build_dispatcher(built, None)
