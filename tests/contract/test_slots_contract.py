"""The concurrency slots part of the storage contract (``SlotKeeping``), on every backend."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

import pytest

from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.core.status import Status
from hephaestus_django.runtime.contract import SlotKeeping, Storage
from hephaestus_django.runtime.slots import observe_waits, stop_observing_waits
from tests.support.flow_control import Limited, LimitedFlow

LEASE = timedelta(minutes=5)
STEP = dotted_path(Limited)
TWO = SlotRequest("contract-limit", "", 2)
ONE = SlotRequest("contract-one", "acme", 1)


def running(storage: Storage, **lease: object) -> Instance:
    instance = engine.start(engine.new_instance(LimitedFlow, {}))
    if lease:
        instance = evolve(instance, **lease)
    storage.put(instance)
    return instance


@pytest.fixture
def slots(storage: Storage) -> SlotKeeping:
    assert isinstance(storage, SlotKeeping)
    return storage


def admit(slots: SlotKeeping, instance: Instance, request: SlotRequest, priority: int = 0) -> bool:
    return slots.admit(instance.id, STEP, request, priority=priority, lease=LEASE)


def test_admits_up_to_the_limit_then_lines_up_in_order(storage: Storage, slots: SlotKeeping):
    first, second, third, fourth = (running(storage) for _ in range(4))
    assert admit(slots, first, TWO)
    assert admit(slots, second, TWO)
    assert not admit(slots, third, TWO)
    assert not admit(slots, fourth, TWO)
    assert not admit(slots, third, TWO)  # asked again: keeps its place
    [use] = [use for use in slots.limits() if use.name == TWO.name]
    assert (use.holding, use.waiting, use.limit) == (2, 2, 2)
    assert [place.position for place in slots.places(third.id)] == [1]
    assert [place.position for place in slots.places(fourth.id)] == [2]
    assert slots.places(first.id) == []


def test_an_admitted_step_asking_again_keeps_its_slot(storage: Storage, slots: SlotKeeping):
    holder = running(storage)
    assert admit(slots, holder, ONE)
    assert admit(slots, holder, ONE)
    [use] = [use for use in slots.limits() if use.name == ONE.name]
    assert use.holding == 1


def test_keys_are_limited_apart(storage: Storage, slots: SlotKeeping) -> None:
    acme, globex = running(storage), running(storage)
    assert admit(slots, acme, ONE)
    assert admit(slots, globex, SlotRequest(ONE.name, "globex", 1))


def test_release_admits_the_next_in_line_by_priority_then_age(
    storage: Storage, slots: SlotKeeping
) -> None:
    holder, early, late, urgent = (running(storage) for _ in range(4))
    assert admit(slots, holder, ONE)
    assert not admit(slots, early, ONE)
    assert not admit(slots, late, ONE)
    assert not admit(slots, urgent, ONE, priority=5)
    assert [p.position for p in slots.places(urgent.id)] == [1]
    assert slots.release(holder.id, STEP, ONE, lease=LEASE) == [(urgent.id, STEP)]
    assert slots.release(urgent.id, STEP, ONE, lease=LEASE) == [(early.id, STEP)]
    assert admit(slots, early, ONE)  # admitted for it: asking finds its slot
    assert slots.release(early.id, STEP, ONE, lease=LEASE) == [(late.id, STEP)]
    assert slots.release(late.id, STEP, ONE, lease=LEASE) == []
    assert [use.holding for use in slots.limits() if use.name == ONE.name] in ([], [0])


def test_a_newcomer_waits_behind_the_line(storage: Storage, slots: SlotKeeping) -> None:
    holder, waiter, newcomer = (running(storage) for _ in range(3))
    assert admit(slots, holder, ONE)
    assert not admit(slots, waiter, ONE)
    assert slots.release(holder.id, STEP, ONE, lease=LEASE) == [(waiter.id, STEP)]
    assert not admit(slots, newcomer, ONE)


def test_release_wakes_a_parked_instance(storage: Storage, slots: SlotKeeping) -> None:
    holder = running(storage)
    parked = running(storage, lease_owner="parked:x", lease_expires_at=storage.now() + LEASE)
    assert admit(slots, holder, ONE)
    assert not admit(slots, parked, ONE)
    slots.release(holder.id, STEP, ONE, lease=LEASE)
    woken = storage.get(parked.id)
    assert woken.lease_expires_at is not None
    assert woken.lease_expires_at <= storage.now()
    assert parked.id in {claimed.id for claimed in storage.claim("w", lease=LEASE, limit=100)}


def test_waiters_of_instances_that_no_longer_run_are_passed_over(
    storage: Storage, slots: SlotKeeping
) -> None:
    holder, gone, next_one = (running(storage) for _ in range(3))
    assert admit(slots, holder, ONE)
    assert not admit(slots, gone, ONE)
    assert not admit(slots, next_one, ONE)
    storage.delete(gone.id)
    assert slots.places(gone.id) == []
    assert slots.release(holder.id, STEP, ONE, lease=LEASE) == [(next_one.id, STEP)]


def test_a_lapsed_holder_frees_its_slot_for_the_sweep(storage: Storage, slots: SlotKeeping):
    dead, waiter = running(storage), running(storage)
    assert slots.admit(dead.id, STEP, ONE, priority=0, lease=timedelta(milliseconds=200))
    assert not admit(slots, waiter, ONE)
    time.sleep(0.3)  # past the lease: the holder's worker died
    assert (waiter.id, STEP) in slots.admit_waiting(lease=LEASE)
    assert [use.holding for use in slots.limits() if use.name == ONE.name] == [1]
    assert not admit(slots, dead, ONE)  # the dead holder's step asks again: it waits


def test_renew_extends_the_held_slots_with_the_lease(storage: Storage, slots: SlotKeeping):
    holder = running(storage, lease_owner="me", lease_expires_at=storage.now() + LEASE)
    other = running(storage)
    assert slots.admit(holder.id, STEP, ONE, priority=0, lease=timedelta(milliseconds=200))
    assert storage.renew(holder.id, "me", LEASE)
    time.sleep(0.3)
    assert not admit(slots, other, ONE)
    assert slots.admit_waiting(lease=LEASE) == []


def test_a_renewal_does_not_revive_a_lapsed_holder(storage: Storage, slots: SlotKeeping):
    """A holder whose slot lapsed (its heartbeat stalled past the lease) is free from its expiry
    on: once another holds the slot, the stalled holder's renewal must not make it two."""
    stalled = running(storage, lease_owner="me", lease_expires_at=storage.now() + LEASE)
    other = running(storage)
    assert slots.admit(stalled.id, STEP, ONE, priority=0, lease=timedelta(milliseconds=200))
    time.sleep(0.3)
    assert admit(slots, other, ONE)
    assert storage.renew(stalled.id, "me", LEASE)
    assert [use.holding for use in slots.limits() if use.name == ONE.name] == [1]
    assert not admit(slots, stalled, ONE)  # its step asks again: it waits behind the holder


