"""The runner: executes steps, feeds their outcomes to the engine, persists.

``LocalRunner`` runs steps in the calling process. Each *wave* (the steps
that are runnable at once, e.g. the branches of a fan-out) runs concurrently
on a bounded thread pool; the wave's outcomes are applied in one engine
transition and persisted with one ``put``. So the stored instance is never
more than one wave behind, and a wave costs one write.

Concurrency. Within a process, work on one instance is serialized by a lock
per instance id. Across processes, ``put`` refuses stale writes: when another
writer got in first, the runner re-reads the instance and applies the same
outcomes to the fresh copy (steps are not executed again), or gives up with
a clear error when those steps are no longer active there. A runner that
resumes an instance runs only what its own transition made runnable: steps
that were already running belong to the runner executing them.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.engine import Activation, StepResult
from hephaestus_django.core.errors import (
    EngineError,
    InstanceNotFound,
    InvalidInstanceError,
    SerializationError,
    StaleInstanceError,
    StepOutcomeError,
)
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance, coerce_instance_id
from hephaestus_django.core.outcomes import Event, read_outcome
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.storage import Storage

logger = logging.getLogger("hephaestus_django.runner")

STALE_RETRIES = 5
"""How often a write that lost a race is re-applied to a fresh read before giving up."""


class Runner(Protocol):
    """What the ``Workflow`` facade needs from a runner backend."""

    def start(
        self,
        workflow: type[WorkflowDefinition],
        context: Mapping[str, Any] | None,
        *,
        storage: Storage,
        id: UUID | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Instance: ...

    def resume(
        self,
        instance_id: UUID | str,
        event: str,
        data: Any = None,
        *,
        storage: Storage,
        step: StepClass | str | None = None,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance: ...

    def retry(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance: ...

    def fire_due_timers(
        self, *, storage: Storage, now: datetime | None = None
    ) -> list[Instance]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class LocalRunner:
    """Runs steps in this process; a fan-out wave runs on up to ``max_workers`` threads."""

    def __init__(self, *, max_workers: int = 4, clock: Callable[[], datetime] = utcnow) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive int, not {max_workers!r}")
        self.max_workers = max_workers
        self.clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._instance_locks: weakref.WeakValueDictionary[UUID, Any] = weakref.WeakValueDictionary()

    # --- the facade's verbs ------------------------------------------------------------------

    def start(
        self,
        workflow: type[WorkflowDefinition],
        context: Mapping[str, Any] | None,
        *,
        storage: Storage,
        id: UUID | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Instance:
        """Create an instance, persist it running, and run it until it waits or ends."""
        instance = engine.start(engine.new_instance(workflow, context, id=id, metadata=metadata))
        with self._lock(instance.id):
            storage.put(instance)
            return self.run(instance, storage=storage)

    def resume(
        self,
        instance_id: UUID | str,
        event: str,
        data: Any = None,
        *,
        storage: Storage,
        step: StepClass | str | None = None,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Deliver ``event`` (and ``data``) to a waiting step, then run what follows.

        With ``expected_revision`` (the revision the caller saw, e.g. on an admin page), an
        instance that has changed since is refused with :class:`StaleInstanceError`.
        """

        def transition(instance: Instance) -> Instance:
            _expect(instance, workflow, expected_revision)
            return engine.resume(instance, event, data, now=self.clock(), step=step)

        return self._transition_and_run(instance_id, storage, transition)

    def retry(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Run a failed instance's failed step again, then what follows (see ``resume``)."""

        def transition(instance: Instance) -> Instance:
            _expect(instance, workflow, expected_revision)
            return engine.retry(instance)

        return self._transition_and_run(instance_id, storage, transition)

    def fire_due_timers(self, *, storage: Storage, now: datetime | None = None) -> list[Instance]:
        """Fire every due timer of the waiting instances in ``storage``; return those moved on."""
        moment = now or self.clock()
        fired = []
        for candidate in storage.query(status=Status.WAITING):
            due = engine.next_due_time(candidate)
            if due is None or due > moment:
                continue

            def transition(instance: Instance) -> Instance:
                return engine.fire_due_timers(instance, now=moment)

            try:
                fired.append(self._transition_and_run(candidate.id, storage, transition))
            except (InstanceNotFound, EngineError) as error:
                logger.info("timer of instance %s not fired: %s", candidate.id, error)
        return fired

    def run(
        self,
        instance: Instance,
        *,
        storage: Storage,
        busy: frozenset[StepClass] = frozenset(),
    ) -> Instance:
        """Run waves until nothing is runnable; the instance is persisted after each wave.

        ``busy`` steps are being executed by another runner (they were already
        running when this one loaded the instance), so they are left to it.
        """
        while True:
            activations = [a for a in engine.runnable(instance) if a.step not in busy]
            if not activations:
                return instance
            results = self._execute_wave(instance, activations)
            instance = self._persist(instance, storage, partial(self._apply, results))

    def _apply(self, results: list[StepResult], instance: Instance) -> Instance:
        return engine.apply(instance, results, now=self.clock())

    def close(self) -> None:
        """Shut the thread pool down (it is created again if needed)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # --- internals ------------------------------------------------------------------------------

    def _transition_and_run(
        self,
        instance_id: UUID | str,
        storage: Storage,
        transition: Callable[[Instance], Instance],
    ) -> Instance:
        try:
            key = coerce_instance_id(instance_id)
        except InvalidInstanceError:
            raise InstanceNotFound(instance_id) from None
        with self._lock(key):
            loaded = storage.get(key)
            busy = frozenset(activation.step for activation in engine.runnable(loaded))
            instance = self._persist(loaded, storage, transition)
            return self.run(instance, storage=storage, busy=busy)

    def _persist(
        self,
        instance: Instance,
        storage: Storage,
        transition: Callable[[Instance], Instance],
    ) -> Instance:
        """Apply ``transition`` and put; on a lost race, re-apply it to a fresh read."""
        current = instance
        for _attempt in range(STALE_RETRIES):
            updated = transition(current)
            try:
                storage.put(updated)
            except StaleInstanceError:
                logger.info(
                    "instance %s changed meanwhile; re-applying to a fresh read", current.id
                )
                current = storage.get(current.id)
                continue
            return updated
        raise StaleInstanceError(instance.id, current.revision)

    def _execute_wave(self, instance: Instance, activations: list[Activation]) -> list[StepResult]:
        if len(activations) == 1:
            return [self._execute(instance, activations[0])]
        pool = self._executor()
        futures = [pool.submit(self._execute, instance, activation) for activation in activations]
        return [future.result() for future in futures]

    def _execute(self, instance: Instance, activation: Activation) -> StepResult:
        step = activation.step
        try:
            returned = step().execute(instance, activation.config, instance.context)
            outcome = read_outcome(step, returned)
            if isinstance(outcome, Event):
                _check_storable(step, outcome)
        except Exception as error:
            quiet = (SerializationError, StepOutcomeError, *step.expected_errors)
            logger.warning(
                "step %s of instance %s (%s) failed: %s: %s",
                step.__qualname__,
                instance.id,
                instance.workflow.__qualname__,
                type(error).__name__,
                error,
                exc_info=not isinstance(error, quiet),
            )
            return StepResult(step, error=error)
        return StepResult(step, outcome=outcome)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers, thread_name_prefix="hephaestus-step"
                )
            return self._pool

    def _lock(self, instance_id: UUID) -> Any:
        with self._pool_lock:
            lock = self._instance_locks.get(instance_id)
            if lock is None:
                lock = threading.RLock()
                self._instance_locks[instance_id] = lock
            return lock


def _check_storable(step: StepClass, outcome: Event) -> None:
    """Refuse a result that could not be stored, as that step's failure, not a failed write."""
    if outcome.updates is not None:
        codec.encode(outcome.updates, path=codec.format_path("context.steps", step.step_key))
    if outcome.metadata is not None:
        codec.encode(outcome.metadata, path="runtime_metadata")


def _expect(
    instance: Instance, workflow: type[WorkflowDefinition] | None, revision: int | None
) -> None:
    """Refuse to act on an instance of another workflow, or one that changed since it was seen."""
    if revision is not None and instance.revision != revision:
        raise StaleInstanceError(instance.id, revision)
    if workflow is not None and not issubclass(instance.workflow, workflow):
        raise InstanceNotFound(
            instance.id,
            f"it is an instance of {instance.workflow.__qualname__}, not {workflow.__qualname__}",
        )
