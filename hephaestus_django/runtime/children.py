"""What runners do around a write that starts a child or ends one.

A :class:`~hephaestus_django.core.children.Child` step's ``execute`` only asks for a child
(:class:`~hephaestus_django.core.children.StartChild`); the step then waits. The runner calls
:func:`after_write` inside the transaction of every write of an instance that composes
(:func:`composes`), so that:

- the parent's wait, its record of the child (``runtime_metadata``) and the child's first write
  commit together: a parent never waits on a child that was not started, and a child never runs
  for a parent that does not know it. A business key makes the start idempotent: a parent run
  again finds the child holding the key and waits on it (adopting it) instead of starting
  another;
- a child's end resumes its parent in the transaction that records the end, through the
  storage's locked update: whichever process writes it, and whether or not a process runs the
  parent. The parent's step is resumed only while it waits for that very child, so it is
  resumed once however often the end is written or told;
- a parent's cancel cancels its children that have not ended in the transaction that records
  it (with their compensations when the parent's were asked for): on a transactional storage,
  a failure on any child's write leaves the parent and every child as they were;
- a parent's rewind that forgets a child step's link (:mod:`~hephaestus_django.core.rewind`)
  cancels that child, if it has not ended, in the rewind's transaction (with its compensations
  when the rewind's were asked for); a child that ended is left as it is. The step run again
  starts a new child: a child found by its key is adopted only while it holds the key, so
  under the ``"active"`` scope (a cancelled or completed child released it) a new one starts.

A parent deleted (or pruned) while its child runs is logged when the child ends; the child's
end is recorded all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.children import (
    CHILDREN_KEY,
    ENDED,
    PARENT_KEY,
    Child,
    StartChild,
    child_context_error,
    child_steps,
    children_of,
    parent_of,
)
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.errors import (
    InstanceNotFound,
    InvalidInstanceError,
    SerializationError,
)
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.keys import key_claim
from hephaestus_django.core.maps import is_child_map
from hephaestus_django.core.rewind import compensates
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.admission import holds_until_end, release_on_end
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.document import encoded_state
from hephaestus_django.runtime.freeing import free_slots, frees_slots
from hephaestus_django.runtime.limits import check_state_size
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.workflow_pauses import held_at_start

if TYPE_CHECKING:
    from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.children")

Continuation = Callable[[], object]
"""What a runner does once the transaction committed (``LocalRunner``: run the instance)."""

Started = Sequence[tuple[StepClass, StartChild]]

_composing: dict[type[WorkflowDefinition], bool] = {}
_child_maps: dict[type[WorkflowDefinition], bool] = {}


@dataclass
class AfterWrite:
    """What :func:`after_write` did: the instance as it stands now (its record of a child
    adds a write), and what to run once the transaction committed."""

    after: Instance
    then: list[Continuation] = field(default_factory=list)


class InTransaction(Exception):
    """Raised by a runner's change, before it writes anything, when the instance it read may
    start or end a child: the write is then made again inside a transaction that also holds
    the child's start or the parent's wake. Most instances never compose, and their writes keep
    the storage's own short transaction (which connects again after a dropped connection)."""


def composes(instance: Instance | None) -> bool:
    """Whether a write of ``instance`` may start or end a child, or end an instance holding a
    slot of its workflow's concurrency limit (None: cannot tell, so yes)."""
    if instance is None:
        return True
    if PARENT_KEY in instance.runtime_metadata or holds_until_end(instance):
        return True
    workflow = instance.workflow
    found = _composing.get(workflow)
    if found is None:
        found = _composing[workflow] = any(True for _ in child_steps(workflow)) or (
            composes_maps(workflow)
        )
    return found


def composes_maps(workflow: type[WorkflowDefinition]) -> bool:
    """Whether ``workflow`` has a map over child workflows."""
    found = _child_maps.get(workflow)
    if found is None:
        found = _child_maps[workflow] = any(
            isinstance(step, type) and is_child_map(step) for step in workflow.graph.order
        )
    return found


def requested(results: Sequence[Executed]) -> list[tuple[StepClass, StartChild]]:
    """The children a wave's results ask for."""
    return [
        (result.step, result.outcome)
        for result in results
        if isinstance(result.outcome, StartChild) and issubclass(result.step, Child)
    ]