def test_free_gives_back_every_slot_and_admits_the_next_in_line(
    storage: Storage, slots: SlotKeeping
) -> None:
    gone, first, second, third = (running(storage) for _ in range(4))
    parked = running(storage, lease_owner="parked:x", lease_expires_at=storage.now() + LEASE)
    assert admit(slots, gone, TWO)
    assert admit(slots, first, TWO)
    assert admit(slots, gone, ONE)
    assert not admit(slots, second, TWO)
    assert not admit(slots, third, TWO)
    assert not admit(slots, parked, ONE)
    # The holder of a slot of each limit is cancelled (its instance no longer runs): both go.
    storage.update(gone.id, lambda current: evolve(current, status=Status.CANCELLED))
    assert sorted(map(str, slots.free(gone.id, lease=LEASE))) == sorted(
        map(str, [(second.id, STEP), (parked.id, STEP)])
    )
    use = {use.name: (use.holding, use.waiting) for use in slots.limits()}
    assert use[TWO.name] == (2, 1)  # first and second hold; third waits, first in line
    assert use[ONE.name] == (1, 0)  # the parked waiter took it, and was woken
    assert [place.position for place in slots.places(third.id)] == [1]
    woken = storage.get(parked.id)
    assert woken.lease_expires_at is not None
    assert woken.lease_expires_at <= storage.now()
    # Freed twice (a late release of the same instance): nothing more is given back.
    assert slots.free(gone.id, lease=LEASE) == []
    assert slots.release(gone.id, STEP, TWO, lease=LEASE) == []
    assert {use.name: use.holding for use in slots.limits()}[TWO.name] == 2


def test_free_of_an_instance_without_slots_does_nothing(storage: Storage, slots: SlotKeeping):
    holder, idle = running(storage), running(storage)
    assert admit(slots, holder, ONE)
    assert slots.free(idle.id, lease=LEASE) == []
    assert [use.holding for use in slots.limits() if use.name == ONE.name] == [1]


