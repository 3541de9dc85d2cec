"""Rewinding an instance to an earlier step, and forking a copy of it from one.

An operator who shipped a fix wants an instance to run again from the step that went wrong,
or from an earlier one. The graph says exactly what that means: rewinding to step ``to``
puts the instance back where ``to`` was about to run, so ``to`` and every step after it in
the graph (its descendants) are *forgotten*: their results, attempts, timers, running marks
and history entries go, and ``to`` becomes active again. Steps that are not after ``to``
(those before it, and parallel branches) keep what they did. A failure is cleared; when its
step is not forgotten, it goes into the history as a failed attempt (as ``retry`` records
it) and the step runs again.

The rewind itself is one history entry (event :data:`REWOUND`, the forgotten steps' paths in
its ``context_updates``), and it raises the instance's *generation*
(``runtime_metadata["hephaestus.rewinds"]``): a result computed on an earlier generation (a
step that was still running somewhere) is refused by :func:`engine.accepts`, so the late
result of a forgotten step is never recorded.

With ``compensate=True`` the forgotten steps that completed and define ``compensate`` are
undone first, the last completed first, as ``cancel(compensate=True)`` does; the instance is
compensating meanwhile (a :class:`Compensation` that ends ``running``), and the rewind is
applied when the last one ran (:func:`finish`).

A rewind is refused, with :class:`RewindError` and nothing changed, when ``to`` is not a
step of the instance's version, was never reached (not active, waiting, completed or
attempted), or when the instance is pending, cancelled, compensating or was compensated.

A forgotten child step's child is kept outside the instance: the rewind forgets the link
(``runtime_metadata["hephaestus.children"]``, at once, also when compensations run first), and
the runner cancels a child that has not ended in the transaction of that write (see
:func:`~hephaestus_django.runtime.children.after_write`); the step run again starts a new child.

A forgotten map step's items are kept outside the instance too (the storage's ``MapItems``):
the runner forgets them in the rewind's locked write (``ForgetsMapItems``), and the map runs
all its items again. The items are kept per generation (:func:`items_key`): an item of an
earlier run that ends after the rewind is written under that run's key, never read again, so it
is never the map's, as a step's late result is refused by the engine.

:func:`fork` builds a new instance from a copy of the state a rewind would give, with a new
id, linked to its original; the original is not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from hephaestus_django.core import engine
from hephaestus_django.core.children import CHILDREN_KEY, PARENT_KEY, Child, children_of
from hephaestus_django.core.errors import RewindError
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import (
    Compensation,
    Context,
    HistoryEntry,
    Instance,
    evolve,
)
from hephaestus_django.core.maps import is_map
from hephaestus_django.core.status import Status

REWOUND = "rewound"
"""The event of the history entry that records a rewind."""

REWINDS_KEY = engine.REWINDS_KEY
"""Where ``runtime_metadata`` counts the instance's rewinds (its generation)."""

REWIND_KEY = "hephaestus.rewind"
"""Where ``runtime_metadata`` keeps the step a rewind goes back to while its compensations
run: ``{"to": <step path>}``."""

FORKED_FROM_KEY = "hephaestus.forked_from"
"""Where a fork's ``runtime_metadata`` names its original: ``{"id": ..., "step": ...}``."""


@dataclass(frozen=True, slots=True)
class RewindPlan:
    """What a rewind (or a fork) of ``instance_id`` to ``to`` changes: a dry run's answer.

    ``forgotten`` are the steps the instance holds (completed, active, waiting or attempted)
    that it forgets, in the graph's order; ``active`` the steps active after it;
    ``compensations`` the steps whose ``compensate`` runs first when asked.
    """

    instance_id: UUID
    to: StepClass
    forgotten: tuple[StepClass, ...]
    active: tuple[StepClass, ...]
    compensations: tuple[StepClass, ...] = ()
    maps: tuple[StepClass, ...] = ()
    """The forgotten map steps: their items are forgotten with the rewind."""
    map_items: Mapping[StepClass, int] = field(default_factory=dict)
    """How many items of each of ``maps`` the storage holds (filled by the runtime's dry run;
    empty from :func:`plan` alone)."""
    children: tuple[UUID, ...] = ()
    """The children the forgotten child steps started: the instance forgets them."""
    cancelled_children: tuple[UUID, ...] = ()
    """Those of ``children`` that have not ended, which the rewind cancels (filled by the
    runtime's dry run)."""


