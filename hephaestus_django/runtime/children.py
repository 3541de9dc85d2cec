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
  resumed once however often the end is written or told.

A parent deleted (or pruned) while its child runs is logged when the child ends; the child's
end is recorded all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
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
    child_steps,
    children_of,
    parent_of,
)
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.errors import InstanceNotFound
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.workflow_pauses import held_at_start

if TYPE_CHECKING:
    from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.children")

Continuation = Callable[[], object]
"""What a runner does once the transaction committed (``LocalRunner``: run the instance)."""

Started = Sequence[tuple[StepClass, StartChild]]

_composing: dict[type[WorkflowDefinition], bool] = {}


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
    """Whether a write of ``instance`` may start or end a child (None: cannot tell, so yes)."""
    if instance is None:
        return True
    if PARENT_KEY in instance.runtime_metadata:
        return True
    workflow = instance.workflow
    found = _composing.get(workflow)
    if found is None:
        found = _composing[workflow] = any(True for _ in child_steps(workflow))
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
    """Start the children ``started`` asks for whose step the write made wait, and resume the
    parent of a child the write ended; call it inside the write's transaction."""
    done = AfterWrite(after)
    for step, start in started:
        newly = step in after.waiting_steps and (before is None or step not in before.waiting_steps)
        if newly and start.workflow is not None:
            _start(runner, storage, done, step, start)
    link = parent_of(after)
    ended = after.status in ENDED and (before is None or before.status not in ENDED)
    if link is not None and ended:
        _wake(runner, storage, done, after, link.id, link.step)
    return done


def _start(
    runner: Runner, storage: Storage, done: AfterWrite, step: StepClass, start: StartChild
) -> None:
    parent = done.after
    assert start.workflow is not None
    existing = _holder(storage, start) if start.key is not None else None
    link = {PARENT_KEY: {"id": str(parent.id), "step": step.path()}}
    if existing is None:
        child = held_at_start(
            engine.start(
                engine.new_instance(start.workflow, start.context, metadata=link, key=start.key)
            ),
            storage,
            storage.now(),
        )
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
        if found.workflow.path() == family:
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