def test_the_admitted_waiters_wait_is_told_to_the_observers(storage: Storage, slots: SlotKeeping):
    told: list[tuple[str, list[float]]] = []

    def observer(limit: str, seconds: Sequence[float]) -> None:
        told.append((limit, list(seconds)))

    holder, waiter, other = (running(storage) for _ in range(3))
    assert admit(slots, holder, ONE)
    assert not admit(slots, waiter, ONE)
    assert admit(slots, other, TWO)
    observe_waits(observer)
    try:
        time.sleep(0.05)
        slots.release(holder.id, STEP, ONE, lease=LEASE)
        slots.release(other.id, STEP, TWO, lease=LEASE)  # nobody waited: nothing told
    finally:
        stop_observing_waits(observer)
    [(limit, [seconds])] = told
    assert limit == ONE.name
    assert 0.05 <= seconds < 60


# --- rate limits: a released slot is spent, not freed -------------------------------------------

RATE = SlotRequest("rate:contract", "", 2, per=timedelta(milliseconds=300))


def test_a_rate_limits_released_slot_stays_spent_for_its_window(
    storage: Storage, slots: SlotKeeping
) -> None:
    first, second, third = (running(storage) for _ in range(3))
    assert admit(slots, first, RATE)
    assert admit(slots, second, RATE)
    assert not admit(slots, third, RATE)
    assert slots.release(first.id, STEP, RATE, lease=LEASE) == []  # spent, still counted
    assert slots.release(second.id, STEP, RATE, lease=LEASE) == []
    storage.delete(first.id)  # a spent slot outlives its instance
    assert slots.admit_waiting(lease=LEASE) == []
    [use] = [use for use in slots.limits() if use.name == RATE.name]
    assert (use.holding, use.waiting) == (2, 1)
    time.sleep(0.4)  # the window has passed
    assert slots.admit_waiting(lease=LEASE) == [(third.id, STEP)]
    [use] = [use for use in slots.limits() if use.name == RATE.name]
    assert (use.holding, use.waiting) == (1, 0)


def test_a_step_asking_again_for_its_rate_slot_is_not_counted_twice(
    storage: Storage, slots: SlotKeeping
) -> None:
    holder, other = running(storage), running(storage)
    assert admit(slots, holder, RATE)
    assert admit(slots, holder, RATE)  # its job's worker asks again: the same slot
    assert admit(slots, other, RATE)
    slots.release(holder.id, STEP, RATE, lease=LEASE)
    assert not admit(slots, holder, RATE)  # a second execution is a second call: it waits


def test_free_spends_a_rate_limits_holding_slot_and_drops_its_place_in_line(
    storage: Storage, slots: SlotKeeping
) -> None:
    first, second, third, fourth = (running(storage) for _ in range(4))
    assert admit(slots, first, RATE)
    assert admit(slots, second, RATE)
    assert not admit(slots, third, RATE)
    assert not admit(slots, fourth, RATE)
    # The holder is cancelled while its execution runs: that execution counts in its window.
    storage.update(first.id, lambda current: evolve(current, status=Status.CANCELLED))
    assert slots.free(first.id, lease=LEASE) == []
    # A waiter cancelled: its place in line goes (it never executed).
    storage.update(fourth.id, lambda current: evolve(current, status=Status.CANCELLED))
    assert slots.free(fourth.id, lease=LEASE) == []
    [use] = [use for use in slots.limits() if use.name == RATE.name]
    assert (use.holding, use.waiting) == (2, 1)
    storage.delete(first.id)  # the spent slot outlives its instance
    assert slots.admit_waiting(lease=LEASE) == []
    time.sleep(0.4)  # the window has passed
    assert slots.admit_waiting(lease=LEASE) == [(third.id, STEP)]


def test_the_sweep_spends_a_rate_slot_whose_instance_ended_without_its_release(
    storage: Storage, slots: SlotKeeping
) -> None:
    first, second, third = (running(storage) for _ in range(3))
    assert admit(slots, first, RATE)
    assert admit(slots, second, RATE)
    assert not admit(slots, third, RATE)
    storage.update(first.id, lambda current: evolve(current, status=Status.FAILED))
    assert slots.admit_waiting(lease=LEASE) == []  # spent, not forgotten
    [use] = [use for use in slots.limits() if use.name == RATE.name]
    assert (use.holding, use.waiting) == (2, 1)
    time.sleep(0.4)
    assert slots.admit_waiting(lease=LEASE) == [(third.id, STEP)]


def test_free_still_frees_a_concurrency_slot(storage: Storage, slots: SlotKeeping) -> None:
    holder, waiter = running(storage), running(storage)
    assert admit(slots, holder, ONE)
    assert not admit(slots, waiter, ONE)
    storage.update(holder.id, lambda current: evolve(current, status=Status.CANCELLED))
    assert slots.free(holder.id, lease=LEASE) == [(waiter.id, STEP)]