def items_key(instance: Instance, step: StepClass) -> str:
    """Under which ``step`` the storage keeps the items of map ``step`` for this generation of
    the instance (:func:`engine.rewinds_of`): its dotted path, and
    ``#N`` after a rewind. A run of an earlier generation that ends after a rewind writes under
    its own key, which the map never reads again: its late items are never the map's (and
    checking that costs nothing per item, where reading the instance's generation would cost
    its whole state). ``ForgetsMapItems`` forgets every generation of a step."""
    generation = engine.rewinds_of(instance)
    return step.path() if not generation else f"{step.path()}#{generation}"


def plan(instance: Instance, to: StepClass | str, *, verb: str = "rewound") -> RewindPlan:
    """What rewinding ``instance`` to ``to`` would change; :class:`RewindError` when it cannot
    be rewound there (see the module's docstring)."""
    step = _resolve(instance, to, verb)
    if verb == "rewound":
        _check_status(instance, step)
    graph = instance.workflow.graph
    forgotten = _forgotten(instance, step)
    held = _held(instance)
    if step not in held:
        raise _refuse(
            instance,
            step,
            "it was never reached (it is not active, waiting, completed or attempted)",
            verb,
        )
    active = (instance.active_steps - forgotten) | {step}
    pending = tuple(s for s in engine.compensations(instance) if s in forgotten)
    lost = tuple(graph.sorted(held & forgotten))
    return RewindPlan(
        instance_id=instance.id,
        to=step,
        forgotten=lost,
        active=tuple(graph.sorted(active)),
        compensations=pending,
        maps=tuple(s for s in lost if is_map(s)),
        children=tuple(_forgotten_children(instance, forgotten).values()),
    )


def rewind(
    instance: Instance, to: StepClass | str, *, now: datetime, compensate: bool = False
) -> Instance:
    """``instance`` rewound to ``to`` (see the module's docstring); a pure transition."""
    found = plan(instance, to)
    if not compensate or not found.compensations:
        return _forget(instance, found.to, now, compensate=compensate)
    others = (instance.active_steps | instance.waiting_steps.keys()) - _forgotten(
        instance, found.to
    )
    if others:
        names = ", ".join(s.__qualname__ for s in instance.workflow.graph.sorted(others))
        raise _refuse(
            instance,
            found.to,
            f"with compensate=True the instance must be at no step the rewind keeps, and it is "
            f"at {names}: rewind without compensate, or once those steps ended",
        )
    first = found.compensations[0]
    return evolve(
        instance,
        status=Status.RUNNING,
        current_step=first,
        active_steps=frozenset({first}),
        waiting_steps={},
        attempts={},
        running={},
        error=None,
        compensation=Compensation(Status.RUNNING, now, found.compensations),
        runtime_metadata={
            **_without_children(instance, _forgotten(instance, found.to)),
            REWIND_KEY: {"to": found.to.path()},
            REWINDS_KEY: engine.rewinds_of(instance) + 1,
        },
    )


def finish(instance: Instance, now: datetime) -> Instance:
    """The rewind whose compensations have all run, applied (see :func:`rewind`); other
    instances as they are. Called by the engine after each transition that compensated."""
    compensation = instance.compensation
    if compensation is None or compensation.ends is not Status.RUNNING or not compensation.done:
        return instance
    recorded = instance.runtime_metadata.get(REWIND_KEY)
    path = recorded.get("to") if isinstance(recorded, Mapping) else None
    graph = instance.workflow.graph
    step = graph.by_path.get(path) if isinstance(path, str) else None
    metadata = {k: v for k, v in instance.runtime_metadata.items() if k != REWIND_KEY}
    base = evolve(instance, compensation=None, runtime_metadata=metadata)
    if step is None:  # pragma: no cover - written by rewind() with a step of this graph
        step = graph.start
    # The generation was raised when the compensations began: not again.
    return _forget(base, step, now, generation=engine.rewinds_of(base))


