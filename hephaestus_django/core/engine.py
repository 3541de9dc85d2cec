"""The engine: pure state transitions of an instance.

Every function takes an :class:`Instance` and returns a new one; nothing here
runs a step, reads a clock or touches storage (the runner does, and passes
``now`` in). That keeps every rule testable as a table of cases.

Joins. A step with several predecessors runs once, after every predecessor
that can still run in this instance has finished. A predecessor can still run
when it is active, or reachable from an active step or from a step that is
triggered but still waiting for its own join. After exclusive branches
(if/else) the branch not taken is unreachable, so the merge runs as soon as
the taken branch reaches it; after a fan-out it waits for every branch.
Because the graph is acyclic, a step that cannot run now never can again, so
no step runs twice and none is skipped.

Retries. A step that raises, under a retry policy (:class:`Retry`: the step's
``retry``, else the workflow's ``default_retry``) that allows another attempt,
does not fail the instance: the attempt goes into the history with its error,
the step's count in ``Instance.attempts`` goes up, and the step waits on a
*retry timer* (a :class:`Waiting` with ``attempt`` set) that
:func:`fire_due_timers` turns back into a runnable step when due. The backoff
is thus a timer like any other, stored with the instance. The engine draws
no random numbers: the runner passes ``random`` to :func:`apply`.

Cancellation and compensation. :func:`cancel` ends an instance ``cancelled``:
its waiting steps and timers are dropped, and the results of steps still
running are refused when they come back (they are not runnable any more).
With ``compensate=True``, and when a ``compensate_on_failure`` workflow fails,
the instance first undoes its completed steps: it stays ``running`` with a
:class:`Compensation` whose ``pending`` steps (those that define
``compensate``, the last completed first) become its active step one at a
time. Runners execute an active step's ``compensate`` instead of its
``execute`` while the instance is compensating (:attr:`Activation.compensating`),
each is recorded in the history, retried under the step's policy like an
attempt, and when none is left the instance ends cancelled, or failed with
the error that started them. A compensation that fails for good fails the
instance with its error; ``retry`` then resumes the compensations, never the
steps.

Why one module of some 900 lines: every transition builds its result through one private
working copy (``_Draft``), whose methods keep the invariants above (joins, retries,
compensation) together; split, each half would reach into the other's privates. What is not a
transition lives elsewhere: what a transition did (:mod:`~hephaestus_django.core.effects`),
upgrades (:mod:`~hephaestus_django.core.upgrades`), a failure's traceback (``Failure``'s
module, :mod:`~hephaestus_django.core.instance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hephaestus_django.core.errors import (
    EngineError,
    InstanceNotCancellableError,
    InstanceNotCompensableError,
    InstanceNotWaitingError,
    InvalidInstanceError,
    StepOutcomeError,
    UnexpectedEventError,
)
from hephaestus_django.core.graph import StepClass, Transition, WorkflowGraph
from hephaestus_django.core.instance import (
    Cancellation,
    Compensation,
    Context,
    Failure,
    HistoryEntry,
    Instance,
    Waiting,
    coerce_instance_id,
    evolve,
    format_traceback,
)
from hephaestus_django.core.keys import checked_key
from hephaestus_django.core.maps import is_map
from hephaestus_django.core.naming import with_article
from hephaestus_django.core.outcomes import Async, Event, Outcome
from hephaestus_django.core.pause import is_paused
from hephaestus_django.core.policies import Retry, project_defaults
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import StepRef
from hephaestus_django.core.workflow import WorkflowDefinition


@dataclass(frozen=True, slots=True)
class Activation:
    """A step that is ready to execute, with the config it runs with.

    With ``compensating``, what is to run is the step's ``compensate``, not its ``execute``.
    """

    step: StepClass
    config: Mapping[str, Any]
    compensating: bool = False


@dataclass(frozen=True, slots=True)
class Executed:
    """What executing one step gave: an outcome, or the exception it raised.

    ``compensating`` says it is the result of the step's ``compensate``: the engine refuses
    to record it as the step's own result, and the other way round.
    """

    step: StepClass
    outcome: Outcome | None = None
    error: BaseException | None = None
    compensating: bool = False
    rewinds: int | None = None
    """The generation (:func:`rewinds_of`) of the instance the step ran on; a result of an
    earlier generation is refused (a rewind forgot what it was computed from). None: not
    checked."""


MAX_REASON_LENGTH = 1_000
"""The longest reason ``cancel`` keeps, in characters: it is stored with the instance, and
rewritten with every write of it."""

COMPENSATED = "compensated"
"""The event of a history entry recording a step's compensation."""

