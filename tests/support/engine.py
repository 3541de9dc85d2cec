"""The pure engine driven as a runner drives it, minus threads and storage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hephaestus_django import Event, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.outcomes import read_outcome

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def run_waves(instance: Instance, now: datetime = NOW) -> Instance:
    """What a runner does, minus threads and storage."""
    while activations := engine.runnable(instance):
        results = []
        for activation in activations:
            step, compensating = activation.step, activation.compensating
            try:
                if compensating:
                    step().compensate(instance, activation.config, instance.context)
                    outcome: Any = Event(engine.COMPENSATED)
                else:
                    returned = step().execute(instance, activation.config, instance.context)
                    outcome = read_outcome(step, returned)
                results.append(Executed(step, outcome=outcome, compensating=compensating))
            except Exception as error:
                results.append(Executed(step, error=error, compensating=compensating))
        instance = engine.apply(instance, results, now=now)
    return instance


def started(
    workflow: type[Workflow], script: dict[str, str] | None = None, **initial: Any
) -> Instance:
    fresh = engine.new_instance(workflow, {"script": script or {}, **initial})
    return run_waves(engine.start(fresh))
