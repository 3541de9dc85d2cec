"""Where the runners let a tracer in: around each transition, each step, each job.

The runtime does not know OpenTelemetry (nor any tracing system): it calls a
:class:`Tracer` at a few well-defined points, and the one installed by default does
nothing. :mod:`hephaestus_django.telemetry` installs one that makes OpenTelemetry spans;
anything else implementing the protocol could be installed instead (:func:`install`).

The points:

- :func:`traced` decorates the runners' verbs (``start``, ``resume``, ``retry``,
  ``cancel``) and the sweep's takeover of an instance (a timer that fired, or a runner that
  died): a span around the whole transition, with the steps that ``LocalRunner`` runs in
  it as its children;
- :func:`step` is entered around each execution of a step (``execute_step``, shared by both
  runners), and told its result;
- :func:`carrier` is the current trace context as a few strings, put into every job
  ``QueuedRunner`` enqueues, and :func:`restored` makes it current again in the worker that
  runs the job (:func:`job`), so a step run in another process is a child of the
  ``start``/``resume`` that made it runnable.

With no tracer installed, each point costs a global read and a comparison. A tracer may also
say, before each transition and each step, whether it has anything to do now (its optional
``wants_transitions`` and ``wants_steps``: :mod:`hephaestus_django.telemetry`'s answers no
while OpenTelemetry has no SDK configured): when it has not, the point costs that call too,
and nothing else (no span, no attributes, no context manager).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from hephaestus_django.core.instance import Instance

if TYPE_CHECKING:
    from hephaestus_django.core.engine import Activation, Executed


class Span(Protocol):
    """What a runner tells the span it is in."""

    def set_instance(self, instance: Instance) -> None:
        """The instance the transition wrote (its id, workflow, status become attributes)."""
        ...

    def set_result(self, result: Executed) -> None:
        """The step's result: its event, "async" or its error."""
        ...


class Tracer(Protocol):
    """What :mod:`hephaestus_django.telemetry` implements."""

    def transition(
        self, kind: str, subject: object, event: str | None
    ) -> AbstractContextManager[Span]:
        """A span around a transition: ``kind`` is ``start``, ``resume``, ``retry``,
        ``cancel``, ``takeover`` (the sweep) or ``timer`` (a wake-up job); ``subject`` what the
        verb was given first (a workflow class, an instance id, the claimed instance, a job)."""
        ...

    def step(self, instance: Instance, activation: Activation) -> AbstractContextManager[Span]:
        """A span around one execution of a step (or of its compensation)."""
        ...

    def carrier(self) -> dict[str, str] | None:
        """The current trace context, to travel in a job's payload (None: nothing to carry)."""
        ...

    def restored(self, carrier: Mapping[str, str] | None) -> AbstractContextManager[object]:
        """The trace context a job carried, current for the block."""
        ...


class _NoSpan:
    """The span of no tracer: it is told everything and keeps nothing."""

    def set_instance(self, instance: Instance) -> None:
        pass

    def set_result(self, result: Executed) -> None:
        pass


def _always() -> bool:
    return True


_NO_SPAN = _NoSpan()
_tracer: Tracer | None = None
_transitions: Callable[[], bool] = _always
"""The installed tracer's ``wants_transitions``: whether a transition span is of use now."""
_steps: Callable[[], bool] = _always
"""The installed tracer's ``wants_steps``: whether a step's span (or measure) is of use now."""


def install(tracer: Tracer | None) -> Tracer | None:
    """Make ``tracer`` the one the runners call (None: none); return the one it replaces.

    A tracer with a ``wants_transitions`` (or ``wants_steps``) method is asked it before each
    transition (each step): False skips the point entirely for this once.
    """
    global _tracer, _transitions, _steps
    previous, _tracer = _tracer, tracer
    _transitions = getattr(tracer, "wants_transitions", _always)
    _steps = getattr(tracer, "wants_steps", _always)
    return previous


def installed() -> Tracer | None:
    """The tracer the runners call, if any."""
    return _tracer


def stepping() -> bool:
    """Whether a step's execution goes through :func:`step` now: a tracer is installed and
    wants steps (else the runner calls the step directly)."""
    return _tracer is not None and _steps()


R = TypeVar("R")
P = ParamSpec("P")


def traced(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a runner's verb: a span of ``kind`` around it, given its first argument after
    ``self`` (and, for ``resume``, its event), told the instance it returns."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            tracer = _tracer
            if tracer is None or not _transitions():
                return method(*args, **kwargs)
            subject = args[1] if len(args) > 1 else None
            event = args[2] if kind == "resume" and len(args) > 2 else kwargs.get("event")
            with tracer.transition(
                kind, subject, event if isinstance(event, str) else None
            ) as span:
                result = method(*args, **kwargs)
                if isinstance(result, Instance):
                    span.set_instance(result)
                return result

        return wrapper

    return decorate


def step(instance: Instance, activation: Activation) -> AbstractContextManager[Span]:
    """The span around one execution of ``activation``'s step."""
    tracer = _tracer
    if tracer is None or not _steps():
        return nullcontext(_NO_SPAN)
    return tracer.step(instance, activation)


def carrier() -> dict[str, str] | None:
    """The current trace context for a job's payload; None without a tracer."""
    tracer = _tracer
    return None if tracer is None else tracer.carrier()


def restored(carrier: Mapping[str, str] | None) -> AbstractContextManager[object]:
    """The trace context a job carried made current (nothing without a tracer or a context)."""
    tracer = _tracer
    if tracer is None or not carrier:
        return nullcontext()
    return tracer.restored(carrier)


def job(method: Callable[P, R]) -> Callable[P, R]:
    """Decorate a runner's handling of a job (its first argument after ``self``): the trace
    context the job carried (``job.trace``) is current while it runs."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _tracer is None or len(args) < 2:
            return method(*args, **kwargs)
        with restored(getattr(args[1], "trace", None)):
            return method(*args, **kwargs)

    return wrapper