REWINDS_KEY = "hephaestus.rewinds"
"""Where ``runtime_metadata`` counts an instance's rewinds (see
:mod:`~hephaestus_django.core.rewind`): its generation."""


def rewinds_of(instance: Instance) -> int:
    """How many times ``instance`` was rewound: the generation its steps' results belong to."""
    found = instance.runtime_metadata.get(REWINDS_KEY, 0)
    return found if isinstance(found, int) and not isinstance(found, bool) else 0


def new_instance(
    workflow: type[WorkflowDefinition],
    initial: Mapping[str, Any] | None = None,
    *,
    id: UUID | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> Instance:
    """A pending instance of ``workflow`` started with ``initial`` data, named ``key``."""
    if not (isinstance(workflow, type) and issubclass(workflow, WorkflowDefinition)):
        raise InvalidInstanceError(f"{workflow!r} is not a workflow class")
    if workflow.is_abstract():
        raise InvalidInstanceError(f"{workflow.__qualname__} is abstract and cannot be started")
    workflow = workflow.starting()  # a versioned workflow starts on its current version
    if initial is None:
        initial = {}
    if not isinstance(initial, Mapping):
        raise InvalidInstanceError(
            f"the context {with_article(workflow.__qualname__)} starts with must be a dict, not "
            f"{type(initial).__name__}"
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInstanceError(f"runtime metadata must be a dict, not {metadata!r}")
    graph = workflow.graph
    fields: dict[str, Any] = {} if id is None else {"id": coerce_instance_id(id)}
    if key is not None:
        fields["business_key"] = checked_key(key, workflow.__qualname__)
    return Instance(
        workflow=workflow,
        workflow_version=workflow.version,
        context=Context(initial=dict(initial), steps={}),
        step_configs={step: dict(config) for step, config in graph.configs.items() if config},
        runtime_metadata=dict(metadata or {}),
        **fields,
    )


def start(instance: Instance) -> Instance:
    """pending -> running, with the start step active."""
    if instance.status is not Status.PENDING:
        raise EngineError(
            f"instance {instance.id} of {_name(instance)} is {instance.status}; only a pending "
            f"instance can be started",
            instance_id=instance.id,
        )
    start_step = instance.workflow.graph.start
    return evolve(
        instance,
        status=Status.RUNNING,
        active_steps=frozenset({start_step}),
        current_step=start_step,
    )


def runnable(instance: Instance) -> list[Activation]:
    """The steps to execute next: active, not waiting, in topological order; none while the
    instance is paused (:mod:`~hephaestus_django.core.pause`)."""
    if instance.status is not Status.RUNNING or is_paused(instance):
        return []
    ready = instance.workflow.graph.sorted(runnable_steps(instance))
    compensating = instance.compensating
    return [Activation(step, config_of(instance, step), compensating) for step in ready]


def activation(instance: Instance, step: StepClass) -> Activation:
    """What running ``step`` of ``instance`` means now: its ``execute``, or its ``compensate``
    while the instance is compensating (the caller checked it is runnable)."""
    return Activation(step, config_of(instance, step), instance.compensating)


def accepts(instance: Instance, result: Executed) -> bool:
    """True when ``result`` can be recorded on ``instance``: its step is runnable, and it is
    the result of what the step runs now (its work, or its compensation).

    A runner asks before recording a result it computed on an older read: the step may have
    been completed by a duplicate job meanwhile, or the instance cancelled, or rewound (a
    result computed before a rewind is never recorded: its ``rewinds`` is of an earlier
    generation).
    """
    return (
        result.step in runnable_steps(instance)
        and result.compensating == instance.compensating
        and (result.rewinds is None or result.rewinds == rewinds_of(instance))
    )


def runnable_steps(instance: Instance) -> frozenset[StepClass]:
    """The steps :func:`runnable` returns, unordered and without their configs.

    For callers that only ask whether a step is runnable, or whether any is
    (the runner does several times per wave): no sorting, no activations.
    """
    if instance.status is not Status.RUNNING:
        return frozenset()
    if not instance.waiting_steps:
        return instance.active_steps
    return instance.active_steps.difference(instance.waiting_steps)


def startable_steps(instance: Instance) -> frozenset[StepClass]:
    """The runnable steps a runner may start now: none while the instance is paused.

    :func:`runnable_steps` stays what a result is checked against (a step that was running
    when the instance was paused records its result), this is what starts steps.
    """
    if is_paused(instance):
        return frozenset()
    return runnable_steps(instance)


def next_timer(instance: Instance) -> datetime | None:
    """The earliest timer a worker must wake the instance for: none while it is paused (its
    timers wait, and are due again once it is unpaused)."""
    if is_paused(instance):
        return None
    return next_due_time(instance)


def config_of(instance: Instance, step: StepClass) -> Mapping[str, Any]:
    """The config the step runs with in this instance (as stored when it started)."""
    return instance.step_configs.get(step, {})


def _full_backoff() -> float:
    return 1.0


def apply(
    instance: Instance,
    results: Sequence[Executed],
    *,
    now: datetime,
    random: Callable[[], float] = _full_backoff,
) -> Instance:
    """Record the results of one wave of executed steps.

    Completions and waits are recorded first, failures last, so a sibling that
    finished in the same wave is not lost; after a failure nothing new is
    activated. A failure its retry policy tries again is a retry timer instead
    (see the module's docstring); ``random`` gives the jitter of its backoff, a
    float in [0, 1) (the runners pass ``random.random``; by default the full
    backoff).
    """
    draft = _Draft(instance, random)
    graph = instance.workflow.graph
    for result in results:
        draft.expect_runnable(result.step)
        if result.compensating != instance.compensating:
            raise EngineError(
                f"the result of step {result.step.__qualname__} is of its "
                f"{'compensation' if result.compensating else 'work'}, but instance "
                f"{instance.id} is {'' if instance.compensating else 'not '}compensating",
                instance_id=instance.id,
            )
    ordered = sorted(
        results, key=lambda result: (result.error is not None, graph.rank(result.step))
    )
    for result in ordered:
        if result.compensating and result.error is None:
            draft.compensated(result.step, now)
        elif result.error is not None:
            draft.fail_or_retry(result.step, result.error, now)
        elif isinstance(result.outcome, Async):
            draft.wait(result.step, result.outcome, now)
        elif isinstance(result.outcome, Event):
            # A map's result is the list of its items' results, not a mapping.
            draft.complete_or_fail(result.step, result.outcome, now, any_result=is_map(result.step))
        else:
            raise EngineError(f"the result for step {result.step.__qualname__} has no outcome")
    after = draft.settle()
    if after.compensation is not None and after.compensation.ends is Status.RUNNING:
        # The compensations of a rewind (compensate=True): once the last ran, the rewind.
        from hephaestus_django.core.rewind import finish  # rewind builds on this module

        return finish(after, now)
    return after


def resume(
    instance: Instance,
    event: str,
    data: Any = None,
    *,
    now: datetime,
    step: StepClass | str | None = None,
) -> Instance:
    """Complete a waiting step with ``event``; ``data`` becomes its result.

    Refused, with nothing changed, when the instance is not waiting or no
    waiting step declares ``event``. When several waiting steps declare it,
    name the one meant with ``step``. A step waiting to be retried waits for
    its retry timer, not for an event: resuming it is refused too.
    """
    if not instance.waiting_steps or instance.status not in (Status.WAITING, Status.RUNNING):
        raise InstanceNotWaitingError(
            f"instance {instance.id} of {_name(instance)} is {instance.status} and waits for "
            f"nothing; only a waiting instance can be resumed",
            instance_id=instance.id,
        )
    if step is None and all(w.attempt is not None for w in instance.waiting_steps.values()):
        raise InstanceNotWaitingError(
            f"instance {instance.id} of {_name(instance)} waits for no event: "
            f"{_retry_waits(instance)}; a retry timer cannot be resumed",
            instance_id=instance.id,
        )
    target = _waiting_step_for(instance, event, step)
    draft = _Draft(instance)
    draft.complete_or_fail(target, Event(event, updates=data), now, any_result=True)
    return draft.settle()


def fail_waiting(
    instance: Instance, step: StepClass, error: BaseException, *, now: datetime
) -> Instance:
    """Fail ``step``, which waits (a map over child workflows whose item failed for good),
    with ``error``, as if it had raised it: the instance fails (or compensates), no retry."""
    draft = _Draft(instance)
    draft.waiting.pop(step, None)
    draft.fail(step, error, now)
    return draft.settle()


def fire_due_timers(instance: Instance, *, now: datetime) -> Instance:
    """Complete every waiting step whose timer is due, with its timer event.

    A due retry timer does not complete its step: the step becomes runnable
    again, for its next attempt. A paused instance's timers wait: they fire once it is
    unpaused.
    """
    due = [
        (step, waiting)
        for step, waiting in instance.waiting_steps.items()
        if waiting.resume_at is not None and waiting.resume_at <= now
    ]
    if not due or instance.status not in (Status.WAITING, Status.RUNNING) or is_paused(instance):
        return instance
    draft = _Draft(instance)
    for step, waiting in sorted(due, key=lambda item: instance.workflow.graph.rank(item[0])):
        if waiting.attempt is not None:
            draft.waiting.pop(step)
        else:
            draft.complete_or_fail(step, Event(str(waiting.timer_event)), now)
    return draft.settle()


def retry(instance: Instance) -> Instance:
    """Run the failed step again: failed -> running, the error cleared.

    The step's count of failed attempts starts again, so its retry policy
    allows it every attempt anew; the failure goes into the history as a failed
    attempt, so that every attempt's error stays on record. An instance whose
    compensation failed runs that compensation again (and then the remaining
    ones); one whose steps were all compensated cannot be retried.
    """
    if instance.status is not Status.FAILED or instance.error is None:
        raise EngineError(
            f"instance {instance.id} of {_name(instance)} is {instance.status}; only a failed "
            f"instance can be retried",
            instance_id=instance.id,
        )
    if instance.compensation is not None and instance.compensation.done:
        raise EngineError(
            f"instance {instance.id} of {_name(instance)} failed and its completed steps were "
            f"compensated; it cannot be retried: start a new instance",
            instance_id=instance.id,
        )
    draft = _Draft(instance)
    error = instance.error
    draft.attempts.pop(error.step, None)
    draft.history.append(
        HistoryEntry(
            step=error.step,
            event="",
            timestamp=error.at,
            error=error,
            compensating=instance.compensating,
        )
    )
    draft.error = None
    return draft.settle()


def cancel(
    instance: Instance, *, now: datetime, reason: str | None = None, compensate: bool = False
) -> Instance:
    """Stop an instance: pending, running or waiting -> cancelled.

    Its waiting steps and timers are dropped and its active steps will not be run (a result
    that comes back for one is refused by :func:`accepts`). With ``compensate``, the
    completed steps that define ``compensate`` are undone first, the last completed first:
    the instance stays running, compensating, and ends cancelled after the last one (see the
    module's docstring). Refused with :class:`InstanceNotCancellableError`, nothing changed,
    for an instance that has ended or is already compensating.
    """
    if reason is not None and not isinstance(reason, str):
        raise InvalidInstanceError(
            f"the reason for cancelling instance {instance.id} must be a string, not {reason!r}"
        )
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise InvalidInstanceError(
            f"the reason for cancelling instance {instance.id} is {len(reason)} characters "
            f"long; the most is {MAX_REASON_LENGTH}"
        )
    if instance.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED):
        raise InstanceNotCancellableError(
            f"instance {instance.id} of {_name(instance)} is {instance.status}; only a pending, "
            f"running or waiting instance can be cancelled (nothing was changed)",
            instance_id=instance.id,
        )
    if instance.compensating and instance.compensation is not None:
        why = "being cancelled" if instance.compensation.ends is Status.CANCELLED else "failing"
        raise InstanceNotCancellableError(
            f"instance {instance.id} of {_name(instance)} is already compensating its steps "
            f"after {why}; it ends {instance.compensation.ends} once they are compensated "
            f"(nothing was changed)",
            instance_id=instance.id,
        )
    graph = instance.workflow.graph
    at = graph.sorted(instance.active_steps | instance.waiting_steps.keys())
    record = Cancellation(now, reason, tuple(at), bool(compensate))
    pending = compensations(instance) if compensate else ()
    if not pending:
        return evolve(
            instance,
            status=Status.CANCELLED,
            active_steps=frozenset(),
            waiting_steps={},
            attempts={},
            running={},
            cancellation=record,
        )
    return evolve(
        instance,
        status=Status.RUNNING,
        current_step=pending[0],
        active_steps=frozenset({pending[0]}),
        waiting_steps={},
        attempts={},
        running={},
        cancellation=record,
        compensation=Compensation(Status.CANCELLED, now, pending),
    )


def compensate(instance: Instance, *, now: datetime) -> Instance:
    """Undo the completed steps of a failed instance: failed -> running, compensating.

    The ``compensate`` of every completed step that defines one runs, the last completed
    first, as when a ``compensate_on_failure`` workflow fails; the instance then ends failed
    again, with its failure, and the compensations recorded. Refused with
    :class:`InstanceNotCompensableError`, nothing changed, for an instance that has not
    failed, whose steps were compensated already, or that has no completed step to undo.
    """
    if instance.status is not Status.FAILED or instance.error is None:
        raise InstanceNotCompensableError(
            f"instance {instance.id} of {_name(instance)} is {instance.status}; only a failed "
            f"instance can be compensated (cancel a running or waiting one with "
            f"compensate=True) (nothing was changed)",
            instance_id=instance.id,
        )
    if instance.compensation is not None:
        raise InstanceNotCompensableError(
            f"instance {instance.id} of {_name(instance)} failed while compensating its steps, "
            f"or after they were compensated; retry() runs the compensations that failed "
            f"(nothing was changed)",
            instance_id=instance.id,
        )
    pending = compensations(instance)
    if not pending:
        raise InstanceNotCompensableError(
            f"instance {instance.id} of {_name(instance)} has no completed step that defines "
            f"compensate(); there is nothing to undo (nothing was changed)",
            instance_id=instance.id,
        )
    failure = instance.error
    return evolve(
        instance,
        status=Status.RUNNING,
        current_step=pending[0],
        active_steps=frozenset({pending[0]}),
        waiting_steps={},
        attempts={},
        running={},
        error=None,
        execution_history=(
            *instance.execution_history,
            HistoryEntry(
                step=failure.step, event="", timestamp=now, error=failure, compensating=True
            ),
        ),
        compensation=Compensation(Status.FAILED, now, pending, failure),
    )


def compensations(instance: Instance) -> tuple[StepClass, ...]:
    """The steps to compensate, in the order their ``compensate`` runs: every completed step
    that defines one, the last completed first."""
    found: list[StepClass] = []
    for entry in reversed(instance.execution_history):
        step = entry.step
        if (
            entry.error is None
            and not entry.compensating
            and step.compensable()
            and step in instance.completed_steps
            and step not in found
        ):
            found.append(step)
    return tuple(found)


def retry_policy(workflow: type[WorkflowDefinition], step: StepClass) -> Retry | None:
    """The retry policy ``step`` runs under in ``workflow``: its own, else the workflow's
    ``default_retry``, else the project's (``HEPHAESTUS["DEFAULT_RETRY"]``); None when none
    declares one (a single attempt)."""
    policy = step.retry
    if policy is None:
        policy = workflow.default_retry
    return policy if policy is not None else project_defaults.retry


def step_timeout(workflow: type[WorkflowDefinition], step: StepClass) -> timedelta | None:
    """How long one attempt of ``step`` may run in ``workflow``: its own ``timeout``, else the
    workflow's ``default_timeout``; None when neither declares one (no bound)."""
    bound = step.timeout
    return bound if bound is not None else workflow.default_timeout


def waits_for_an_event(instance: Instance) -> bool:
    """True when some waiting step can be resumed: it waits for an event, not its next attempt."""
    return any(waiting.attempt is None for waiting in instance.waiting_steps.values())


def describe_claim(instance: Instance, now: datetime) -> str:
    """What a worker does with an instance it claimed, for its log line: firing due timers
    (the common case, a ``Wait`` or a retry wait ending) reads differently from taking over
    the work of a runner that stopped renewing its lease (a crash recovered)."""
    due = [
        f"{step.__qualname__} ({'retry wait' if waiting.attempt is not None else 'timer'})"
        for step, waiting in instance.waiting_steps.items()
        if waiting.resume_at is not None and waiting.resume_at <= now
    ]
    which = f"instance {instance.id} ({_name(instance)})"
    fired = f"fired the due timers of {', '.join(due)}" if due else ""
    if instance.running or runnable_steps(instance):
        owner = f" from {instance.lease_owner}" if instance.lease_owner else ""
        taken = f"took over {which}{owner}, whose lease expired with its work unfinished"
        return f"{taken}; {fired}" if fired else taken
    if fired:
        return f"{fired} in {which}"
    return f"picked up {which}, which had runnable steps and no runner"


def next_due_time(instance: Instance) -> datetime | None:
    """The earliest timer among the waiting steps, if any."""
    times = [w.resume_at for w in instance.waiting_steps.values() if w.resume_at is not None]
    return min(times) if times else None


def _name(instance: Instance) -> str:
    return instance.workflow.__qualname__


def describe_retry_wait(instance: Instance, step: StepClass, waiting: Waiting) -> str:
    """``"Charge waits to retry: attempt 2 of 5 at 2025-01-01 12:00:03+00:00"``."""
    policy = retry_policy(instance.workflow, step)
    of = f" of {policy.max_attempts}" if policy is not None else ""
    return (
        f"{step.__qualname__} waits to retry: attempt {waiting.attempt}{of} at {waiting.resume_at}"
    )


def _names_step(name: StepClass | str, step: StepClass) -> bool:
    return name is step or name in (step.path(), step.__qualname__, step.step_key)


def _retry_waits(instance: Instance) -> str:
    return "; ".join(
        describe_retry_wait(instance, step, waiting)
        for step, waiting in sorted(
            instance.waiting_steps.items(), key=lambda item: instance.workflow.graph.rank(item[0])
        )
        if waiting.attempt is not None
    )


def _waiting_step_for(instance: Instance, event: str, step: StepClass | str | None) -> StepClass:
    waiting = instance.workflow.graph.sorted(
        s for s, why in instance.waiting_steps.items() if why.attempt is None
    )
    if step is not None:
        chosen = [s for s in waiting if _names_step(step, s)]
        retrying = [
            (s, why)
            for s, why in instance.waiting_steps.items()
            if why.attempt is not None and _names_step(step, s)
        ]
        if not chosen and retrying:
            target, why = retrying[0]
            raise UnexpectedEventError(
                f"instance {instance.id} of {_name(instance)} cannot be resumed at step "
                f"{target.__qualname__}: {describe_retry_wait(instance, target, why)}; "
                f"a retry timer cannot be resumed",
                instance_id=instance.id,
            )
        if not chosen:
            raise UnexpectedEventError(
                f"instance {instance.id} of {_name(instance)} is not waiting on step {step!r}; "
                f"it waits on {', '.join(s.__qualname__ for s in waiting)}",
                instance_id=instance.id,
            )
        waiting = chosen
    candidates = [s for s in waiting if event in s.events]
    if len(candidates) == 1:
        return candidates[0]
    expected = "; ".join(f"{s.__qualname__}: {', '.join(s.events)}" for s in waiting)
    if not candidates:
        raise UnexpectedEventError(
            f"instance {instance.id} of {_name(instance)} cannot be resumed with {event!r}: "
            f"no waiting step declares it (waiting steps and their events: {expected})",
            instance_id=instance.id,
        )
    raise UnexpectedEventError(
        f"instance {instance.id} of {_name(instance)}: several waiting steps declare {event!r} "
        f"({', '.join(s.__qualname__ for s in candidates)}); pass step= to say which",
        instance_id=instance.id,
    )


class _Draft:
    """The mutable working copy one transition builds before it is frozen again."""

    def __init__(self, instance: Instance, random: Callable[[], float] = _full_backoff) -> None:
        self.instance = instance
        self.random = random
        self.attempts = dict(instance.attempts)
        self.graph: WorkflowGraph = instance.workflow.graph
        self.active = set(instance.active_steps)
        self.waiting = dict(instance.waiting_steps)
        self.completed = set(instance.completed_steps)
        self.history = list(instance.execution_history)
        self.steps: Mapping[str, Any] = instance.context.steps
        self._own_steps: dict[str, Any] | None = None  # self.steps, once copied
        self.metadata = instance.runtime_metadata
        self.error = instance.error
        self.current = instance.current_step
        self.compensation = instance.compensation
        self.undoing = False
        """True once a failure in this transition started the compensations: the other
        results of its wave are then discarded, like those after a failure."""

    def expect_runnable(self, step: StepClass) -> None:
        if self.instance.status is not Status.RUNNING or step not in self.active:
            raise EngineError(
                f"step {step.__qualname__} is not active in instance {self.instance.id} "
                f"({self.instance.status}); it cannot report a result",
                instance_id=self.instance.id,
            )
        if step in self.waiting:
            raise EngineError(
                f"step {step.__qualname__} of instance {self.instance.id} is waiting (for an "
                f"event, a timer or its next attempt); it cannot report a result",
                instance_id=self.instance.id,
            )

    def fail_or_retry(self, step: StepClass, error: BaseException, now: datetime) -> None:
        """A step raised: wait for its next attempt when its policy allows one, else fail."""
        policy = retry_policy(self.instance.workflow, step)
        if policy is None:
            self.fail(step, error, now)
            return
        if self.error is not None or self.undoing:
            return  # a sibling failed first: this result is discarded, as without a policy
        failed = self.attempts.get(step, 0) + 1
        self.attempts[step] = failed
        if isinstance(error, step.expected_errors) or not policy.allows(failed, error):
            self.fail(step, error, now)
        else:
            self.history.append(
                HistoryEntry(
                    step=step,
                    event="",
                    timestamp=now,
                    error=_failure(step, error, now),
                    compensating=self.compensation is not None,
                )
            )
            delay = policy.delay(failed, self.random())
            self.waiting[step] = Waiting(now, now + delay, None, attempt=failed + 1)
            self.current = step

    def fail(self, step: StepClass, error: BaseException, now: datetime) -> None:
        if self.error is not None or self.undoing:
            return  # the first failure of a wave is the one recorded
        self.error = _failure(step, error, now)
        self.current = step
        if self.instance.workflow.compensate_on_failure and self.compensation is None:
            self._compensate_failure(now)

    def _compensate_failure(self, now: datetime) -> None:
        """The failure just recorded starts the compensations, if a completed step has one:
        it goes into the history, and comes back as the instance's error once they ran."""
        pending = compensations(
            evolve(
                self.instance,
                execution_history=tuple(self.history),
                completed_steps=frozenset(self.completed),
            )
        )
        if not pending or self.error is None:
            return
        failure = self.error
        self.history.append(
            HistoryEntry(
                step=failure.step, event="", timestamp=now, error=failure, compensating=True
            )
        )
        self.compensation = Compensation(Status.FAILED, now, pending, failure)
        self.undoing = True
        self.error = None
        self.active = {pending[0]}
        self.waiting = {}
        self.attempts = {}
        self.current = pending[0]

    def compensated(self, step: StepClass, now: datetime) -> None:
        """``step``'s compensation ran: record it, and make the next one active."""
        compensation = self.compensation
        if compensation is None or not compensation.pending or compensation.pending[0] != step:
            raise EngineError(
                f"step {step.__qualname__} is not the step instance {self.instance.id} "
                f"compensates now",
                instance_id=self.instance.id,
            )
        self.history.append(
            HistoryEntry(step=step, event=COMPENSATED, timestamp=now, compensating=True)
        )
        self.active.discard(step)
        self.attempts.pop(step, None)
        self.current = step
        rest = compensation.pending[1:]
        self.compensation = Compensation(
            compensation.ends, compensation.since, rest, compensation.failure
        )
        if rest:
            self.active.add(rest[0])
        elif compensation.ends is Status.FAILED and compensation.failure is not None:
            # The instance ends failed where it failed, not at the last step it undid.
            self.error = compensation.failure
            self.current = compensation.failure.step
        elif self.instance.cancellation is not None and self.instance.cancellation.steps:
            # Likewise a cancelled instance ends where it stood when it was cancelled.
            self.current = self.instance.cancellation.steps[0]

    def wait(self, step: StepClass, outcome: Async, now: datetime) -> None:
        self.waiting[step] = Waiting(now, outcome.due_time(now), outcome.timer_event)
        self.current = step

    def complete_or_fail(
        self, step: StepClass, event: Event, now: datetime, *, any_result: bool = False
    ) -> None:
        """Complete ``step``; a route that cannot choose fails the step instead."""
        try:
            self.complete(step, event, now, any_result=any_result)
        except StepOutcomeError as error:
            self.fail(step, error, now)

    def complete(self, step: StepClass, event: Event, now: datetime, *, any_result: bool) -> None:
        updates = event.updates
        if updates is not None and not any_result:
            updates = dict(updates)
        transition = self.graph.transitions.get((step, event.name))
        next_steps = self._choose(transition, step, updates)
        if updates is not None:
            self._record_result(step, updates)
        if event.metadata:
            self.metadata = {**self.metadata, **event.metadata}
        self.active.discard(step)
        self.waiting.pop(step, None)
        self.attempts.pop(step, None)
        self.completed.add(step)
        self.current = step
        self.history.append(
            HistoryEntry(
                step=step,
                event=event.name,
                timestamp=now,
                context_updates=updates,
                metadata_updates=dict(event.metadata) if event.metadata else None,
                next_steps=next_steps,
            )
        )

    def _record_result(self, step: StepClass, updates: Any) -> None:
        """Store ``step``'s result, copying the instance's results on the first one only.

        The instance's mapping is shared with it and must not change; the copy
        belongs to this draft, so a wave of several steps copies it once.
        """
        if self._own_steps is None:
            self._own_steps = dict(self.steps)
            self.steps = self._own_steps
        self._own_steps[step.step_key] = updates

    def _choose(
        self, transition: Transition | None, step: StepClass, updates: Any
    ) -> tuple[StepClass, ...]:
        """The steps ``transition`` leads to; a route sees the context with ``updates`` in it."""
        if transition is None:
            return ()
        if transition.route is None:
            return transition.targets
        # a fresh mapping: the route may keep its context, and the draft's own changes later
        steps = dict(self.steps)
        if updates is not None:
            steps[step.step_key] = updates
        try:
            chosen = transition.route.choose(Context(self.instance.context.initial, steps))
        except Exception as error:
            raise StepOutcomeError(
                f"the route after {transition.source.__qualname__} on {transition.event!r} "
                f"raised {type(error).__name__}: {error}"
            ) from error
        if isinstance(chosen, StepRef):
            chosen = chosen.step
        if chosen not in transition.targets:
            raise StepOutcomeError(
                f"the route after {transition.source.__qualname__} on {transition.event!r} "
                f"chose {chosen!r}, which is not one of its targets "
                f"({', '.join(t.__qualname__ for t in transition.targets)})"
            )
        return (chosen,)

    def triggered(self) -> set[StepClass]:
        """Steps some completed step's transition chose, not yet active or completed."""
        chosen = {step for entry in self.history for step in entry.next_steps}
        return chosen - self.active - self.completed

    def activate_ready(self) -> None:
        """Activate every triggered step none of whose predecessors can still run.

        One pass is enough: activating a triggered step moves it from pending
        to active, so the steps that can still run (active or pending, and
        what they reach) stay the same, and a step not ready before it is not
        ready after.
        """
        pending = self.triggered()
        if not pending:
            return
        sources = self.active | pending
        descendants = self.graph.descendants
        reachable = set().union(*(descendants[s] for s in sources))
        predecessors = self.graph.predecessors
        self.active.update(
            step
            for step in pending
            if not any(pred in sources or pred in reachable for pred in predecessors[step])
        )

    def settle(self) -> Instance:
        if self.error is None and self.compensation is None:
            self.activate_ready()
        elif self.compensation is not None and self.compensation.pending and self.error is None:
            self.active = {self.compensation.pending[0]}  # a retry of a failed compensation
        running = self.active.difference(self.waiting)
        status = self._status(running)
        if status is Status.COMPLETED:
            self.current = self._last_completed()
        elif status not in (Status.FAILED, Status.CANCELLED):
            self.current = self._current_active(running)
        return evolve(
            self.instance,
            status=status,
            current_step=self.current,
            context=Context(self.instance.context.initial, self.steps),
            active_steps=frozenset(self.active),
            waiting_steps=self.waiting,
            completed_steps=frozenset(self.completed),
            execution_history=tuple(self.history),
            runtime_metadata=self.metadata,
            error=self.error,
            attempts=self.attempts,
            compensation=self.compensation,
        )

    def _status(self, running: set[StepClass]) -> Status:
        """The status after this transition; ``running`` are the active steps not waiting."""
        if self.error is not None:
            return Status.FAILED
        if running:
            return Status.RUNNING
        if self.waiting:
            return Status.WAITING
        if self.compensation is not None and self.compensation.done:
            return self.compensation.ends  # cancelled (failed has its error back)
        return Status.COMPLETED

    def _current_active(self, running: set[StepClass]) -> StepClass | None:
        if running:
            return self.graph.sorted(running)[0]
        waiting = self.graph.sorted(self.waiting)
        return waiting[0] if waiting else self.current

    def _last_completed(self) -> StepClass | None:
        for entry in reversed(self.history):
            if entry.error is None and not entry.compensating:
                return entry.step
        return self.current


def _failure(step: StepClass, error: BaseException, now: datetime) -> Failure:
    kind = type(error)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return Failure(step, f"{module}{kind.__qualname__}", str(error), now, format_traceback(error))