def after_write(
    runner: Runner,
    storage: Storage,
    before: Instance | None,
    after: Instance,
    started: Started = (),
) -> AfterWrite:
    """Start the children ``started`` asks for whose step the write made wait, resume the
    parent of a child the write ended, free the slots of an instance it cancelled or failed
    (:mod:`~hephaestus_django.runtime.freeing`), and give back the slot of its workflow's
    concurrency limit an instance the write ended held (admitting the next in line); call
    it inside the write's transaction."""
    done = AfterWrite(after)
    for step, start in started:
        newly = step in after.waiting_steps and (before is None or step not in before.waiting_steps)
        if newly and start.workflow is not None:
            _start(runner, storage, done, step, start)
    admitted = release_on_end(storage, before, after)
    if admitted:
        runner._slots_freed(admitted, storage)
    # Called after every write: what is imported or read here only when needed is not paid for
    # by the writes (most) that neither start nor end a child.
    if after.waiting_steps and composes_maps(after.workflow):
        from hephaestus_django.runtime import map_children  # it builds on the maps and on this

        map_children.start_waiting(runner, storage, done, before, after)
    ended = after.status in ENDED and (before is None or before.status not in ENDED)
    link = parent_of(after) if ended else None
    if link is not None:
        if link.item is not None:  # an item's child, of a map over child workflows
            from hephaestus_django.runtime import map_children

            map_children.item_ended(runner, storage, done, after, link)
        else:
            _wake(runner, storage, done, after, link.id, link.step)
    if after.cancellation is not None and (before is None or before.cancellation is None):
        _cancel_children(runner, storage, done, after)
    elif before is not None:
        _cancel_forgotten(runner, storage, done, before, after)
    if frees_slots(before, after):
        free_slots(runner, storage, after.id)
    return done


def _cancel_children(runner: Runner, storage: Storage, done: AfterWrite, parent: Instance) -> None:
    """Cancel the children of ``parent`` that have not ended, in the transaction of the write
    that cancelled it, with their compensations when the parent's were asked for: the parent's
    cancel and its children's commit together, or neither does. A child that ended, or was
    cancelled, meanwhile is left as it is; one that was deleted is skipped."""
    record = parent.cancellation
    assert record is not None
    reason = record.reason or f"its parent {parent.id} was cancelled"

    def stop(child: Instance) -> Instance:
        if child.status in ENDED or child.cancellation is not None:
            return child
        return engine.cancel(child, now=storage.now(), reason=reason, compensate=record.compensate)

    for child_id in [*children_of(parent).values(), *_map_children(storage, parent)]:
        try:
            outcome = runner._wake_parent(child_id, storage, stop)
        except InstanceNotFound:
            continue
        done.then.extend(outcome.then)


_ACTIVE = tuple(status.value for status in Status if status not in ENDED)


def _map_children(
    storage: Storage, parent: Instance, steps: Collection[StepClass] | None = None
) -> list[UUID]:
    """The children that the parent's maps over child workflows (of ``steps``, or all of them)
    started and that have not ended: not linked from the parent (its state does not grow with
    the list), so found by the link each child keeps to it, through the state's index. No
    statement for a workflow without such maps."""
    maps = [
        step
        for step in parent.workflow.graph.order
        if is_child_map(step) and (steps is None or step in steps)
    ]
    if not maps:
        return []
    paths = {step.path() for step in maps}
    found = []
    for child in storage.query(parent=parent.id, status_in=_ACTIVE):
        link = parent_of(child)
        if link is not None and link.item is not None and link.step in paths:
            found.append(child.id)
    return found


def _cancel_forgotten(
    runner: Runner, storage: Storage, done: AfterWrite, before: Instance, after: Instance
) -> None:
    """Cancel the children whose link the write dropped (a rewind forgot their step), in its
    transaction; with their compensations when the rewind runs the parent's first."""
    if engine.rewinds_of(after) == engine.rewinds_of(before):
        return
    now_linked = children_of(after)
    dropped = [
        child_id for key, child_id in children_of(before).items() if now_linked.get(key) != child_id
    ]
    # A rewind to a map over child workflows, or before it, forgets its items: their children
    # that still run are cancelled too (the map, run again, starts new ones).
    forgotten_maps = {
        step
        for step in before.waiting_steps
        if is_child_map(step) and step not in after.waiting_steps
    }
    if forgotten_maps:
        dropped += _map_children(storage, before, forgotten_maps)
    if not dropped:
        return
    compensate = compensates(after)
    reason = f"its parent {after.id} was rewound"

    def stop(child: Instance) -> Instance:
        if child.status in ENDED or child.cancellation is not None:
            return child
        return engine.cancel(child, now=storage.now(), reason=reason, compensate=compensate)

    for child_id in dropped:
        try:
            outcome = runner._wake_parent(child_id, storage, stop)
        except InstanceNotFound:
            continue
        done.then.extend(outcome.then)


