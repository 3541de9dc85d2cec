"""Executing one step, and the rules every runner applies around a transition.

Shared by :class:`~hephaestus_django.runtime.runner.LocalRunner`, which runs a
wave of steps in the caller's process, and
:class:`~hephaestus_django.runtime.queued.QueuedRunner`, which runs each step as
a job on a job engine's worker: whichever runs a step, its outcome is read,
checked and logged the same way, so both runners record the same history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from hephaestus_django.core import engine
from hephaestus_django.core.children import ENDED, StartChild
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import (
    ChildContextError,
    InstanceNotFound,
    RewindError,
    SerializationError,
    StaleInstanceError,
    StateTooLargeError,
    StepOutcomeError,
)
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.outcomes import Event, Outcome, read_outcome
from hephaestus_django.core.pause import is_paused
from hephaestus_django.core.pause import pause as pause_instance
from hephaestus_django.core.pause import unpause as unpause_instance
from hephaestus_django.core.rewind import RewindPlan, items_key
from hephaestus_django.core.rewind import plan as rewind_plan
from hephaestus_django.core.rewind import rewind as rewind_instance
from hephaestus_django.core.steps import Done, Wait, WaitForEvent
from hephaestus_django.core.upgrades import upgrade as upgrade_instance
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import codec, tracing
from hephaestus_django.runtime.asynchronous import awaited
from hephaestus_django.runtime.bounded import bounded
from hephaestus_django.runtime.children import check_start
from hephaestus_django.runtime.contract import ForgetsMapItems, MapItems, Storage
from hephaestus_django.runtime.limits import check_state_size, limits
from hephaestus_django.runtime.logs import about

logger = logging.getLogger("hephaestus_django.runner")

_RESULT_DEPTH = 3
"""How deep a step's result is stored: in the state, its history, an entry."""


_COMPENSATED = Event(engine.COMPENSATED)


def execute_step(
    instance: Instance, activation: Activation, *, in_transaction: bool = False
) -> Executed:
    """Run one step (or its ``compensate``, while the instance is compensating) and read its
    outcome; an exception it raises becomes its result.

    A step with a ``timeout`` (or under a workflow's ``default_timeout``) is bounded by it: an
    attempt that overruns fails with :class:`StepTimeout` and its late result is discarded
    (:mod:`~hephaestus_django.runtime.bounded`); so is its compensation. Pass
    ``in_transaction`` when the calling thread is inside a transaction the step must see: the
    step then runs in this thread, and an overrun is only found when it returns.
    """
    if not tracing.stepping() or _is_plain_end(activation.step):
        return _execute(instance, activation, in_transaction)
    with tracing.step(instance, activation) as span:
        result = _execute(instance, activation, in_transaction)
        span.set_result(result)
    return result


def _execute(instance: Instance, activation: Activation, in_transaction: bool) -> Executed:
    step = activation.step
    compensating = activation.compensating
    timeout = None if _is_plain_builtin(step) else engine.step_timeout(instance.workflow, step)
    try:
        if compensating:
            bounded(
                lambda: awaited(step().compensate(instance, activation.config, instance.context)),
                timeout,
                instance,
                step,
                in_transaction=in_transaction,
            )
            outcome: Outcome = _COMPENSATED
        else:
            returned = bounded(
                lambda: awaited(step().execute(instance, activation.config, instance.context)),
                timeout,
                instance,
                step,
                in_transaction=in_transaction,
            )
            outcome = read_outcome(step, returned)
            if isinstance(outcome, Event):
                _check_storable(step, outcome)
            elif isinstance(outcome, StartChild) and outcome.workflow is not None:
                check_start(instance, step, outcome)
    except Exception as error:
        quiet = (SerializationError, StepOutcomeError, ChildContextError, *step.expected_errors)
        logger.warning(
            "%s %s of instance %s (%s) failed: %s: %s",
            "the compensation of step" if compensating else "step",
            step.__qualname__,
            instance.id,
            instance.workflow.__qualname__,
            type(error).__name__,
            error,
            exc_info=not isinstance(error, quiet),
            extra=about(instance, step=step),
        )
        return Executed(
            step, error=error, compensating=compensating, rewinds=engine.rewinds_of(instance)
        )
    return Executed(
        step, outcome=outcome, compensating=compensating, rewinds=engine.rewinds_of(instance)
    )


