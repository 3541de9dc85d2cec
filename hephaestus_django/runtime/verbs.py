"""``Runner``: the verbs every runner offers, written once.

A verb (``start``, ``resume``, ``retry``, ``cancel``, ``upgrade``, ``pause``...) is the same
whichever runner serves it: its arguments are checked here, and the engine's transition it
stands for is built here (:mod:`~hephaestus_django.runtime.execution`). What differs between
runners is only how a transition is applied, and what runs after it:

- :class:`~hephaestus_django.runtime.runner.LocalRunner` writes it under its own lease and
  runs the steps it made runnable in this process;
- :class:`~hephaestus_django.runtime.queued.QueuedRunner` writes it with the jobs of those
  steps, and returns.

So a runner implements :meth:`Runner._begin` (a new instance) and :meth:`Runner._transition`
(an existing one), plus the worker's :meth:`Runner.work`; a new verb is added here once, and
both runners, the ``Workflow`` facade and its async twin follow.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.debounce import Debounce
from hephaestus_django.core.durations import checked_duration
from hephaestus_django.core.errors import InstanceNotFound
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance, instance_key
from hephaestus_django.core.rewind import fork as fork_instance
from hephaestus_django.core.upgrades import upgrade as upgrade_instance
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import tracing
from hephaestus_django.runtime.admission import with_priority
from hephaestus_django.runtime.children import AfterWrite, Continuation
from hephaestus_django.runtime.contract import Storage, WorkflowPausing, atomic
from hephaestus_django.runtime.debounce import Debounced, start_due
from hephaestus_django.runtime.debounce import push as debounce_push
from hephaestus_django.runtime.execution import (
    cancelling,
    compensating,
    expect,
    pausing,
    resuming,
    retrying,
    rewinding,
    unpausing,
    upgrading,
)
from hephaestus_django.runtime.freeing import free_slots
from hephaestus_django.runtime.workflow_pauses import (
    CACHE_SECONDS,
    each,
    forget,
    held_at_start,
    hold_of,
    holds,
    not_paused,
    paused_by_workflow,
    reason_of,
)

DEFAULT_LEASE = timedelta(minutes=5)
"""How long a runner's claim on an instance lasts without renewal, unless told."""

Transition = Callable[[Instance], Instance]
"""An engine transition of a stored instance, as a verb asks for it (see ``execution``)."""


