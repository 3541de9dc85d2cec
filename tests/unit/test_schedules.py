"""Schedules through the public API: the worker starts each tick once, by the missed-ticks
policy, with both runners; pause, resume, trigger and backfill (in-memory storage, a clock the
test moves). The same with PostgreSQL and real processes: tests/integration/test_schedules_django.py
and tests/processes/test_schedule_race.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import Context, Done, Event, Instance, Status, Step, Workflow
from hephaestus_django.core.errors import ScheduleError
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.schedules import Schedule, Scheduler, schedule_problems, tick_id
from hephaestus_django.runtime.verbs import Runner
from hephaestus_django.runtime.worker import Worker


class Report(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("done", {"tick": instance.runtime_metadata["schedule"]["tick"]})


class Nightly(Workflow):
    start = Report
    transitions = {Report: {"done": Done}}


class Clock:
    """The storage's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


START = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # a Monday, noon


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def storage(clock: Clock) -> InMemoryStorage:
    return InMemoryStorage(clock=clock)


@pytest.fixture(params=["local", "queued"])
def runner(
    request: pytest.FixtureRequest, storage: InMemoryStorage
) -> Iterator[tuple[Runner, Any]]:
    """Each runner, with the drain that runs a queued runner's jobs (nothing for LocalRunner)."""
    if request.param == "local":
        local = LocalRunner()
        configure(storages={"default": storage}, runner=local)
        yield local, lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        queued = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=queued)
        yield queued, dispatcher.drain
        queued.close()
    configure()


def nightly(**options: Any) -> Schedule:
    return Schedule(
        name=options.pop("name", "nightly"),
        workflow=Nightly.path(),
        cron=options.pop("cron", "0 2 * * *"),
        timezone=options.pop("timezone", "Europe/Berlin"),
        context=options.pop("context", {"kind": "daily"}),
        **options,
    )


def started(storage: InMemoryStorage) -> list[Instance]:
    return storage.query(workflow=Nightly)


def pass_at(worker: Worker, clock: Clock, when: datetime, drain: Any) -> None:
    clock.now = when
    worker.run_once()
    drain()


def test_each_tick_starts_once_however_many_workers_pass(
    runner: tuple[Runner, Any], clock: Clock, storage: InMemoryStorage
) -> None:
    run, drain = runner
    workers = [
        Worker({"default": storage}, run, scheduler=Scheduler([nightly()], run)) for _ in range(3)
    ]
    for worker in workers:  # the schedule is first seen at noon: ticks count from then
        pass_at(worker, clock, START, drain)
    assert started(storage) == []
    tick = datetime(2025, 1, 7, 1, 0, tzinfo=UTC)  # 02:00 in Berlin
    for minute in range(3):
        for worker in workers:
            pass_at(worker, clock, tick + timedelta(minutes=minute), drain)
    [instance] = started(storage)
    assert instance.id == tick_id("nightly", tick)
    assert instance.business_key == "schedule:nightly:2025-01-07T02:00:00+01:00"
    assert instance.status is Status.COMPLETED
    assert instance.context.initial == {"kind": "daily"}
    assert instance.context.steps["report"] == {"tick": "2025-01-07T02:00:00+01:00"}


@pytest.mark.parametrize(
    ("missed", "limit", "expected"),
    [("skip", 10, [9]), ("catch_up", 10, [7, 8, 9]), ("catch_up", 2, [8, 9])],
)
def test_a_worker_down_across_three_ticks_keeps_the_policy(
    runner: tuple[Runner, Any],
    clock: Clock,
    storage: InMemoryStorage,
    missed: str,
    limit: int,
    expected: list[int],
) -> None:
    run, drain = runner
    schedule = nightly(missed=missed, catch_up_limit=limit)
    worker = Worker({"default": storage}, run, scheduler=Scheduler([schedule], run))
    pass_at(worker, clock, START, drain)
    # no worker runs on the 7th, 8th and 9th at 02:00; one comes back on the 9th at 08:00
    pass_at(worker, clock, datetime(2025, 1, 9, 7, 0, tzinfo=UTC), drain)
    pass_at(worker, clock, datetime(2025, 1, 9, 7, 1, tzinfo=UTC), drain)
    days = sorted(i.runtime_metadata["schedule"]["tick"][8:10] for i in started(storage))
    assert days == [f"{day:02d}" for day in expected]
    assert all(i.status is Status.COMPLETED for i in started(storage))


def test_paused_ticks_never_run_and_resuming_counts_from_then() -> None:
    run = LocalRunner()
    clock = Clock(START)
    storage = InMemoryStorage(clock=clock)
    scheduler = Scheduler([nightly()], run)
    worker = Worker({"default": storage}, run, scheduler=scheduler)
    worker.run_once()
    assert scheduler.pause("nightly", storage) is True
    assert scheduler.pause("nightly", storage) is False
    clock.now = datetime(2025, 1, 8, 12, 0, tzinfo=UTC)
    worker.run_once()
    assert started(storage) == []
    assert scheduler.resume("nightly", storage) is True
    worker.run_once()
    assert started(storage) == []  # the 7th and 8th fell while paused
    [state] = scheduler.states("default", storage).values()
    assert not state.paused
    assert state.since == clock.now
    assert state.last_tick is None
    clock.now = datetime(2025, 1, 9, 1, 0, tzinfo=UTC)
    worker.run_once()
    [instance] = started(storage)
    assert instance.runtime_metadata["schedule"]["tick"].startswith("2025-01-09T02:00")


