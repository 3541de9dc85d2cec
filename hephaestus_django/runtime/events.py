"""Lifecycle events: what a written transition changed, told to listeners once it committed.

The runners never say "this instance completed" at the places where it happens: a status
changes in the engine, through many paths (a wave of steps, ``resume``, a timer the worker
fires, a job on a worker, ``retry``, ``cancel``, a compensation). Instead every runner hands
each write it makes to :func:`written`, with the instance as it was before the transition
and as it was written; :func:`changes` compares the two and names what changed, as frozen
event objects. So every path reports the same events in the same way, and a new path cannot
forget to.

Listeners (:func:`add_listener`; the Django app's sends Django signals, see
:mod:`hephaestus_django.signals`) get the events of one write, in order, **after that write
has committed**:

- a write that stood alone (the storage in autocommit mode, or the in-memory storage) has
  committed when ``put``/``update`` returns: the listeners run then, in the writing thread,
  before the runner goes on (with ``LocalRunner``, before the next wave);
- a write made inside a transaction (the caller's ``transaction.atomic()``, or
  ``QueuedRunner``'s transaction that records a transition with its jobs) is told through
  the storage's ``on_commit``: when the outermost block commits, in order with the other
  callbacks of that transaction; a transaction (or savepoint) that rolls back drops them, so
  nothing is told about a change that never happened.

A listener that raises is logged with its traceback and never breaks the runner, nor keeps
the other listeners from their turn. With no listener, a write costs one list check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, TypedDict, cast
from uuid import UUID

from hephaestus_django.core.effects import Effects, effects
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Failure, Instance
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime.contract import Transactional, offers
from hephaestus_django.runtime.logs import about

logger = logging.getLogger("hephaestus_django.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """Something that happened to an instance, as recorded by one committed write.

    ``instance`` is the instance as that write stored it (later writes may have changed the
    stored one since). ``step`` is the step the event is about, where there is one; ``error``
    the recorded failure (type, message, traceback), where there is one.
    """

    name: ClassVar[str] = ""
    instance: Instance
    instance_id: UUID
    workflow: type[WorkflowDefinition]
    version: int
    step: StepClass | None = None
    error: Failure | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceStarted(LifecycleEvent):
    """The instance was written for the first time, running; ``step`` is its start step."""

    name: ClassVar[str] = "instance_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceWaiting(LifecycleEvent):
    """Nothing is left to run until an event or a timer (a retry's backoff too): the status
    became ``waiting``. ``steps`` are the waiting steps; ``resume_at`` the earliest timer."""

    name: ClassVar[str] = "instance_waiting"
    steps: tuple[StepClass, ...] = ()
    resume_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceResumed(LifecycleEvent):
    """A step that waited for an event or a timer got it: ``resume()`` delivered ``event``,
    or its timer fired (``by_timer``)."""

    name: ClassVar[str] = "instance_resumed"
    event: str
    by_timer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceCompleted(LifecycleEvent):
    """Every step ran: the status became ``completed``; ``step`` is the last one completed."""

    name: ClassVar[str] = "instance_completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceFailed(LifecycleEvent):
    """The status became ``failed``: ``step`` failed with ``error`` (after its compensations
    ran, for a workflow that compensates on failure)."""

    name: ClassVar[str] = "instance_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceCancelled(LifecycleEvent):
    """The status became ``cancelled``: at once, or after the last compensation a
    ``cancel(compensate=True)`` asked for. ``step`` is where it stood when cancelled."""

    name: ClassVar[str] = "instance_cancelled"
    reason: str | None = None
    compensated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCompleted(LifecycleEvent):
    """``step`` completed with ``event`` on its ``attempt`` (1 unless its retry policy tried
    it again); with ``compensation``, it is the step's ``compensate`` that ran."""

    name: ClassVar[str] = "step_completed"
    event: str
    attempt: int = 1
    compensation: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(LifecycleEvent):
    """``step``'s ``attempt`` failed with ``error``; ``will_retry`` when its retry policy
    tries it again (a :class:`StepRetried` follows), else the instance failed (or, for a
    workflow that compensates on failure, starts compensating)."""

    name: ClassVar[str] = "step_failed"
    attempt: int = 1
    compensation: bool = False
    will_retry: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetried(LifecycleEvent):
    """``step``, which failed with ``error``, will run again as ``attempt``: its retry policy
    scheduled it for ``retry_at``, or ``Workflow.retry`` made it runnable at once
    (``retry_at`` None, and ``attempt`` 1: a retry starts the policy's count again)."""

    name: ClassVar[str] = "step_retried"
    attempt: int = 1
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(LifecycleEvent):
    """A timer of ``step`` due at ``due`` fired at ``fired_at`` (``lag`` late): a ``Wait``,
    or a retry's backoff (``retry``). For metrics; no Django signal."""

    name: ClassVar[str] = "timer_fired"
    due: datetime
    fired_at: datetime
    retry: bool = False

    @property
    def lag(self) -> timedelta:
        """How late the timer fired (the worker's poll interval, a busy queue, a dead worker)."""
        return self.fired_at - self.due


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceTakenOver(LifecycleEvent):
    """A worker took over an instance whose runner (or job) stopped renewing its lease:
    ``steps`` were runnable and are run (or enqueued) again. For metrics; no Django signal."""

    name: ClassVar[str] = "instance_taken_over"
    steps: tuple[StepClass, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StepThrottled(LifecycleEvent):
    """``step`` is over its concurrency limit: it waits in line for a slot of ``limit`` under
    ``key`` (empty for a limit without a key). Told each time a runner finds it over its
    limit (again after a take-over, or after another wave of its instance), not by a write."""

    name: ClassVar[str] = "step_throttled"
    limit: str
    key: str = ""


class _Common(TypedDict):
    """The fields every event of one write shares."""

    instance: Instance
    instance_id: UUID
    workflow: type[WorkflowDefinition]
    version: int


Listener = Callable[[Sequence[LifecycleEvent]], None]
"""Called with the events of one committed write, in the order they happened."""

_listeners: tuple[Listener, ...] = ()
_interest: tuple[Callable[[], bool], ...] = ()
"""Each listener's ``wants`` (see :func:`add_listener`), or an always-true one."""
_lock = threading.Lock()


def add_listener(listener: Listener, *, wants: Callable[[], bool] | None = None) -> None:
    """Call ``listener`` with the events of every committed write (once, however often it is
    added: the Django app's ``ready()`` may run more than once in tests).

    ``wants`` says, before each write, whether the listener has any use for its events now
    (the Django signals' listener: whether any signal has a receiver): when no listener
    wants them, they are not even computed, so an unused feature costs nothing per step.
    """
    global _listeners
    with _lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)
            _wanted[listener] = wants
            _refresh()


def remove_listener(listener: Listener) -> None:
    """Stop calling ``listener``; no error when it was not added."""
    global _listeners
    with _lock:
        _listeners = tuple(known for known in _listeners if known != listener)
        _wanted.pop(listener, None)
        _refresh()


def listening() -> bool:
    """Whether a listener wants the events of the next write: if not, nothing is computed."""
    return any(wants() for wants in _interest)


_wanted: dict[Listener, Callable[[], bool] | None] = {}


def _always() -> bool:
    return True


def _refresh() -> None:
    global _interest
    _interest = tuple(_wanted.get(listener) or _always for listener in _listeners)


def written(
    storage: object,
    before: Instance | None,
    after: Instance,
    *,
    taken_over: bool = False,
    done: Effects | None = None,
) -> None:
    """Tell the listeners what the write of ``after`` changed, once it has committed.

    ``before`` is the instance the transition started from (None for a new instance);
    ``taken_over`` says a worker's sweep claimed it; ``done`` is what the transition decided,
    where the runner has it (else it is worked out, only when a listener wants the events).
    Called by the runners right after each write, in the transaction that wrote it if there is
    one (see the module's docstring).
    """
    if after is before:
        return
    for wants in _interest:  # a loop, not any(): this runs per write, mostly for nobody
        if wants():
            break
    else:
        return
    found = changes(before, after, taken_over=taken_over, done=done)
    if not found:
        return
    if offers(storage, Transactional):
        storage.on_commit(lambda: deliver(found))  # type: ignore[attr-defined]
    else:
        deliver(found)


def throttled(storage: object, instance: Instance, step: StepClass, limit: str, key: str) -> None:
    """Tell the listeners that ``step`` of ``instance`` waits in line for a slot (after the
    caller's transaction commits, if there is one)."""
    if not listening():
        return
    event = StepThrottled(
        instance=instance,
        instance_id=instance.id,
        workflow=instance.workflow,
        version=instance.workflow_version,
        step=step,
        limit=limit,
        key=key,
    )
    if offers(storage, Transactional):
        cast(Transactional, storage).on_commit(lambda: deliver([event]))
    else:
        deliver([event])


def deliver(events: Sequence[LifecycleEvent]) -> None:
    """Call every listener with ``events``; one that raises is logged and the others go on."""
    for listener in _listeners:
        try:
            listener(events)
        except Exception:
            first = events[0]
            logger.exception(
                "a listener of hephaestus_django's lifecycle events raised; the workflow goes "
                "on (instance %s, %s)",
                first.instance_id,
                first.name,
                extra=about(first.instance, step=first.step),
            )


def changes(
    before: Instance | None,
    after: Instance,
    *,
    taken_over: bool = False,
    done: Effects | None = None,
) -> list[LifecycleEvent]:
    """The events that turning ``before`` into ``after`` amounts to, in the order they happened.

    Pure: it reads the two instances only (their statuses, the history entries ``after``
    added, the waiting steps and the recorded failure), and what the engine decided for them
    (``done``, worked out here when not given), so any transition, of any runner, is
    described the same way.
    """
    if after is before:
        return []
    if done is None or done.before is not before:
        done = effects(before, after)
    done = done.settled(after)
    common: _Common = {
        "instance": after,
        "instance_id": after.id,
        "workflow": after.workflow,
        "version": after.workflow_version,
    }
    found: list[LifecycleEvent] = []
    if before is None:
        found.append(InstanceStarted(step=after.workflow.graph.start, **common))
    elif taken_over:
        stalled = done.runnable_before
        if stalled:
            steps = tuple(before.workflow.graph.sorted(stalled))
            found.append(InstanceTakenOver(step=steps[0], steps=steps, **common))

    old_history = before.execution_history if before is not None else ()
    new_entries = after.execution_history[len(old_history) :]
    # A rewind forgets history entries and times: none of its changes is a step's progress.
    rewound = done.rewound
    if rewound:
        new_entries = ()
    moment = new_entries[-1].timestamp if new_entries else after.updated_at
    cancelled = after.cancellation is not None and (before is None or before.cancellation is None)

    if before is not None and before.waiting_steps and not cancelled and not rewound:
        found.extend(_timers_fired(before, after, moment, common))

    before_attempts = before.attempts if before is not None else {}
    compensating = before.compensating if before is not None else False
    retried_failure = (
        before.error
        if before is not None
        and before.status is Status.FAILED
        and after.status is not Status.FAILED
        and not rewound
        else None
    )
    reported: list[Failure] = []
    for entry in new_entries:
        attempt = before_attempts.get(entry.step, 0) + 1
        if entry.error is None:
            found.append(
                StepCompleted(
                    step=entry.step,
                    event=entry.event,
                    attempt=attempt,
                    compensation=entry.compensating,
                    **common,
                )
            )
            continue
        if retried_failure is not None and entry.error == retried_failure:
            continue  # Workflow.retry's record of the failure it retries, told when it happened
        waiting = after.waiting_steps.get(entry.step)
        again = waiting is not None and waiting.attempt is not None
        found.append(
            StepFailed(
                step=entry.step,
                error=entry.error,
                attempt=attempt,
                compensation=compensating,
                will_retry=again,
                **common,
            )
        )
        reported.append(entry.error)
        if again and waiting is not None and waiting.attempt is not None:
            found.append(
                StepRetried(
                    step=entry.step,
                    error=entry.error,
                    attempt=waiting.attempt,
                    retry_at=waiting.resume_at,
                    **common,
                )
            )

    failure = after.error
    if (
        failure is not None
        and (before is None or failure != before.error)
        and failure not in reported
        and not (
            before is not None
            and before.compensation is not None
            and before.compensation.failure == failure
        )
    ):
        found.append(
            StepFailed(
                step=failure.step,
                error=failure,
                attempt=before_attempts.get(failure.step, 0) + 1,
                compensation=compensating,
                **common,
            )
        )
    if retried_failure is not None:
        step = retried_failure.step
        found.append(
            StepRetried(
                step=step,
                error=retried_failure,
                attempt=after.attempts.get(step, 0) + 1,
                **common,
            )
        )

    if before is None or after.status is not before.status:
        found.extend(_status_event(after, done.due, common))
    return found


def _timers_fired(
    before: Instance, after: Instance, moment: datetime | None, common: _Common
) -> list[LifecycleEvent]:
    """The timers ``before`` waited on that ``after`` no longer waits on, and the resumes:
    a waiting step completed by ``resume()`` or by its timer, a retry's backoff that ended."""
    found: list[LifecycleEvent] = []
    added = after.execution_history[len(before.execution_history) :]
    completed = {entry.step: entry for entry in added if entry.error is None}
    graph = before.workflow.graph
    for step in graph.sorted(before.waiting_steps):
        waiting = before.waiting_steps[step]
        due = waiting.resume_at
        if waiting.attempt is not None:
            # The backoff ended: the step is runnable again, for its next attempt.
            if step not in after.waiting_steps and due is not None and moment is not None:
                found.append(TimerFired(step=step, due=due, fired_at=moment, retry=True, **common))
            continue
        entry = completed.get(step)
        if entry is None or entry.compensating:
            continue
        by_timer = (
            due is not None
            and waiting.timer_event is not None
            and entry.event == waiting.timer_event
            and due <= entry.timestamp
        )
        if by_timer and due is not None:
            found.append(TimerFired(step=step, due=due, fired_at=entry.timestamp, **common))
        found.append(InstanceResumed(step=step, event=entry.event, by_timer=by_timer, **common))
    return found


def _status_event(after: Instance, due: datetime | None, common: _Common) -> list[LifecycleEvent]:
    """The event of the status ``after`` has newly reached, if it is one that is told; ``due``
    is its earliest timer."""
    status = after.status
    if status is Status.WAITING:
        steps = tuple(after.workflow.graph.sorted(after.waiting_steps))
        return [
            InstanceWaiting(
                step=after.current_step,
                steps=steps,
                resume_at=due,
                **common,
            )
        ]
    if status is Status.COMPLETED:
        return [InstanceCompleted(step=after.current_step, **common)]
    if status is Status.FAILED:
        failure = after.error
        step = failure.step if failure is not None else after.current_step
        return [InstanceFailed(step=step, error=failure, **common)]
    if status is Status.CANCELLED:
        cancellation = after.cancellation
        return [
            InstanceCancelled(
                step=after.current_step,
                reason=cancellation.reason if cancellation is not None else None,
                compensated=after.compensation is not None,
                **common,
            )
        ]
    return []
