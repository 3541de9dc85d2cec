"""Moving an instance's timers, for tests: time is the storage's, so tests move the timers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.runtime.contract import Storage


def make_due(
    storage: Storage, instance_id: UUID, *, ago: timedelta = timedelta(seconds=1)
) -> Instance:
    """Rewrite the instance's timers to have come due ``ago`` by the storage's clock."""
    due = storage.now() - ago

    def change(current: Instance) -> Instance:
        waiting = {
            step: replace(entry, resume_at=due) if entry.resume_at is not None else entry
            for step, entry in current.waiting_steps.items()
        }
        return evolve(current, waiting_steps=waiting)

    return storage.update(instance_id, change)


class Clock:
    """A storage clock a test moves by hand (``InMemoryStorage(clock=Clock())``): the clock
    every lease and timer is measured by."""

    def __init__(self, now: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