def log_retries(results: Sequence[Executed], after: Instance) -> None:
    """Say, for each step that raised and now waits for its next attempt, when that is."""
    for result in results:
        waiting = after.waiting_steps.get(result.step)
        if result.error is not None and waiting is not None and waiting.attempt is not None:
            logger.info(
                "instance %s (%s): %s",
                after.id,
                after.workflow.__qualname__,
                engine.describe_retry_wait(after, result.step, waiting),
                extra=about(after, step=result.step),
            )


def as_too_large(results: Sequence[Executed], error: StateTooLargeError) -> list[Executed]:
    """``results`` turned into their steps' failures with ``error``: a wave whose results, each
    storable alone, together outgrow ``HEPHAESTUS["MAX_STATE_BYTES"]``.

    Its write was refused before anything was written; the steps stay active, so writing
    nothing more would leave them to be run again, and refused again, by every runner that
    takes the instance over. Recording the refusal as their failure puts them under their
    retry policy instead, and so bounds the attempts.
    """
    logger.warning(
        "the results of %s would make the state too large to store: recorded as failures: %s",
        ", ".join(result.step.__qualname__ for result in results),
        error,
    )
    return [
        Executed(result.step, error=error, compensating=result.compensating, rewinds=result.rewinds)
        for result in results
    ]


def reach_ends(instance: Instance, now: datetime) -> Instance:
    """Settle the built-in steps a transition made runnable, if nothing else is: ``Done`` (it
    completes), ``Wait`` and ``WaitForEvent`` (they wait), as their classes define them.

    Their ``execute`` does nothing outside the instance and cannot fail, so settling them before
    the transition is written stores the same history with one write fewer (and, on a job
    engine, one job fewer): a start whose first step waits, or a wave whose steps lead to a
    wait, costs one commit. Only when every runnable step is such a built-in: a wave with real
    steps runs as usual, and the built-ins it reaches are settled in its own write.
    """
    steps = engine.runnable_steps(instance)  # most often a real step: no need to sort
    if (
        not steps
        or instance.compensating
        or is_paused(instance)
        or not all(_is_plain_builtin(step) for step in steps)
    ):
        return instance
    results = [execute_step(instance, item) for item in engine.runnable(instance)]
    return engine.apply(instance, results, now=now)


Transition = Callable[[Instance], Instance]


def resuming(
    event: str,
    data: Any,
    *,
    now: Callable[[], datetime],
    step: StepClass | str | None,
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
) -> Transition:
    """The transition of ``resume``: checked against what the caller expects, then the event
    delivered (at the storage's ``now()``); the same for both runners."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return engine.resume(instance, event, data, now=now(), step=step)

    return transition


def cancelling(
    *,
    now: Callable[[], datetime],
    reason: str | None,
    compensate: bool,
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
) -> Transition:
    """The transition of ``cancel``, checked against what the caller expects."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        # A cancel is final: it lifts a pause, so the compensations asked for run at once.
        return engine.cancel(
            unpause_instance(instance), now=now(), reason=reason, compensate=compensate
        )

    return transition


def pausing(
    *,
    now: Callable[[], datetime],
    reason: str | None,
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
    by_workflow: bool = False,
) -> Transition:
    """The transition of ``pause`` (:func:`~hephaestus_django.core.pause.pause`); of
    ``pause_all`` with ``by_workflow``."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return pause_instance(instance, now=now(), reason=reason, by_workflow=by_workflow)

    return transition


def unpausing(
    *, workflow: type[WorkflowDefinition] | None, expected_revision: int | None
) -> Transition:
    """The transition of ``unpause`` (:func:`~hephaestus_django.core.pause.unpause`)."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return unpause_instance(instance)

    return transition


