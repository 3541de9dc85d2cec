"""What a transition did: the engine's answer, computed once and read by the runtime.

A transition turns one instance into another (:mod:`~hephaestus_django.core.engine`). Around
each, the runtime needs to know what it decided: which steps became runnable (the queued
runner enqueues a job for each), when the next timer is due (a wake-up job, the lease's
expiry, the ``instance_waiting`` event), which steps were runnable before (the steps a sweep
takes over). These used to be asked of the engine again at each place that needed them, up
to three times per transition; :func:`effects` asks once, and the runner, the lease and the
lifecycle events (:mod:`~hephaestus_django.runtime.events`) read its answer.

Pure, like the engine: it reads the two instances only. What it reports does not depend on an
instance's lease or running marks, so the runner may set those on ``after`` afterwards
(:meth:`Effects.settled`) and the answer still holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from hephaestus_django.core.engine import next_timer, rewinds_of, startable_steps
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance


@dataclass(frozen=True, slots=True)
class Effects:
    """The transition from ``before`` (None: a new instance) to ``after``, and what it decided.

    ``runnable`` and ``due`` are ``after``'s runnable steps and earliest timer;
    ``runnable_before`` and ``due_before`` the same of ``before`` (empty and None without one).
    """

    before: Instance | None
    after: Instance
    runnable: frozenset[StepClass]
    due: datetime | None
    runnable_before: frozenset[StepClass]
    due_before: datetime | None

    @property
    def changed(self) -> bool:
        """Whether the transition changed anything (a no-op returns its instance as it was)."""
        return self.after is not self.before

    @property
    def newly_runnable(self) -> frozenset[StepClass]:
        """The steps the transition made runnable: runnable after, not before; after a rewind,
        every runnable step (the results of what ran before it are refused: they run again),
        and when compensations end with steps to run (a rewind's), every one of those.

        A paused instance has none (:func:`~hephaestus_django.core.engine.startable_steps`):
        unpausing it makes every runnable step new again, and its next timer moved."""
        before = self.before
        if self.rewound or (
            before is not None and before.compensating and not self.after.compensating
        ):
            return self.runnable
        return self.runnable - self.runnable_before

    @property
    def rewound(self) -> bool:
        """Whether the transition started a new generation of the instance (a rewind)."""
        return self.before is not None and rewinds_of(self.before) != rewinds_of(self.after)

    @property
    def due_moved(self) -> bool:
        """Whether the earliest timer is not the one ``before`` had (a new timer to wake)."""
        return self.before is None or self.due != self.due_before

    def settled(self, after: Instance) -> Effects:
        """The same answer for ``after``, the written instance: ``self.after`` with its lease or
        running marks set, which change none of what is reported."""
        return self if after is self.after else replace(self, after=after)


def effects(before: Instance | None, after: Instance) -> Effects:
    """What turning ``before`` into ``after`` decided; each question asked of the engine once."""
    if before is None:
        return Effects(None, after, startable_steps(after), next_timer(after), frozenset(), None)
    if after is before:
        return unchanged(after)
    return Effects(
        before,
        after,
        startable_steps(after),
        next_timer(after),
        startable_steps(before),
        next_timer(before),
    )


def unchanged(instance: Instance) -> Effects:
    """A transition that changed nothing: ``instance`` before and after."""
    runnable = startable_steps(instance)
    due = next_timer(instance)
    return Effects(instance, instance, runnable, due, runnable, due)