def test_trigger_starts_now_and_leaves_the_ticks_alone() -> None:
    run = LocalRunner()
    clock = Clock(START)
    storage = InMemoryStorage(clock=clock)
    scheduler = Scheduler([nightly()], run)
    first = scheduler.trigger("nightly", storage)
    clock.now = START + timedelta(seconds=1)
    second = scheduler.trigger("nightly", storage)
    assert first.new
    assert second.new
    assert first.instance_id != second.instance_id
    assert len(started(storage)) == 2
    with pytest.raises(ScheduleError, match=r"no schedule named 'nope'.*'nightly'"):
        scheduler.trigger("nope", storage)


def test_backfill_starts_each_tick_of_a_range_once(
    runner: tuple[Runner, Any], clock: Clock, storage: InMemoryStorage
) -> None:
    run, drain = runner
    scheduler = Scheduler([nightly()], run)
    begin, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 4, 1, 0, tzinfo=UTC)
    first = scheduler.backfill("nightly", storage, begin, end)
    drain()
    again = scheduler.backfill("nightly", storage, begin, end)
    assert [s.tick.day for s in first] == [1, 2, 3, 4]
    assert all(s.new for s in first)
    assert not any(s.new for s in again)
    assert len(started(storage)) == 4
    with pytest.raises(ScheduleError, match="not a range in the past"):
        scheduler.backfill("nightly", storage, end, begin)
    with pytest.raises(ScheduleError, match="not a range in the past"):
        scheduler.backfill("nightly", storage, begin, START + timedelta(days=1))
    with pytest.raises(ScheduleError, match="time zone"):
        scheduler.backfill("nightly", storage, datetime(2025, 1, 1), end)
    every_minute = Scheduler([nightly(cron="* * * * *")], run)
    with pytest.raises(ScheduleError, match="more than 1000 ticks"):
        every_minute.backfill("nightly", storage, begin, end)
    assert len(started(storage)) == 4  # a refused backfill starts nothing


def test_a_tick_whose_key_is_held_returns_the_running_instance() -> None:
    """A KEY without the tick, under the "active" scope: no second run while one is live."""

    class Slow(Step):
        events = ("done",)

        def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
            raise RuntimeError("stays failed: a failed instance keeps its key")

    class Holding(Workflow):
        start = Slow
        transitions = {Slow: {"done": Done}}

    run = LocalRunner()
    clock = Clock(START)
    storage = InMemoryStorage(clock=clock)
    schedule = Schedule("hourly", Holding.path(), "0 * * * *", key="hourly-report")
    scheduler = Scheduler([schedule], run)
    scheduler.run_due("default", storage)
    for hour in (1, 2):
        clock.now = START + timedelta(hours=hour)
        scheduler.run_due("default", storage)
    [instance] = storage.query(workflow=Holding)
    assert instance.status is Status.FAILED


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "every night"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"workflow": "nowhere.Nightly"}, "workflow"),
        ({"context": {"when": object()}}, "context"),
        ({"context": ["not", "a", "dict"]}, "context"),
        ({"key": "{nope}"}, "key"),
        ({"key": ""}, "key"),
        ({"missed": "later"}, "missed"),
        ({"catch_up_limit": 0}, "missed"),
    ],
)
def test_schedule_problems_name_what_is_wrong(change: dict[str, Any], kind: str) -> None:
    base = {"name": "nightly", "workflow": Nightly.path(), "cron": "0 2 * * *"}
    problems = schedule_problems(Schedule(**{**base, **change}))
    assert [found[0] for found in problems] == [kind]
    assert "'nightly'" in problems[0][1]
    assert problems[0][2]


def test_a_good_schedule_has_no_problems() -> None:
    assert schedule_problems(nightly(key="report-{tick:%Y-%m-%d}", missed="catch_up")) == []


def test_a_broken_schedule_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    run = LocalRunner()
    clock = Clock(START)
    storage = InMemoryStorage(clock=clock)
    broken = nightly(name="broken", key="{tick.nope}")
    scheduler = Scheduler([broken, nightly()], run)
    scheduler.run_due("default", storage)
    clock.now = datetime(2025, 1, 7, 1, 0, tzinfo=UTC)
    scheduler.run_due("default", storage)
    [instance] = started(storage)
    assert instance.runtime_metadata["schedule"]["name"] == "nightly"
    assert "schedule 'broken'" in caplog.text


def test_daylight_saving_changes_as_the_guide_says() -> None:
    schedule = nightly(cron="30 2 * * *")
    autumn = schedule.ticks_between(
        datetime(2025, 10, 25, 12, tzinfo=UTC), datetime(2025, 10, 26, 12, tzinfo=UTC)
    )
    assert [tick.isoformat() for tick in autumn] == [
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:30:00+01:00",
    ]
    assert len({tick_id("nightly", tick) for tick in autumn}) == 2
    spring = schedule.ticks_between(
        datetime(2025, 3, 29, 12, tzinfo=UTC), datetime(2025, 3, 30, 12, tzinfo=UTC)
    )
    assert [tick.isoformat() for tick in spring] == ["2025-03-30T03:00:00+02:00"]
