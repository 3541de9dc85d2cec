"""What a step's ``execute`` may return, and how it is read.

A step reads naturally when the common case is the shortest: return the name
of the event (``return "approved"``). Results and metadata ride on an
:class:`Event`; waiting rides on :class:`Async`; failing is raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.errors import StepOutcomeError

if TYPE_CHECKING:
    from hephaestus_django.core.steps import Step

TERMINAL_EVENT = "done"
"""The event recorded when a terminal step (``Done``) completes."""


@dataclass(frozen=True, slots=True)
class Event:
    """The step finished and emits ``name``.

    ``updates`` becomes the step's result in the context (under its
    ``step_key``); ``metadata`` is merged into the instance's
    ``runtime_metadata``.
    """

    name: str
    updates: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Async:
    """The step is not finished: the instance waits for an event or a timer.

    Give ``after`` (a duration) or ``at`` (an aware datetime) together with
    ``timer_event`` to have the step complete with that event when the time
    comes; without them the step waits for ``resume()`` only.
    """

    after: timedelta | None = None
    at: datetime | None = None
    timer_event: str | None = None

    def __post_init__(self) -> None:
        if self.after is not None and self.at is not None:
            raise ValueError("Async takes either after= or at=, not both")
        if (self.after is not None or self.at is not None) != (self.timer_event is not None):
            raise ValueError("Async needs timer_event= exactly when after= or at= is given")
        if self.after is not None and self.after < timedelta(0):
            raise ValueError(f"Async(after={self.after!r}) must not be negative")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("Async(at=...) needs an aware datetime (with tzinfo)")

    def due_time(self, now: datetime) -> datetime | None:
        """When the timer fires, seen from ``now``; None when there is no timer."""
        if self.after is not None:
            return now + self.after
        return self.at


Outcome = Event | Async
"""A step's outcome once read: it completed with an event, or it waits."""

StepResult = str | Event | Async | None
"""What ``Step.execute`` may return (``None`` only from terminal steps)."""


def read_outcome(step: type[Step], returned: object) -> Outcome:
    """Check what ``step.execute`` returned and turn it into an :data:`Outcome`.

    Anything malformed raises :class:`StepOutcomeError`, which the runner
    records as that step's failure.
    """
    name = step.__qualname__
    if step.terminal:
        if returned is None or returned == TERMINAL_EVENT:
            return Event(TERMINAL_EVENT)
        if isinstance(returned, Event) and returned.name == TERMINAL_EVENT:
            return _checked_event(name, returned)
        raise StepOutcomeError(
            f"terminal step {name} returned {returned!r}; a terminal step returns None "
            f"or Event({TERMINAL_EVENT!r}, updates=...)"
        )
    if isinstance(returned, str):
        returned = Event(returned)
    if isinstance(returned, Async):
        if returned.timer_event is not None and returned.timer_event not in step.events:
            raise StepOutcomeError(
                f"step {name} waits for timer event {returned.timer_event!r}, which it does "
                f"not declare (declared: {', '.join(step.events)})"
            )
        return returned
    if isinstance(returned, Event):
        if returned.name not in step.events:
            raise StepOutcomeError(
                f"step {name} returned event {returned.name!r}, which it does not declare "
                f"(declared: {', '.join(step.events) or 'none'})"
            )
        return _checked_event(name, returned)
    raise StepOutcomeError(
        f"step {name} returned {returned!r}; return an event name, Event(...), Async(...), "
        f"or raise an exception to fail"
    )


def _checked_event(step_name: str, event: Event) -> Event:
    for label, value in (("updates", event.updates), ("metadata", event.metadata)):
        if value is not None and not isinstance(value, Mapping):
            raise StepOutcomeError(
                f"step {step_name} returned Event({event.name!r}) whose {label} is a "
                f"{type(value).__name__}; it must be a dict"
            )
    return event