def fork(
    instance: Instance,
    at: StepClass | str,
    *,
    now: datetime,
    context: Mapping[str, Any] | None = None,
) -> Instance:
    """A new running instance: a copy of ``instance`` as a rewind to ``at`` would leave it,
    with a new id, ``context`` merged into its initial data, and linked to its original
    (``runtime_metadata["hephaestus.forked_from"]``). ``instance`` is not changed.

    The copy keeps no business key, lease, cancellation or compensation record; it is not
    its original's parent's child, and keeps only the children of the child steps it
    completed.
    """
    if instance.status is Status.PENDING:
        raise _refuse(instance, None, "it has not started", "forked", at)
    if context is not None and not isinstance(context, Mapping):
        raise _refuse(
            instance,
            None,
            f"the context must be a dict, not {type(context).__name__}",
            "forked",
            at,
        )
    if instance.compensating:
        raise _refuse(
            instance,
            None,
            "it is compensating its steps; fork it once they are undone",
            "forked",
            at,
        )
    found = plan(instance, at, verb="forked")
    step = found.to
    forgotten = _forgotten(instance, step)
    kept_children = [
        s
        for s in instance.active_steps | instance.waiting_steps.keys()
        if s not in forgotten and issubclass(s, Child)
    ]
    if kept_children:
        names = ", ".join(s.__qualname__ for s in kept_children)
        raise _refuse(
            instance,
            step,
            f"the copy would wait on the children of {names}, which belong to the original",
            "forked",
        )
    completed_keys = {s.step_key for s in instance.completed_steps if s not in forgotten}
    metadata: dict[str, Any] = {
        k: v
        for k, v in instance.runtime_metadata.items()
        if k not in (PARENT_KEY, CHILDREN_KEY, REWIND_KEY, REWINDS_KEY, FORKED_FROM_KEY)
    }
    children = {k: str(v) for k, v in children_of(instance).items() if k in completed_keys}
    if children:
        metadata[CHILDREN_KEY] = children
    metadata[FORKED_FROM_KEY] = {"id": str(instance.id), "step": step.path()}
    copy = evolve(
        instance,
        id=uuid4(),
        context=Context({**instance.context.initial, **(context or {})}, instance.context.steps),
        runtime_metadata=metadata,
        revision=0,
        inserted_at=None,
        updated_at=None,
        lease_owner=None,
        lease_expires_at=None,
        running={},
        cancellation=None,
        compensation=None,
        business_key=None,
        status=Status.RUNNING,
    )
    return _forget(copy, step, now, generation=0, record=False)


# --- internals -----------------------------------------------------------------------------


def _forget(
    instance: Instance,
    to: StepClass,
    now: datetime,
    *,
    generation: int | None = None,
    record: bool = True,
    compensate: bool = False,
) -> Instance:
    """``instance`` back where ``to`` was about to run: ``to`` and its descendants forgotten."""
    forgotten = _forgotten(instance, to)
    held = _held(instance)
    history = [
        entry
        for entry in instance.execution_history
        if entry.compensating or entry.step not in forgotten
    ]
    error = instance.error
    if error is not None and error.step not in forgotten:
        # As retry() records it: the failure stays on record as a failed attempt.
        history.append(HistoryEntry(step=error.step, event="", timestamp=error.at, error=error))
    if record:
        lost = instance.workflow.graph.sorted(held & forgotten)
        history.append(
            HistoryEntry(
                step=to,
                event=REWOUND,
                timestamp=now,
                context_updates={
                    "forgotten": [s.path() for s in lost],
                    # Asked for compensations (none to run here): the children it cancels
                    # run theirs.
                    **({"compensate": True} if compensate else {}),
                },
            )
        )
    keys = {s.step_key for s in forgotten}
    steps = {k: v for k, v in instance.context.steps.items() if k not in keys}
    rewinds = engine.rewinds_of(instance) + 1 if generation is None else generation
    metadata = {**_without_children(instance, forgotten), REWINDS_KEY: rewinds}
    if not rewinds:
        metadata.pop(REWINDS_KEY)
    return evolve(
        instance,
        status=Status.RUNNING,
        current_step=to,
        context=Context(instance.context.initial, steps),
        active_steps=frozenset((instance.active_steps - forgotten) | {to}),
        waiting_steps={s: w for s, w in instance.waiting_steps.items() if s not in forgotten},
        completed_steps=instance.completed_steps - forgotten,
        execution_history=tuple(history),
        runtime_metadata=metadata,
        error=None,
        attempts={s: n for s, n in instance.attempts.items() if s not in forgotten},
        running={},
    )