class Runner(ABC):
    """What the ``Workflow`` facade and the worker need from a runner backend.

    ``lease`` is how long a claim on an instance lasts without a sign of life: after it, the
    worker's sweep takes the instance's work over (see each runner for what that means).
    """

    lease: timedelta

    def __init__(self, *, lease: timedelta | float = DEFAULT_LEASE) -> None:
        self.lease = checked_duration("lease", lease)

    # --- the verbs -----------------------------------------------------------------------------

    @tracing.traced("start")
    def start(
        self,
        workflow: type[WorkflowDefinition],
        context: Mapping[str, Any] | None,
        *,
        storage: Storage,
        id: UUID | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        key: str | None = None,
        priority: int = 0,
    ) -> Instance:
        """Create an instance, persist it running, and move it on (see the runner).

        With a business ``key`` held by another instance in the workflow's ``key_scope``,
        nothing is written and ``DuplicateInstanceError`` names that instance. ``priority``
        orders its steps in the lines of concurrency limits (kept in its runtime metadata).
        """
        metadata = with_priority(metadata, priority)
        now = storage.now()
        instance = engine.start(
            engine.new_instance(workflow, context, id=id, metadata=metadata, key=key)
        )
        return self._begin(held_at_start(instance, storage, now), storage, now)

    def start_debounced(
        self,
        workflow: type[WorkflowDefinition],
        context: Mapping[str, Any] | None,
        *,
        storage: Storage,
        key: str,
        debounce: Debounce | timedelta | float,
        metadata: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> Debounced:
        """Record a debounced start (:mod:`~hephaestus_django.runtime.debounce`): starts with
        the same ``key`` within the window coalesce into one instance, which a worker starts
        once the window was quiet, with the last start's context. Returns the id it will have.
        """
        return debounce_push(
            workflow,
            context,
            storage=storage,
            key=key,
            debounce=debounce,
            metadata=metadata,
            priority=priority,
        )

    def start_debounced_due(self, *, storage: Storage, limit: int = 100) -> list[UUID]:
        """Start the debounced starts due in ``storage``, each once (the worker's pass calls
        this); the ids started. A start of a workflow held by ``pause_all`` is stored paused,
        as any other start of it."""

        def begin(instance: Instance, storage: Storage, now: datetime) -> list[Continuation]:
            return self._begin_child(held_at_start(instance, storage, now), storage, now)

        return start_due(storage, begin, limit=limit)

    @tracing.traced("resume")
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
        """Deliver ``event`` (and ``data``) to a waiting step, then move on what follows.

        With ``expected_revision`` (the revision the caller saw, e.g. on an admin page), an
        instance that has changed since is refused with :class:`StaleInstanceError`.
        """
        return self._transition(
            _key(instance_id),
            storage,
            resuming(
                event,
                data,
                now=storage.now,
                step=step,
                workflow=workflow,
                expected_revision=expected_revision,
            ),
        )

    @tracing.traced("retry")
    def retry(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Make a failed instance's failed step runnable again, then move on (see ``resume``)."""
        return self._transition(
            _key(instance_id),
            storage,
            retrying(workflow=workflow, expected_revision=expected_revision),
        )

    @tracing.traced("cancel")
    def cancel(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        reason: str | None = None,
        compensate: bool = False,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Cancel an instance; with ``compensate``, its compensations run first.

        A step running elsewhere finishes, and its result is not recorded: its runner (or
        job) finds the instance cancelled. The children of a parent that have not ended are
        cancelled (with ``compensate`` as given) in the transaction that records its cancel
        (:mod:`~hephaestus_django.runtime.children`).
        """
        return self._transition(
            _key(instance_id),
            storage,
            cancelling(
                now=storage.now,
                reason=reason,
                compensate=compensate,
                workflow=workflow,
                expected_revision=expected_revision,
            ),
        )

    def delete(self, instance_id: UUID | str, *, storage: Storage) -> None:
        """Delete an instance (idempotent); the slots it holds or waits for in concurrency
        limits go to the next waiters in line in the delete's transaction."""
        key = instance_key(instance_id)
        if key is None:
            return
        with atomic(storage):
            free_slots(self, storage, key)
            storage.delete(key)

    def _slots_freed(self, admitted: Sequence[tuple[UUID, str]], storage: Storage) -> None:
        """Move on the waiters admitted to the slots of an instance that ended or went (its
        steps' limits, its workflow's), in the transaction that freed them. A parked instance
        is woken by the storage itself; a runner that enqueues its steps as jobs enqueues
        theirs."""
        return

    def upgrade(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        to: type[WorkflowDefinition],
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Upgrade an instance to the version ``to`` under the row lock, then move on its
        runnable steps of the new version (a step of the old version running elsewhere finds
        its result refused).

        ``UpgradeError`` (nothing written) when the upgrade does not cover the instance.
        """
        return self._transition(
            _key(instance_id),
            storage,
            upgrading(
                to=to,
                now=storage.now,
                workflow=workflow,
                expected_revision=expected_revision,
            ),
        )

    @tracing.traced("rewind")
    def rewind(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        to: StepClass | str,
        compensate: bool = False,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Rewind an instance to where step ``to`` was about to run, under the row lock, then
        move it on (:mod:`~hephaestus_django.core.rewind`). With ``compensate``, the forgotten
        steps' compensations run first. A step running elsewhere finishes, and its result is
        not recorded (it is of an earlier generation of the instance).

        ``RewindError`` (nothing written) when the instance cannot be rewound there.
        """
        if not isinstance(compensate, bool):
            raise TypeError(f"compensate must be True or False, not {compensate!r}")
        return self._transition(
            _key(instance_id),
            storage,
            rewinding(
                to,
                now=storage.now,
                compensate=compensate,
                workflow=workflow,
                expected_revision=expected_revision,
                storage=storage,
            ),
        )

    @tracing.traced("compensate")
    def compensate(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Undo the completed steps of a failed instance (their ``compensate``, the last
        completed first); it ends failed again, with the compensations recorded.

        ``InstanceNotCompensableError`` (nothing written) for an instance that has not failed,
        was compensated already, or has nothing to undo.
        """
        return self._transition(
            _key(instance_id),
            storage,
            compensating(now=storage.now, workflow=workflow, expected_revision=expected_revision),
        )

    @tracing.traced("pause")
    def pause(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        reason: str | None = None,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Hold an instance under the row lock: nothing of it runs until :meth:`unpause`
        (:mod:`~hephaestus_django.core.pause`). A step running elsewhere finishes and its
        result is recorded; what it makes runnable waits. Paused already: returned as it is.

        ``InstanceNotPausableError`` (nothing written) for an instance that has ended.
        """
        return self._transition(
            _key(instance_id),
            storage,
            pausing(
                now=storage.now,
                reason=reason,
                workflow=workflow,
                expected_revision=expected_revision,
            ),
        )

    @tracing.traced("unpause")
    def unpause(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Release an instance's pause under the row lock, then move on what waited: its
        runnable steps run (or are enqueued), its due timers fire. Not paused: returned as
        it is."""
        return self._transition(
            _key(instance_id),
            storage,
            unpausing(workflow=workflow, expected_revision=expected_revision),
        )

    def pause_all(
        self,
        workflow: type[WorkflowDefinition],
        *,
        storage: Storage,
        version: int = 0,
        reason: str | None = None,
    ) -> int:
        """Hold ``workflow`` (``version`` 0: every version): its new instances are stored
        paused, and every instance of it that has not ended is paused, each under its row lock
        (:mod:`~hephaestus_django.runtime.workflow_pauses`); how many were paused. Instances
        paused already are left as they are.
        """
        path = workflow.path()
        if not isinstance(storage, WorkflowPausing):
            raise TypeError(f"{storage!r} cannot hold a workflow (it keeps no workflow pauses)")
        storage.pause_workflow(path, version, reason)
        forget(storage)
        hold = hold_of(holds(storage, fresh=True), path, version)
        why = reason_of(hold) if hold is not None else reason
        transition = pausing(
            now=storage.now, reason=why, workflow=None, expected_revision=None, by_workflow=True
        )

        def act(instance_id: UUID) -> object:
            return self._transition(instance_id, storage, transition)

        count = each(storage, path, version, not_paused, act)
        # A start in a process whose reading of the holds was older than this hold: paused now.
        time.sleep(CACHE_SECONDS)
        return count + each(storage, path, version, not_paused, act)

    def unpause_all(
        self, workflow: type[WorkflowDefinition], *, storage: Storage, version: int = 0
    ) -> int:
        """Release the hold of ``workflow`` (``version`` 0: every version) and unpause the
        instances it paused (not those paused one by one, nor those another hold still
        covers); what waited runs on. How many were unpaused."""
        path = workflow.path()
        if not isinstance(storage, WorkflowPausing):
            raise TypeError(f"{storage!r} cannot hold a workflow (it keeps no workflow pauses)")
        storage.unpause_workflow(path, version)
        forget(storage)
        remaining = holds(storage, fresh=True)

        def wanted(instance: Instance) -> bool:
            return paused_by_workflow(instance) and (
                hold_of(remaining, path, instance.workflow_version) is None
            )

        def act(instance_id: UUID) -> object:
            return self.unpause(instance_id, storage=storage)

        return each(storage, path, version, wanted, act)

    @tracing.traced("fork")
    def fork(
        self,
        instance_id: UUID | str,
        *,
        storage: Storage,
        at: StepClass | str,
        context: Mapping[str, Any] | None = None,
        to: type[WorkflowDefinition] | None = None,
        workflow: type[WorkflowDefinition] | None = None,
        expected_revision: int | None = None,
    ) -> Instance:
        """Start a new instance from a copy of the stored one as a rewind to ``at`` would
        leave it (:func:`~hephaestus_django.core.rewind.fork`), on version ``to`` when given
        (by the upgrade it declares); the original is not changed.

        ``RewindError`` or ``UpgradeError`` (nothing written) when it cannot be forked there;
        ``StaleInstanceError`` when the original is not at ``expected_revision``.
        """
        original = storage.get(_key(instance_id))
        expect(original, workflow, expected_revision)
        now = storage.now()
        source = original
        if to is not None and to is not original.workflow:
            source = upgrade_instance(original, to=to, now=now)
        copy = fork_instance(source, at, now=now, context=context)
        return self._begin(held_at_start(copy, storage, now), storage, now)

    @abstractmethod
    def work(self, *, storage: Storage, limit: int = 100) -> list[Instance]:
        """The worker's pass: fire due timers, take over instances whose lease lapsed; return
        the instances handled."""

    @abstractmethod
    def close(self) -> None:
        """Release what the runner holds between calls (threads); they start again if needed."""

    # --- what each runner implements -------------------------------------------------------

    @abstractmethod
    def _begin(self, instance: Instance, storage: Storage, now: datetime) -> Instance:
        """Write the new, started ``instance`` (read ``now`` from the storage before it was
        built) and move it on; return it as it stands after."""

    @abstractmethod
    def _begin_child(self, child: Instance, storage: Storage, now: datetime) -> list[Continuation]:
        """Write a started child inside the caller's transaction (the parent's write); return
        what to do once it committed."""

    @abstractmethod
    def _wake_parent(self, parent_id: UUID, storage: Storage, deliver: Transition) -> AfterWrite:
        """Apply ``deliver`` to an instance linked to the one being written, under the
        storage's lock, inside the caller's transaction: a child's end to its parent, a
        parent's cancel to its child. ``InstanceNotFound`` when it is gone."""

    @abstractmethod
    def _transition(
        self, instance_id: UUID | str, storage: Storage, transition: Transition
    ) -> Instance:
        """Apply ``transition`` to the stored instance under the storage's lock, write it, and
        move it on; return it as it stands after."""


def _key(instance_id: UUID | str) -> UUID:
    """The id a verb was given, as a UUID; a malformed one names no instance."""
    key = instance_key(instance_id)
    if key is None:
        raise InstanceNotFound(instance_id)
    return key
