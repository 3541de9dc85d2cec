"""The runner: executes steps, feeds their outcomes to the engine, persists.

``LocalRunner`` runs steps in the calling process. Each *wave* (the steps
that are runnable at once, e.g. the branches of a fan-out) runs concurrently
on a bounded thread pool; the wave's outcomes are applied in one engine
transition and persisted with one ``put``. So the stored instance is never
more than one wave behind, and a wave costs one write. The built-ins ``Done``,
``Wait`` and ``WaitForEvent`` cost none: they do nothing outside the instance and
cannot fail, so they are settled in the transition that made them runnable, and
share its write (a start whose first step waits is one write, taking no lease).

Any process may move any instance on. Transitions that come from outside
(``resume``, ``retry``, a due timer) go through ``storage.update``: a locked
read-modify-write, never held while a step runs. Steps are executed by the
runner holding the instance's lease (:mod:`~hephaestus_django.runtime.leases`):
whoever made them runnable, unless another runner is already executing the
instance, which then picks them up. A wave's write is optimistic; when another
writer got in first, the wave's outcomes are applied to a fresh locked read
(the steps are not executed again). If a runner dies, its lease lapses and
:meth:`LocalRunner.work` (called by the worker) runs the active steps again:
execution is at least once.

The runner has no clock of its own: every time it records (a lease's expiry, a
timer's due time, the history's timestamps) is the storage's ``now()``, the
database's time for ``DjangoStorage``, so processes whose clocks disagree agree on
leases and timers.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import (
    HephaestusError,
    InstanceNotFound,
    StaleInstanceError,
    StateTooLargeError,
)
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.runtime import events, tracing
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
from hephaestus_django.runtime.contract import (
    SlotKeeping,
    Storage,
    atomic,
    in_callers_transaction,
)
from hephaestus_django.runtime.execution import as_too_large, log_retries, reach_ends
from hephaestus_django.runtime.freeing import frees_slots, lock_slots
from hephaestus_django.runtime.leases import Heartbeat, new_owner, with_lease
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.maps import execute
from hephaestus_django.runtime.slots import PARKED_LEASES, PARKED_PREFIX, slot_lease
from hephaestus_django.runtime.verbs import DEFAULT_LEASE, Runner

logger = logging.getLogger("hephaestus_django.runner")


class LocalRunner(Runner):
    """Runs steps in this process; a fan-out wave runs on up to ``max_workers`` threads.

    ``lease`` is how long a runner's claim on an instance lasts without renewal: the time
    after which a worker re-runs the steps of a runner that died. Times come from the
    storage's clock (``storage.now()``); to test with a clock of your own, give one to
    ``InMemoryStorage(clock=...)``.
    """

    def __init__(
        self,
        *,
        max_workers: int = 4,
        lease: timedelta | float = DEFAULT_LEASE,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, not {max_workers!r}")
        super().__init__(lease=lease)
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._heartbeat = Heartbeat(self.lease)

    def work(self, *, storage: Storage, limit: int = 100) -> list[Instance]:
        """Fire due timers and take over instances whose runner died; return those handled.

        One pass, for a worker loop, cron or a task queue. Each instance is claimed by
        exactly one caller, so any number of processes may call this at once. What is due
        is decided by the storage's clock, inside its claim.
        """
        owner = new_owner()
        handled = []
        if isinstance(storage, SlotKeeping):  # slots whose holders died: to the next in line
            storage.admit_waiting(lease=self.lease)
        claimed_batch = storage.claim(owner, lease=self.lease, limit=limit)
        # Read after the claim: never earlier than the time the claim found the timers due at.
        moment = storage.now()
        for claimed in claimed_batch:
            try:
                handled.append(self._take_over(claimed, storage, owner, moment))
            except InstanceNotFound:  # deleted since the claim: it stays deleted
                logger.info("instance %s was deleted while taken over", claimed.id)
            except HephaestusError as error:
                logger.error(
                    "could not move instance %s on: %s", claimed.id, error, extra=about(claimed)
                )
        return handled

    def run(self, instance: Instance, *, storage: Storage, owner: str) -> Instance:
        """Run waves while ``owner`` holds the lease; persist after each wave.

        Steps over their concurrency limit wait in line (:mod:`~hephaestus_django.runtime.
        admission`); when nothing else is runnable, the instance is parked and left to the
        worker, which runs it once a slot is freed for it: the caller is never blocked.
        """
        while instance.lease_owner == owner:
            activations = engine.runnable(instance)
            if not activations:
                return instance
            admission = admit(instance, activations, storage, self.lease)
            if not admission.run and not admission.refused:
                instance, resumed = self._park(instance, storage, owner, admission)
                if not resumed:
                    return instance
                continue
            try:
                results = list(admission.refused)
                if admission.run:
                    with self._heartbeat.held(storage, instance.id, owner):
                        results += self._execute_wave(instance, admission.run, storage)
                # The result and the slots it frees commit together.
                with atomic(storage) if admission.held else nullcontext():
                    instance = self._save_wave(instance, results, storage, owner)
                    release(instance.id, admission.held, storage, self.lease)
            except BaseException:
                release(instance.id, admission.held, storage, self.lease)
                raise
        return instance

    def close(self) -> None:
        """Stop the thread pool and the heartbeat (both start again if needed)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._heartbeat.stop()

    # --- internals ------------------------------------------------------------------------------

    def _park(
        self, instance: Instance, storage: Storage, owner: str, admission: Admission
    ) -> tuple[Instance, bool]:
        """Leave an instance whose runnable steps all wait for slots to the worker: its lease
        goes to a parked owner for :data:`~hephaestus_django.runtime.slots.PARKED_LEASES`
        leases (a backstop), and a release, or the sweep's admission, wakes it.

        A release between this runner's ``admit`` and the park's write could not wake it (it
        was not parked yet), so the waiting steps are asked once more after the write: when
        one was admitted meanwhile, the runner takes the instance back and goes on (True)."""
        parked_owner = PARKED_PREFIX + owner

        def park(current: Instance) -> Instance:
            if current.lease_owner != owner:  # taken over meanwhile: not ours to park
                return current
            until = storage.now() + self.lease * PARKED_LEASES
            return evolve(current, lease_owner=parked_owner, lease_expires_at=until)

        instance = self._put_or_update(instance, park, storage)
        if instance.lease_owner != parked_owner:
            return instance, False
        logger.info(
            "instance %s waits for a concurrency slot (%s)",
            instance.id,
            ", ".join(f"{request.name} {request.key!r}" for request in admission.waiting.values()),
            extra=about(instance),
        )
        if not any(
            isinstance(storage, SlotKeeping)
            and storage.admit(
                instance.id,
                dotted_path(step),
                request,
                priority=priority_of(instance),
                lease=slot_lease(request.name, self.lease),
            )
            for step, request in admission.waiting.items()
        ):
            return instance, False

        def take_back(current: Instance) -> Instance:
            if current.lease_owner != parked_owner:
                return current
            until = storage.now() + self.lease
            return evolve(current, lease_owner=owner, lease_expires_at=until)

        instance = self._put_or_update(instance, take_back, storage)
        return instance, instance.lease_owner == owner

    def _begin(self, instance: Instance, storage: Storage, now: datetime) -> Instance:
        """Write the new instance under this runner's lease, and run it until it waits or ends."""
        owner = new_owner()
        instance = with_lease(reach_ends(instance, now), owner, now, self.lease)
        storage.put(instance)
        events.written(storage, None, instance)
        return self.run(instance, storage=storage, owner=owner)

    def _transition(
        self,
        instance_id: UUID | str,
        storage: Storage,
        transition: Callable[[Instance], Instance],
    ) -> Instance:
        """Apply ``transition`` under the row lock with this runner's lease, then run what is
        runnable until the instance waits or ends."""
        owner = new_owner()
        seen: list[Instance] = []
        wrapped: list[bool] = []
        frees: list[bool] = []  # the write ends an instance that may hold slots

        def change(current: Instance) -> Instance:
            if not wrapped and composes(current):
                raise InTransaction  # nothing written: done again inside a transaction
            seen[:] = [current]
            now = storage.now()
            changed = with_lease(reach_ends(transition(current), now), owner, now, self.lease)
            if not wrapped and frees_slots(current, changed):
                frees.append(True)
                raise InTransaction  # its slots are freed in the transaction that ends it
            return changed

        def write() -> AfterWrite:
            if frees:  # in the transaction: the limits' locks before the row's
                lock_slots(storage, seen[0].id)
            instance = storage.update(instance_id, change)
            events.written(storage, seen[0] if seen else None, instance)
            return after_write(self, storage, seen[0] if seen else None, instance)

        # Most instances neither start nor end children: their update is the storage's own
        # short transaction, which connects again after a dropped connection. One that may
        # (a child, or a workflow with Child steps) is written again inside a transaction
        # that also holds the child's start or the parent's wake.
        try:
            done = write()
        except InTransaction:
            wrapped.append(True)
            with atomic(storage):
                done = write()
        instance = self._continue(done, storage)
        return self.run(instance, storage=storage, owner=owner)

    def _continue(self, done: AfterWrite, storage: Storage) -> Instance:
        """Run what a committed write left to run (a child started, a parent resumed); the
        instance read again after, when anything ran."""
        if not done.then:
            return done.after
        for then in done.then:
            then()
        try:
            return storage.get(done.after.id)
        except InstanceNotFound:
            return done.after

    def _begin_child(self, child: Instance, storage: Storage, now: datetime) -> list[Continuation]:
        """Write a child under a lease of its own, in the caller's transaction; it runs once
        that committed."""
        owner = new_owner()
        child = with_lease(reach_ends(child, now), owner, now, self.lease)
        storage.put(child)
        events.written(storage, None, child)
        done = after_write(self, storage, None, child)
        return [lambda: self.run(child, storage=storage, owner=owner), *done.then]

    def _wake_parent(
        self, parent_id: UUID, storage: Storage, deliver: Callable[[Instance], Instance]
    ) -> AfterWrite:
        """Resume a parent under the row lock, in the caller's transaction; it runs on once
        that committed."""
        owner = new_owner()
        seen: list[Instance] = []

        def change(current: Instance) -> Instance:
            seen[:] = [current]
            delivered = deliver(current)
            if delivered is current:
                return current
            now = storage.now()
            return with_lease(reach_ends(delivered, now), owner, now, self.lease)

        parent = storage.update(parent_id, change)
        if seen and parent is seen[0]:
            return AfterWrite(parent)
        events.written(storage, seen[0] if seen else None, parent)
        done = after_write(self, storage, seen[0] if seen else None, parent)
        done.then.insert(0, lambda: self.run(parent, storage=storage, owner=owner))
        return done

    @tracing.traced("takeover")
    def _take_over(
        self, claimed: Instance, storage: Storage, owner: str, now: datetime
    ) -> Instance:
        """Fire the claimed instance's due timers, then run whatever is runnable."""

        def settle(base: Instance) -> Instance:
            fired = reach_ends(engine.fire_due_timers(base, now=now), now)
            return with_lease(fired, owner, now, self.lease)

        logger.info("%s", engine.describe_claim(claimed, now), extra=about(claimed))
        instance = self._put_or_update(claimed, settle, storage, taken_over=True)
        return self.run(instance, storage=storage, owner=owner)

    def _save_wave(
        self, instance: Instance, results: list[Executed], storage: Storage, owner: str
    ) -> Instance:
        def apply(base: Instance) -> Instance:
            relevant = [result for result in results if engine.accepts(base, result)]
            if not relevant:  # another runner finished these steps meanwhile, or cancelled
                return base
            now = storage.now()
            applied = engine.apply(base, relevant, now=now, random=random.random)
            log_retries(relevant, applied)
            applied = reach_ends(applied, now)
            return with_lease(applied, owner, now, self.lease)

        try:
            return self._put_or_update(instance, apply, storage, started=requested(results))
        except StateTooLargeError as error:
            if any(isinstance(result.error, StateTooLargeError) for result in results):
                raise  # not even the failures fit: the state itself is over the bound
            return self._save_wave(instance, as_too_large(results, error), storage, owner)

    def _put_or_update(
        self,
        base: Instance,
        change: Callable[[Instance], Instance],
        storage: Storage,
        *,
        taken_over: bool = False,
        started: Started = (),
    ) -> Instance:
        """Write ``change(base)`` optimistically; if another writer got in first, redo
        ``change`` on a fresh read under lock. Either way the write is told to the lifecycle
        events' listeners, with the instance it started from. A write that may start or end
        a child (:mod:`~hephaestus_django.runtime.children`) does so in its transaction."""
        with atomic(storage) if composes(base) else nullcontext():
            base, updated = self._write(base, change, storage, taken_over)
            done = after_write(self, storage, base, updated, started)
        return self._continue(done, storage)

    def _write(
        self,
        base: Instance,
        change: Callable[[Instance], Instance],
        storage: Storage,
        taken_over: bool,
    ) -> tuple[Instance, Instance]:
        updated = change(base)
        try:
            storage.put(updated)
        except StaleInstanceError:
            logger.info(
                "instance %s changed meanwhile; re-applying to a fresh read",
                updated.id,
                extra=about(updated),
            )
            seen: list[Instance] = []

            def again(current: Instance) -> Instance:
                seen[:] = [current]
                return change(current)

            updated = storage.update(updated.id, again)
            base = seen[0] if seen else updated
        events.written(storage, base, updated, taken_over=taken_over)
        return base, updated

    def _execute_wave(
        self, instance: Instance, activations: list[Activation], storage: Storage
    ) -> list[Executed]:
        """Execute a wave's steps: a fan-out's branches on the pool, concurrently, except
        inside the caller's transaction.

        There they run in the caller's thread, one after another, so that every step sees
        the same data: a pool thread has a database connection of its own, outside the
        transaction, and would not see the caller's uncommitted rows. For the same reason a
        step's ``timeout`` cannot move it to a thread of its own there: it is checked when the
        step returns (see :mod:`~hephaestus_django.runtime.bounded`).
        """
        if in_callers_transaction(storage):
            return [execute(instance, item, storage, in_transaction=True) for item in activations]
        if len(activations) == 1:
            return [execute(instance, activations[0], storage)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="hephaestus-step"
            )
        # Each branch in a copy of this thread's context, as asyncio.to_thread does: a tracing
        # span (the start or resume around the wave) and other context-locals carry over.
        futures = [
            self._pool.submit(contextvars.copy_context().run, execute, instance, item, storage)
            for item in activations
        ]
        return [future.result() for future in futures]