def _forgotten(instance: Instance, to: StepClass) -> frozenset[StepClass]:
    return instance.workflow.graph.descendants[to] | {to}


def _held(instance: Instance) -> frozenset[StepClass]:
    """The steps the instance has reached: active, waiting, completed, or with a history entry
    (a failed attempt), the step it failed at, the steps it stood at when cancelled."""
    held = set(instance.active_steps | instance.waiting_steps.keys() | instance.completed_steps)
    held.update(entry.step for entry in instance.execution_history if not entry.compensating)
    if instance.error is not None:
        held.add(instance.error.step)
    if instance.cancellation is not None:
        held.update(instance.cancellation.steps)
    return frozenset(held)


def _resolve(instance: Instance, to: StepClass | str, verb: str) -> StepClass:
    graph = instance.workflow.graph
    if isinstance(to, str):
        for step in graph.order:
            if to in (step.path(), step.__qualname__, step.step_key):
                return step
    elif to in graph.descendants:
        return to
    steps = ", ".join(step.__qualname__ for step in graph.order)
    raise _refuse(
        instance,
        None,
        f"version {instance.workflow_version} of {instance.workflow.__qualname__} has no such "
        f"step (its steps: {steps})",
        verb,
        to,
    )


def _check_status(instance: Instance, step: StepClass) -> None:
    if instance.status is Status.PENDING:
        raise _refuse(instance, step, "it has not started")
    if instance.status is Status.CANCELLED:
        raise _refuse(instance, step, "it was cancelled for good; fork it instead")
    if instance.compensating:
        raise _refuse(
            instance, step, "it is compensating its steps; rewind it once they are undone"
        )
    if instance.compensation is not None:
        raise _refuse(instance, step, "its completed steps were compensated; fork it instead")


def compensates(instance: Instance) -> bool:
    """Whether ``instance`` was just rewound with ``compensate=True``: its compensations are
    running (:func:`rewind`), or its last history entry is a rewind that asked for them."""
    if REWIND_KEY in instance.runtime_metadata:
        return True
    last = instance.execution_history[-1] if instance.execution_history else None
    if last is None or last.event != REWOUND or not isinstance(last.context_updates, Mapping):
        return False
    return last.context_updates.get("compensate") is True


def _forgotten_children(instance: Instance, forgotten: frozenset[StepClass]) -> dict[str, UUID]:
    """The children started by the child steps in ``forgotten``, by their step's key."""
    keys = {s.step_key for s in forgotten if issubclass(s, Child)}
    return {k: v for k, v in children_of(instance).items() if k in keys}


def _without_children(instance: Instance, forgotten: frozenset[StepClass]) -> dict[str, Any]:
    """``instance``'s ``runtime_metadata`` without its links to the children of ``forgotten``."""
    metadata = dict(instance.runtime_metadata)
    lost = _forgotten_children(instance, forgotten)
    if not lost:
        return metadata
    kept = {k: str(v) for k, v in children_of(instance).items() if k not in lost}
    if kept:
        metadata[CHILDREN_KEY] = kept
    else:
        metadata.pop(CHILDREN_KEY, None)
    return metadata


def _refuse(
    instance: Instance,
    step: StepClass | None,
    reason: str,
    verb: str = "rewound",
    given: object = None,
) -> RewindError:
    if step is not None:
        name = step.__qualname__
    elif isinstance(given, type):
        name = getattr(given, "__qualname__", repr(given))
    else:
        name = repr(given)
    return RewindError(
        instance_id=instance.id,
        workflow=instance.workflow.__qualname__,
        step=name,
        reason=reason,
        verb=verb,
    )