def upgrading(
    *,
    to: type[WorkflowDefinition],
    now: Callable[[], datetime],
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
) -> Transition:
    """The transition of ``upgrade``: checked against what the caller expects, then the
    instance moved to version ``to`` (:func:`~hephaestus_django.core.upgrades.upgrade`)."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return upgrade_instance(instance, to=to, now=now())

    return transition


def rewinding(
    to: StepClass | str,
    *,
    now: Callable[[], datetime],
    compensate: bool,
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
    storage: object = None,
) -> Transition:
    """The transition of ``rewind``: checked against what the caller expects, then the
    instance rewound to ``to`` (:func:`~hephaestus_django.core.rewind.rewind`), and the items
    of the map steps it forgets deleted from ``storage`` inside the same locked write (an
    update's ``change`` runs in its transaction: both commit, or neither)."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        rewound = rewind_instance(instance, to, now=now(), compensate=compensate)
        maps = rewind_plan(instance, to).maps
        if maps and isinstance(storage, MapItems):
            if not isinstance(storage, ForgetsMapItems):
                raise RewindError(
                    instance_id=instance.id,
                    workflow=instance.workflow.__qualname__,
                    step=maps[0].__qualname__,
                    reason=f"{storage!r} cannot forget the items of a map step "
                    f"(ForgetsMapItems); fork the instance instead",
                )
            storage.forget_map_items(instance.id, [step.path() for step in maps])
        return rewound

    return transition


def dry_run_plan(found: RewindPlan, storage: Storage, instance: Instance) -> RewindPlan:
    """A dry run's plan with what the storage holds outside the instance: how many items of
    each forgotten map step, and which of the forgotten children have not ended (the rewind
    cancels them)."""
    counts: dict[StepClass, int] = {}
    if found.maps and isinstance(storage, MapItems):
        counts = {
            s: len(storage.map_progress(found.instance_id, items_key(instance, s)))
            for s in found.maps
        }
    running = []
    for child_id in found.children:
        try:
            child = storage.get(child_id)
        except InstanceNotFound:
            continue
        if child.status not in ENDED and child.cancellation is None:
            running.append(child_id)
    return replace(found, map_items=counts, cancelled_children=tuple(running))


def compensating(
    *,
    now: Callable[[], datetime],
    workflow: type[WorkflowDefinition] | None,
    expected_revision: int | None,
) -> Transition:
    """The transition of ``compensate``: a failed instance's completed steps undone."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return engine.compensate(instance, now=now())

    return transition


def retrying(
    *, workflow: type[WorkflowDefinition] | None, expected_revision: int | None
) -> Transition:
    """The transition of ``retry``, checked against what the caller expects."""

    def transition(instance: Instance) -> Instance:
        expect(instance, workflow, expected_revision)
        return engine.retry(instance)

    return transition


def expect(
    instance: Instance, workflow: type[WorkflowDefinition] | None, revision: int | None
) -> None:
    """Refuse to act on an instance of another workflow, or one that changed since it was seen."""
    if revision is not None and instance.revision != revision:
        raise StaleInstanceError(instance.id, revision)
    if workflow is not None and not workflow.owns(instance.workflow):
        raise InstanceNotFound(
            instance.id,
            f"it is an instance of {instance.workflow.__qualname__}, not {workflow.__qualname__}",
        )


def _is_plain_end(step: StepClass) -> bool:
    """``Done`` or a subclass of it that does not override ``execute``."""
    return step.terminal and step.execute is Done.execute


_BUILTIN_EXECUTES = (Done.execute, Wait.execute, WaitForEvent.execute)


def _is_plain_builtin(step: StepClass) -> bool:
    """``Done``, ``Wait`` or ``WaitForEvent``, or a subclass that keeps their ``execute``
    (naming its events, configuring a timeout): nothing it does can fail or reach outside."""
    return step.execute in _BUILTIN_EXECUTES


def _check_storable(step: StepClass, outcome: Event) -> None:
    """Refuse a result that could not be stored, as that step's failure, not a failed write.

    A result longer than ``HEPHAESTUS["MAX_STATE_BYTES"]`` by itself is refused here too.
    Both are stored three containers deep (in the state, its history, an entry; the result
    also in ``context.steps``), which the nesting limit counts as the write will.
    """
    if outcome.updates is not None:
        path = codec.format_path("context.steps", step.step_key)
        encoded = codec.encode(outcome.updates, path=path, depth=_RESULT_DEPTH)
        if limits.max_state_bytes is not None:
            check_state_size(codec.dumps_encoded(encoded), None, path=path)
    if outcome.metadata is not None:
        codec.encode(outcome.metadata, path="runtime_metadata", depth=_RESULT_DEPTH)
