"""Database time: processes whose clocks are off by an hour agree on leases and timers.

Each "process" here is a runner or a worker whose storage measures the database's time
against the clock of that process, an hour ahead of the database or behind it. Leases, claims and
timers must follow the database's clock whatever the process's says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import Done, LocalRunner, Status, Step, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.storage import DjangoStorage, read_database_time
from hephaestus_django.runtime.clock import DatabaseClock
from hephaestus_django.runtime.contract import Storage
from tests import flows
from tests.timers import make_due

pytestmark = pytest.mark.django_db

AN_HOUR = timedelta(hours=1)
ROUND_TRIP = timedelta(seconds=1)


class SkewedProcess(DjangoStorage):
    """The storage as a process whose own clock is ``offset`` away from the database's sees it."""

    def __init__(self, offset: timedelta) -> None:
        super().__init__()
        local: Callable[[], datetime] = lambda: datetime.now(UTC) + offset  # noqa: E731
        self._clock = DatabaseClock(lambda: read_database_time(self.using), local=local)


@pytest.fixture(params=[AN_HOUR, -AN_HOUR], ids=["ahead", "behind"])
def skewed(request: pytest.FixtureRequest) -> DjangoStorage:
    """A process whose clock is an hour ahead of the database's (or behind)."""
    return SkewedProcess(request.param)


class Meanwhile:
    """What a worker pass, run while the step below executes, handled."""

    worker_storage: Storage | None = None
    handled: list[Instance] | None = None


class LookAround(Step):
    """While this step runs (its runner holds the lease), another process's worker passes."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Any, context: Any) -> Any:
        assert Meanwhile.worker_storage is not None
        Meanwhile.handled = LocalRunner().work(storage=Meanwhile.worker_storage)
        return "ok"


class Observed(Workflow):
    start = LookAround
    transitions = {LookAround: {"ok": Done}}


@pytest.mark.parametrize("who_is_off", ["runner", "worker"])
def test_no_worker_takes_over_a_live_lease(skewed: DjangoStorage, who_is_off: str) -> None:
    honest = DjangoStorage()
    runner_storage, worker_storage = (
        (skewed, honest) if who_is_off == "runner" else (honest, skewed)
    )
    Meanwhile.worker_storage, Meanwhile.handled = worker_storage, None
    done = LocalRunner(lease=timedelta(minutes=5)).start(Observed, {}, storage=runner_storage)
    assert Meanwhile.handled == []  # the step's lease was live, by the database's clock
    assert done.status is Status.COMPLETED
    assert [entry.step for entry in done.execution_history] == [LookAround, Done]


def test_a_lapsed_lease_is_taken_over_whatever_the_workers_clock(skewed: DjangoStorage) -> None:
    honest = DjangoStorage()
    # a runner that died; its lease ran out a second ago by the database's clock
    stalled = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    stalled.lease_owner, stalled.lease_expires_at = "dead", honest.now() - timedelta(seconds=1)
    honest.put(stalled)
    (taken,) = LocalRunner().work(storage=skewed)
    assert taken.id == stalled.id
    assert taken.status is Status.COMPLETED


def test_a_timer_fires_when_the_database_says_it_is_due(skewed: DjangoStorage) -> None:
    honest = DjangoStorage()
    before = honest.now()
    timed = LocalRunner().start(flows.Timed, {"script": {}}, storage=skewed)
    (waiting,) = timed.waiting_steps.values()
    assert waiting.resume_at is not None
    # due five minutes from the database's now, not from the runner's clock
    assert before + timedelta(minutes=5) - ROUND_TRIP <= waiting.resume_at
    assert waiting.resume_at <= honest.now() + timedelta(minutes=5) + ROUND_TRIP
    # not early: neither an honest worker nor one whose clock is off fires it
    assert LocalRunner().work(storage=honest) == []
    assert LocalRunner().work(storage=skewed) == []
    # not late: once the database says it is due, a worker whose clock is off fires it
    make_due(honest, timed.id)
    (fired,) = LocalRunner().work(storage=skewed)
    assert fired.id == timed.id
    assert fired.status is Status.COMPLETED


def test_the_storage_clock_is_the_databases(skewed: DjangoStorage) -> None:
    honest = DjangoStorage()
    assert abs(skewed.now() - honest.now()) < ROUND_TRIP
    instance = LocalRunner().start(flows.IfElse, {"script": {}}, storage=skewed)
    assert instance.updated_at is not None
    (entry, *_) = instance.execution_history
    assert abs(entry.timestamp - instance.updated_at) < ROUND_TRIP  # history in database time
