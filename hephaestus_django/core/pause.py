"""Pausing one instance: nothing of it runs until it is unpaused.

A pause is an operator's hold, not a state of the workflow: the instance keeps its status
(``running`` or ``waiting``, SPEC's six statuses are unchanged) and carries the hold in its
runtime metadata (``runtime_metadata["hephaestus.paused"]``: when, and why). While it is held

- no step starts: :func:`~hephaestus_django.core.engine.runnable` offers none, the built-ins
  (``Done``, ``Wait``) are not settled, and the runners give the instance a *pause lease* that
  keeps the worker's sweep and every queued job off it (see
  :mod:`~hephaestus_django.runtime.leases`);
- its timers wait: a due timer does not fire (:func:`~hephaestus_django.core.engine.
  fire_due_timers`), and fires once the instance is unpaused;
- an event is accepted and recorded (``resume`` completes the waiting step, as always), and
  the steps it makes runnable run once the instance is unpaused;
- a step that was already running finishes, and its result is recorded: only what would come
  after it waits.

Pure, like the engine: the runners apply :func:`pause` and :func:`unpause` under the row lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hephaestus_django.core.errors import InstanceNotPausableError
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.status import Status

PAUSED_KEY = "hephaestus.paused"
"""Where ``runtime_metadata`` holds an instance's pause: ``{"at": ISO 8601, "reason": ...}``."""

MAX_REASON_LENGTH = 1_000
"""The longest pause reason kept, in characters (it is rewritten with every write)."""

PAUSABLE = frozenset({Status.PENDING, Status.RUNNING, Status.WAITING})
"""The statuses an instance can be paused in: those of an instance that has not ended."""


def is_paused(instance: Instance) -> bool:
    """Whether ``instance`` is held by a pause (nothing of it runs)."""
    return PAUSED_KEY in instance.runtime_metadata


def pause_of(instance: Instance) -> Mapping[str, Any] | None:
    """The instance's pause (``at``, ``reason``), None when it is not paused."""
    found = instance.runtime_metadata.get(PAUSED_KEY)
    return found if isinstance(found, Mapping) else None


def pause(
    instance: Instance, *, now: datetime, reason: str | None = None, by_workflow: bool = False
) -> Instance:
    """Hold ``instance``: nothing of it runs until :func:`unpause`.

    An instance paused already is returned as it is (its first pause and reason are kept).
    :class:`InstanceNotPausableError`, nothing changed, for one that has ended. ``by_workflow``
    marks a pause made by pausing its whole workflow, which releasing that hold undoes
    (:mod:`~hephaestus_django.runtime.workflow_pauses`).
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"reason must be a str or None, not {reason!r}")
    if instance.status not in PAUSABLE:
        raise InstanceNotPausableError(
            f"instance {instance.id} of {instance.workflow.__qualname__} is {instance.status}; "
            f"only an instance that has not ended (pending, running, waiting) can be paused "
            f"(nothing was changed)",
            instance_id=instance.id,
        )
    if is_paused(instance):
        return instance
    held: dict[str, Any] = {
        "at": now.isoformat(),
        "reason": None if reason is None else reason[:MAX_REASON_LENGTH],
    }
    if by_workflow:
        held["workflow"] = True
    return evolve(instance, runtime_metadata={**instance.runtime_metadata, PAUSED_KEY: held})


def unpause(instance: Instance) -> Instance:
    """Release ``instance``'s pause: what waited (steps made runnable, due timers) runs on.

    An instance that is not paused is returned as it is: unpausing is idempotent, whatever the
    instance's status.
    """
    if not is_paused(instance):
        return instance
    metadata = {key: value for key, value in instance.runtime_metadata.items() if key != PAUSED_KEY}
    return evolve(instance, runtime_metadata=metadata)
