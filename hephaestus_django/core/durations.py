"""One check for every duration an option takes: leases, timeouts, intervals, backoffs.

Each option used to check its own duration, and they drifted (one runner read ``lease=True``
as one second, the other refused it). :func:`checked_duration` is the only place that decides
what a duration may be, so every option accepts and refuses the same values, with an error
naming the option:

- a ``timedelta``; or, where the option takes ``seconds``, an int or float number of seconds
  (finite). A bool is never a duration, although Python counts it as an int.
- ``positive`` (a lease, a timeout, an interval: zero would mean "never" or "spin") or merely
  not negative (a backoff, a horizon).
- None only where the option is ``optional`` (a step without a timeout).
"""

from __future__ import annotations

import math
from datetime import timedelta


def checked_duration(
    name: str, value: object, *, seconds: bool = True, positive: bool = True, or_none: bool = False
) -> timedelta:
    """``value`` as the timedelta the option ``name`` means.

    ``TypeError`` for a value of the wrong type (a bool, a string, a number where only a
    timedelta is accepted), ``ValueError`` for one out of range; both name ``name``. ``or_none``
    says, in the error, that the option also takes None (which its caller handles).
    """
    if isinstance(value, bool) or not isinstance(
        value, (timedelta, int, float) if seconds else timedelta
    ):
        kinds = "a timedelta or seconds" if seconds else "a timedelta"
        raise TypeError(f"{name} must be {kinds}{' or None' if or_none else ''}, not {value!r}")
    if isinstance(value, timedelta):
        duration = value
    elif not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    else:
        try:
            duration = timedelta(seconds=value)
        except OverflowError:
            raise ValueError(f"{name} is too long a duration: {value!r} seconds") from None
    if positive and duration <= timedelta(0):
        kind = "duration" if seconds else "timedelta"
        raise ValueError(f"{name} must be a positive {kind}, not {value!r}")
    if duration < timedelta(0):
        raise ValueError(f"{name} must not be negative, not {value!r}")
    return duration


def duration_problems(
    name: str,
    value: object,
    *,
    seconds: bool = True,
    positive: bool = True,
    optional: bool = False,
) -> list[str]:
    """What :func:`checked_duration` finds wrong with ``value``, as sentences; empty when it
    is sound. For the definition-time checks, which list every problem before raising."""
    if value is None and optional:
        return []
    try:
        checked_duration(name, value, seconds=seconds, positive=positive, or_none=optional)
    except (TypeError, ValueError) as error:
        return [str(error)]
    return []
