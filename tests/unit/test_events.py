"""The runtime's lifecycle events (no Django): listeners, their errors, their cost."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from hephaestus_django.core import engine
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, configure, events
from tests import flows


@pytest.fixture
def storage() -> Iterator[InMemoryStorage]:
    storage = InMemoryStorage()
    runner = LocalRunner()
    configure(storages={"default": storage}, runner=runner)
    yield storage
    runner.close()
    configure()


def test_listeners_get_each_writes_events_in_order(storage: InMemoryStorage) -> None:
    got: list[list[str]] = []

    def listener(found: Sequence[events.LifecycleEvent]) -> None:
        got.append([event.name for event in found])

    events.add_listener(listener)
    events.add_listener(listener)  # once only
    try:
        flows.IfElse.start({"script": {}})
    finally:
        events.remove_listener(listener)
    assert got == [
        ["instance_started"],
        ["step_completed"],
        ["step_completed"],
        ["step_completed", "step_completed", "instance_completed"],
    ]


def test_a_listener_that_raises_is_logged_and_the_others_go_on(
    storage: InMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str] = []

    def broken(found: Sequence[events.LifecycleEvent]) -> None:
        raise RuntimeError("listener down")

    def working(found: Sequence[events.LifecycleEvent]) -> None:
        got.extend(event.name for event in found)

    events.add_listener(broken)
    events.add_listener(working)
    try:
        instance_id = flows.IfElse.start({"script": {}})
    finally:
        events.remove_listener(broken)
        events.remove_listener(working)
    assert storage.get(instance_id).status.value == "completed"
    assert got[-1] == "instance_completed"
    records = [r for r in caplog.records if r.name == "hephaestus_django.events"]
    assert len(records) == 4
    assert records[0].exc_info is not None
    assert records[0].instance_id == str(instance_id)  # type: ignore[attr-defined]


def test_without_listeners_nothing_is_computed(
    storage: InMemoryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "_listeners", ())
    monkeypatch.setattr(events, "_interest", ())

    def fail(*args: object, **kwargs: object) -> list[events.LifecycleEvent]:
        raise AssertionError("changes() computed without a listener")

    monkeypatch.setattr(events, "changes", fail)
    flows.IfElse.start({"script": {}})


def test_a_takeover_of_a_stalled_instance_and_a_timers_lag() -> None:
    """The events the metrics need, which are no Django signal."""
    instance = engine.start(engine.new_instance(flows.Timed, {"script": {}}))
    found = events.changes(instance, instance)
    assert found == []
    taken = events.changes(instance, instance.__class__(**vars(instance)), taken_over=True)
    assert [event.name for event in taken] == ["instance_taken_over"]
    assert taken[0].steps == (flows.Approve,)  # type: ignore[attr-defined]


def test_a_listener_that_wants_nothing_now_costs_no_computation(
    storage: InMemoryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Django signals' listener without a receiver: the events are not computed."""
    got: list[str] = []
    wanted = [False]

    def listener(found: Sequence[events.LifecycleEvent]) -> None:
        got.extend(event.name for event in found)

    monkeypatch.setattr(events, "_listeners", ())
    monkeypatch.setattr(events, "_interest", ())
    monkeypatch.setattr(events, "_wanted", {})
    events.add_listener(listener, wants=lambda: wanted[0])
    flows.IfElse.start({"script": {}})
    assert got == []
    wanted[0] = True
    flows.IfElse.start({"script": {}})
    assert got[0] == "instance_started"
    assert got[-1] == "instance_completed"
