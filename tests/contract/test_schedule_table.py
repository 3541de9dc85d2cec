"""The schedules' shared state (``ScheduleTable``), the same on every storage."""

from __future__ import annotations

from datetime import timedelta

from hephaestus_django.runtime.contract import ScheduleTable, Storage


def table(storage: Storage) -> ScheduleTable:
    assert isinstance(storage, ScheduleTable)
    return storage


def test_a_schedule_gets_a_record_counting_from_now_once(storage: Storage) -> None:
    before = storage.now()
    first = table(storage).schedule_states(["a", "b"])
    again = table(storage).schedule_states(["b", "a"])
    assert set(first) == {"a", "b"}
    assert first == again
    state = first["a"]
    assert state.name == "a"
    assert not state.paused
    assert state.last_tick is None
    assert before - timedelta(seconds=5) <= state.since <= storage.now() + timedelta(seconds=5)
    assert table(storage).schedule_states([]) == {}


def test_the_last_tick_only_moves_forward(storage: Storage) -> None:
    table(storage).schedule_states(["a"])
    tick = storage.now()
    assert table(storage).advance_schedule("a", tick, tick + timedelta(days=1))
    assert not table(storage).advance_schedule("a", tick, None)
    assert not table(storage).advance_schedule("a", tick - timedelta(days=1), None)
    state = table(storage).schedule_states(["a"])["a"]
    assert state.last_tick == tick
    assert state.next_due == tick + timedelta(days=1)
    assert not table(storage).advance_schedule("unknown", tick, None)


def test_pausing_and_resuming(storage: Storage) -> None:
    made = table(storage).schedule_states(["a"])["a"]
    assert table(storage).pause_schedule("a", True, None)
    assert not table(storage).pause_schedule("a", True, None)
    paused = table(storage).schedule_states(["a"])["a"]
    assert paused.paused
    assert paused.since == made.since
    assert table(storage).pause_schedule("a", False, None)
    resumed = table(storage).schedule_states(["a"])["a"]
    assert not resumed.paused
    assert resumed.since >= made.since
    assert table(storage).pause_schedule("new", True, None)  # a record is made for it
    assert table(storage).schedule_states(["new"])["new"].paused


def test_the_records_of_schedules_not_kept_are_forgotten(storage: Storage) -> None:
    table(storage).schedule_states(["a", "b", "c"])
    assert sorted(table(storage).forget_schedules(["a", "zz"])) == ["b", "c"]
    assert table(storage).forget_schedules(["a"]) == []
    assert sorted(table(storage).forget_schedules([])) == ["a"]
    made = table(storage).schedule_states(["b"])["b"]  # configured again: a fresh record
    assert made.last_tick is None
    assert not made.paused
