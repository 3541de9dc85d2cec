"""Django signals for the lifecycle of workflow instances, sent after the change committed.

::

    from django.dispatch import receiver
    from hephaestus_django.signals import instance_failed

    @receiver(instance_failed, sender=OrderWorkflow)
    def page_someone(sender, instance_id, step, error, **kwargs):
        ...

Every signal is sent with ``sender`` the workflow class (so ``sender=OrderWorkflow``
connects to one workflow's instances), and these keyword arguments:

- ``instance_id`` (UUID), ``workflow`` (the class, as ``sender``), ``version`` (int);
- ``step``: the step class the event is about, or None;
- ``error``: the recorded :class:`~hephaestus_django.core.instance.Failure` (``step``,
  ``error_type``, ``message``, ``at``, ``traceback``), or None;
- ``instance``: the instance as the write stored it;
- ``lifecycle_event``: the :mod:`~hephaestus_django.runtime.events` object itself;
- and each signal's own, listed below.

========================  ==========================================================
``instance_started``      first written, running; ``step`` is the start step
``instance_waiting``      nothing runs until an event or timer; ``steps``, ``resume_at``
``instance_resumed``      a waiting step got its event (``resume()``) or timer: ``event``,
                          ``by_timer``
``instance_completed``    every step ran; ``step`` is the last one
``instance_failed``       ``step`` failed with ``error``; nothing else runs
``instance_cancelled``    cancelled (after its compensations, if asked for): ``reason``,
                          ``compensated``
``step_completed``        ``step`` completed with ``event`` on ``attempt``; with
                          ``compensation``, its ``compensate`` ran
``step_failed``           ``step``'s ``attempt`` failed with ``error``; ``will_retry``,
                          ``compensation``
``step_retried``          ``step`` runs again as ``attempt`` at ``retry_at`` (its retry
                          policy), or at once (``Workflow.retry``, ``retry_at`` None)
``step_throttled``        ``step`` is over its concurrency limit and waits in line:
                          ``limit``, ``key`` (each time a runner finds it so)
========================  ==========================================================

**When.** A signal is sent once the write that recorded the change has committed, in the
thread that wrote it: right after the write when it stood alone (autocommit); from
``transaction.on_commit`` on the storage's database when it was made inside a transaction
(the caller's ``transaction.atomic()``, or ``QueuedRunner``'s transaction that records a
transition together with its jobs), i.e. when the outermost block commits. A transaction that
rolls back sends nothing. With ``LocalRunner``, the signals of one wave are sent before the
next wave runs; with ``QueuedRunner``, in the process (web request, worker) whose write made
the change.

**Receivers that raise** never break the runner: the signals are sent with ``send_robust``
and each exception is logged (logger ``hephaestus_django.signals``, with its traceback).
A receiver runs inside the runner's flow: keep it short, or hand the work to a task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from django.dispatch import Signal

from hephaestus_django.runtime import events
from hephaestus_django.runtime.logs import about

logger = logging.getLogger("hephaestus_django.signals")


class _Signal(Signal):
    """A Django signal that tells :func:`receiving` when its receivers change, so the
    runners' question "does anyone listen?" is answered from a cached flag per write."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        global _receiving
        super().connect(*args, **kwargs)
        _receiving = None

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        global _receiving
        try:
            return super().disconnect(*args, **kwargs)
        finally:
            _receiving = None


_receiving: bool | None = None
"""Whether any signal has a receiver; None: to be found again (a receiver came or went)."""

instance_started = _Signal()
"""An instance was written for the first time (running)."""
instance_waiting = _Signal()
"""An instance's status became ``waiting``."""
instance_resumed = _Signal()
"""A waiting step of an instance got its event or its timer."""
instance_completed = _Signal()
"""An instance's status became ``completed``."""
instance_failed = _Signal()
"""An instance's status became ``failed``."""
instance_cancelled = _Signal()
"""An instance's status became ``cancelled``."""
step_completed = _Signal()
"""A step (or its compensation) completed."""
step_failed = _Signal()
"""An attempt of a step (or of its compensation) failed."""
step_retried = _Signal()
"""A failed step will run again."""
step_throttled = _Signal()
"""A step is over its concurrency limit: it waits in line for a slot."""

SIGNALS: dict[type[events.LifecycleEvent], Signal] = {
    events.InstanceStarted: instance_started,
    events.InstanceWaiting: instance_waiting,
    events.InstanceResumed: instance_resumed,
    events.InstanceCompleted: instance_completed,
    events.InstanceFailed: instance_failed,
    events.InstanceCancelled: instance_cancelled,
    events.StepCompleted: step_completed,
    events.StepFailed: step_failed,
    events.StepRetried: step_retried,
    events.StepThrottled: step_throttled,
}
"""Which signal each lifecycle event is sent as (the metrics-only events have none)."""
_SIGNALS = tuple(SIGNALS.values())
_FIELDS: dict[type[events.LifecycleEvent], tuple[str, ...]] = {}
"""Each event type's field names, the signal's keyword arguments (``fields()`` is slow)."""


def receiving() -> bool:
    """Whether any of the signals has a receiver: if not, the runners compute no events for
    them (the ``wants`` of the app's listener). Cached until a receiver is connected or
    disconnected (a receiver held weakly that is collected leaves it True: events computed
    for nobody, never the other way round)."""
    global _receiving
    found = _receiving
    if found is None:
        found = _receiving = any(signal.receivers for signal in _SIGNALS)
    return found


def send(lifecycle_events: Sequence[events.LifecycleEvent]) -> None:
    """The lifecycle events' listener the app adds in ``ready()``: each event as its signal.

    Nothing is built for a signal without receivers, so an unused signal costs a dict
    lookup and an attribute check per event.
    """
    for event in lifecycle_events:
        signal = SIGNALS.get(type(event))
        # ``receivers`` first: an empty list answers at once, ``has_listeners`` takes µs.
        if signal is None or not signal.receivers or not signal.has_listeners(event.workflow):
            continue
        names = _FIELDS.get(type(event))
        if names is None:
            names = _FIELDS[type(event)] = tuple(field.name for field in fields(event))
        arguments: dict[str, Any] = {name: getattr(event, name) for name in names}
        for receiver, response in signal.send_robust(
            sender=event.workflow, lifecycle_event=event, **arguments
        ):
            if isinstance(response, Exception):
                logger.error(
                    "a receiver of %s raised; the workflow goes on (instance %s): %s: %s",
                    event.name,
                    event.instance_id,
                    type(response).__name__,
                    response,
                    exc_info=response,
                    extra={**about(event.instance, step=event.step), "receiver": receiver},
                )
