"""Debounced starts through the public API, in memory, with both runners and a clock the test
moves: starts with one key coalesce into one instance with the last context, started by the
worker once the window was quiet, or at ``max_wait``. PostgreSQL and real processes:
tests/integration/test_debounce_django.py and tests/processes/test_debounce_processes.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Context,
    Debounce,
    DebounceError,
    Done,
    Event,
    Instance,
    SerializationError,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.verbs import Runner
from hephaestus_django.runtime.worker import Worker


class Sync(Step):
    events = ("done",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("done", dict(context.initial))


class SyncCustomer(Workflow):
    start = Sync
    transitions = {Sync: {"done": Done}}


class Approved(WaitForEvent):
    events = ("received",)


class Approval(Workflow):
    start = Approved
    transitions = {Approved: {"received": Done}}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 1, 6, 12, 0, tzinfo=UTC))


@pytest.fixture
def storage(clock: Clock) -> InMemoryStorage:
    return InMemoryStorage(clock=clock)


@pytest.fixture(params=["local", "queued"])
def runner(
    request: pytest.FixtureRequest, storage: InMemoryStorage
) -> Iterator[tuple[Runner, Any]]:
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


def work(runner: tuple[Runner, Any], storage: InMemoryStorage) -> None:
    run, drain = runner
    Worker({"default": storage}, run).run_once()
    drain()


WINDOW = timedelta(seconds=5)


def test_starts_in_the_window_coalesce_into_one_instance_with_the_last_context(
    runner: tuple[Runner, Any], storage: InMemoryStorage, clock: Clock
) -> None:
    ids = []
    for n in range(5):
        ids.append(SyncCustomer.start({"n": n}, key="customer-1", debounce=WINDOW))
        clock.advance(3)  # never quiet for 5 seconds
        work(runner, storage)
    assert len(set(ids)) == 1
    assert storage.query() == []
    clock.advance(2)  # quiet for 5 seconds since the last start
    work(runner, storage)
    work(runner, storage)
    [instance] = storage.query()
    assert instance.id == ids[0]
    assert instance.business_key == "customer-1"
    assert instance.status is Status.COMPLETED
    assert instance.context.initial == {"n": 4}
    # the next start opens a new window, with a new id
    later = SyncCustomer.start({"n": 5}, key="customer-1", debounce=Debounce(WINDOW))
    assert later != ids[0]
    clock.advance(5)
    work(runner, storage)
    assert {i.id for i in storage.query()} == {ids[0], later}


def test_other_keys_and_workflows_have_windows_of_their_own(
    runner: tuple[Runner, Any], storage: InMemoryStorage, clock: Clock
) -> None:
    a = SyncCustomer.start({"n": 1}, key="a", debounce=5)
    b = SyncCustomer.start({"n": 2}, key="b", debounce=60)
    assert a != b
    clock.advance(5)
    work(runner, storage)
    assert [i.id for i in storage.query()] == [a]
    clock.advance(55)
    work(runner, storage)
    assert sorted(i.context.initial["n"] for i in storage.query()) == [1, 2]


def test_max_wait_starts_a_stream_that_is_never_quiet(
    runner: tuple[Runner, Any], storage: InMemoryStorage, clock: Clock
) -> None:
    spec = Debounce(timedelta(seconds=5), max_wait=timedelta(seconds=20))
    first = SyncCustomer.start({"n": 0}, key="busy", debounce=spec)
    for n in range(1, 7):  # a start every 3 seconds, up to 18 seconds in
        clock.advance(3)
        assert SyncCustomer.start({"n": n}, key="busy", debounce=spec) == first
        work(runner, storage)
    assert storage.query() == []
    clock.advance(3)  # 21 seconds in: due since 20, and not taken yet, so this one joins
    assert SyncCustomer.start({"n": 7}, key="busy", debounce=spec) == first
    work(runner, storage)
    [instance] = storage.query(id=first)
    assert instance.context.initial == {"n": 7}
    assert instance.status is Status.COMPLETED
    clock.advance(3)  # taken: the stream opens a new window
    assert SyncCustomer.start({"n": 8}, key="busy", debounce=spec) != first


def test_a_key_held_when_due_drops_the_pending_start(
    runner: tuple[Runner, Any], storage: InMemoryStorage, clock: Clock
) -> None:
    holder = Approval.start({"n": 0}, key="held")
    work(runner, storage)
    pending = Approval.start({"n": 1}, key="held", debounce=WINDOW)
    clock.advance(5)
    work(runner, storage)
    assert [i.id for i in storage.query()] == [holder]  # waiting, it holds the key
    assert pending != holder
    assert storage.due_starts(10) == []  # dropped, not tried again at every pass


@pytest.mark.parametrize(
    ("debounce", "said"),
    [
        (timedelta(0), "above zero"),
        (timedelta(seconds=-1), "above zero"),
        (0, "above zero"),
        (float("nan"), "out of range"),
        (float("inf"), "out of range"),
        (True, "must be a timedelta"),
        ("5s", "must be a timedelta"),
        (timedelta(days=8), "at most 7 days"),
        (Debounce, "must be a timedelta"),
    ],
)
def test_bad_windows_are_refused_and_write_nothing(
    storage: InMemoryStorage, debounce: Any, said: str
) -> None:
    configure(storages={"default": storage}, runner=LocalRunner())
    try:
        with pytest.raises(DebounceError, match=said):
            SyncCustomer.start({}, key="k", debounce=debounce)
    finally:
        configure()
    assert storage.due_starts(10) == []


def test_a_max_wait_shorter_than_the_window_is_refused() -> None:
    with pytest.raises(DebounceError, match=r"max_wait .* is shorter than the debounce window"):
        Debounce(timedelta(seconds=10), max_wait=timedelta(seconds=5))
    with pytest.raises(DebounceError, match="max_wait must be above zero"):
        Debounce(timedelta(seconds=10), max_wait=timedelta(0))


def test_a_debounce_without_a_key_or_with_an_id_is_refused(
    storage: InMemoryStorage, clock: Clock
) -> None:
    configure(storages={"default": storage}, runner=LocalRunner())
    try:
        with pytest.raises(DebounceError, match="SyncCustomer needs a business key"):
            SyncCustomer.start({}, debounce=WINDOW)
        with pytest.raises(DebounceError, match="cannot choose its id"):
            SyncCustomer.start({}, key="k", id="6f1c1c8e-7a55-4c1e-9a51-0b2a1f7c9d10", debounce=5)
        with pytest.raises(SerializationError):
            SyncCustomer.start({"lock": object()}, key="k", debounce=WINDOW)
    finally:
        configure()
    clock.advance(3600)
    assert storage.due_starts(10) == []


def test_astart_debounces_too(storage: InMemoryStorage, clock: Clock) -> None:
    async def caller() -> tuple[Any, Any]:
        first = await SyncCustomer.astart({"n": 1}, key="k", debounce=WINDOW)
        second = await SyncCustomer.astart({"n": 2}, key="k", debounce=WINDOW)
        return first, second

    configure(storages={"default": storage}, runner=LocalRunner())
    try:
        first, second = asyncio.run(caller())
    finally:
        configure()
    assert first == second
    clock.advance(5)
    [due] = storage.due_starts(10)
    assert due.instance_id == first
    assert due.context == {"n": 2}