def check_start(parent: Instance, step: StepClass, start: StartChild) -> None:
    """Refuse, as the step's failure (:class:`~hephaestus_django.core.errors.ChildContextError`),
    a child the storage would refuse: its context not encodable, or its state over
    ``HEPHAESTUS["MAX_STATE_BYTES"]``. Called when the step returns, before anything is
    written, so that the write that starts the child cannot fail half-way for it."""
    if start.workflow is None or not issubclass(step, Child):
        return  # not a child step's: the runner starts nothing for it
    try:
        child = _new_child(parent.id, step, start)
        check_state_size(codec.dumps_encoded(encoded_state(child)), child.id)
    except SerializationError as error:  # named without the id of a child never started
        problem = f"cannot store the child's {error.path}: {error.problem}"
        raise child_context_error(parent, step, start.workflow, problem) from error
    except InvalidInstanceError as error:
        raise child_context_error(parent, step, start.workflow, str(error)) from error


def _link(parent_id: UUID, step: StepClass) -> dict[str, dict[str, str]]:
    return {PARENT_KEY: {"id": str(parent_id), "step": step.path()}}


def _new_child(parent_id: UUID, step: StepClass, start: StartChild) -> Instance:
    assert start.workflow is not None
    return engine.start(
        engine.new_instance(
            start.workflow, start.context, metadata=_link(parent_id, step), key=start.key
        )
    )


def _start(
    runner: Runner, storage: Storage, done: AfterWrite, step: StepClass, start: StartChild
) -> None:
    parent = done.after
    assert start.workflow is not None
    existing = _holder(storage, start) if start.key is not None else None
    link = _link(parent.id, step)
    if existing is None:
        child = held_at_start(_new_child(parent.id, step, start), storage, storage.now())
    else:
        child = existing
        logger.info(
            "instance %s: step %s found its child %s by the key %r instead of starting another",
            parent.id,
            step.__qualname__,
            existing.id,
            start.key,
            extra=about(parent, step=step),
        )
    recorded = {
        **{key: str(value) for key, value in children_of(parent).items()},
        step.step_key: str(child.id),
    }
    done.after = storage.update(
        parent.id,
        lambda current: evolve(
            current, runtime_metadata={**current.runtime_metadata, CHILDREN_KEY: recorded}
        ),
    )
    if existing is None:
        done.then.extend(runner._begin_child(child, storage, storage.now()))
        return
    adopted = storage.update(
        existing.id,
        lambda current: evolve(current, runtime_metadata={**current.runtime_metadata, **link}),
    )
    if adopted.status in ENDED:
        _wake(runner, storage, done, adopted, parent.id, step.path())


def _holder(storage: Storage, start: StartChild) -> Instance | None:
    assert start.workflow is not None
    family = start.workflow.path()
    for found in storage.query(key=start.key, limit=10):
        if found.workflow.path() != family:
            continue
        if found.status in ENDED and key_claim(found) is None:
            continue  # it released the key (finished under "active"): a new child takes it
        return found
    return None


def _wake(
    runner: Runner,
    storage: Storage,
    done: AfterWrite,
    child: Instance,
    parent_id: UUID,
    step_path: str,
) -> None:
    def deliver(parent: Instance) -> Instance:
        step = parent.workflow.graph.by_path.get(step_path)
        waiting = parent.waiting_steps.get(step) if step is not None else None
        if step is None or waiting is None or waiting.attempt is not None:
            return parent
        if children_of(parent).get(step.step_key) != child.id:
            return parent
        return engine.resume(
            parent, child.status.value, dict(child.context.steps), now=storage.now(), step=step
        )

    try:
        outcome = runner._wake_parent(parent_id, storage, deliver)
    except InstanceNotFound:
        logger.warning(
            "child instance %s (%s) ended %s; its parent %s no longer exists (deleted or "
            "pruned), so nobody waits for it",
            child.id,
            child.workflow.__qualname__,
            child.status,
            parent_id,
            extra=about(child),
        )
        return
    if done.after.id == parent_id:
        done.after = outcome.after
    done.then.extend(outcome.then)
