"""``Debounce``: how long a burst of starts with one business key waits before it starts once.

``Workflow.start(context, key="customer-42", debounce=timedelta(seconds=5))`` does not start
the instance: it records (or pushes back) a pending start for that workflow and key, due once
the key has seen no start for the window. Every start inside the window replaces the pending
start's context with its own (the last one wins) and pushes its time back; ``max_wait`` bounds
that, so a stream that is never quiet for a whole window still starts, ``max_wait`` after the
first of its starts. The runtime part is :mod:`hephaestus_django.runtime.debounce`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hephaestus_django.core.errors import DebounceError

MAX_WINDOW = timedelta(days=7)
"""The longest window or ``max_wait``: a pending start is meant to wait seconds or minutes,
not to schedule work for later (use a timer or a schedule for that)."""


@dataclass(frozen=True)
class Debounce:
    """A quiet ``window`` before a pending start starts, and at most ``max_wait`` in all.

    ``window`` and ``max_wait`` are timedeltas (or seconds), above zero and at most
    :data:`MAX_WINDOW`; ``max_wait`` at least the window. ``max_wait=None`` (the default)
    waits as long as the starts keep coming.
    """

    window: timedelta
    max_wait: timedelta | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _duration("the debounce window", self.window))
        if self.max_wait is not None:
            max_wait = _duration("max_wait", self.max_wait)
            if max_wait < self.window:
                raise DebounceError(
                    f"max_wait ({max_wait}) is shorter than the debounce window ({self.window}): "
                    "give a max_wait of at least the window, or none"
                )
            object.__setattr__(self, "max_wait", max_wait)


def _duration(name: str, value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise DebounceError(f"{name} must be a timedelta (or seconds), not {value!r}")
    duration = value if isinstance(value, timedelta) else _seconds(name, value)
    if not timedelta(0) < duration <= MAX_WINDOW:
        raise DebounceError(
            f"{name} must be above zero and at most {MAX_WINDOW.days} days, not {duration}"
        )
    return duration


def _seconds(name: str, value: float) -> timedelta:
    try:
        return timedelta(seconds=value)
    except (OverflowError, ValueError):
        raise DebounceError(f"{name} of {value!r} seconds is out of range") from None


def debounce_of(value: object) -> Debounce:
    """``start(debounce=...)`` as a :class:`Debounce`: one, or its window alone."""
    return value if isinstance(value, Debounce) else Debounce(value)  # type: ignore[arg-type]


__all__ = ["MAX_WINDOW", "Debounce", "debounce_of"]
