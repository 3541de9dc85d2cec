"""Concurrency slots under any interleaving (hypothesis, on InMemoryStorage).

Every slot operation is atomic under the storage's lock, so any interleaving of the runners
and workers of several processes is a sequence of them. For any sequence of admissions (of
several instances, limits, keys and priorities), releases, lease renewals, deletions, lapses
of time (holders whose worker died) and sweeps:

- the live holders of a limit and key never outnumber the limit;
- a request admitted holds its slot: asking again keeps it, whoever waits;
- nobody waits for ever: releasing the holders (and sweeping, for lapsed ones) admits every
  waiter whose instance still runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import evolve
from hephaestus_django.runtime import InMemoryStorage
from tests.support.flow_control import LimitedFlow
from tests.timers import Clock

LEASE = timedelta(seconds=30)
LIMITS = {"gateway": 2, "mail": 1, "partner": 3}
KEYS = ["", "acme", "globex"]
INSTANCES = 6
STEPS = ["a", "b"]

_slot = st.tuples(
    st.integers(0, INSTANCES - 1),
    st.sampled_from(STEPS),
    st.sampled_from(sorted(LIMITS)),
    st.sampled_from(KEYS),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), _slot, st.integers(-1, 2)),
        st.tuples(st.just("release"), _slot),
        st.tuples(st.just("renew"), st.integers(0, INSTANCES - 1)),
        st.tuples(st.just("delete"), st.integers(0, INSTANCES - 1)),
        st.tuples(st.just("advance"), st.integers(1, 40)),
        st.tuples(
            st.just("sweep"),
        ),
    ),
    max_size=60,
)


def request(name: str, key: str) -> SlotRequest:
    return SlotRequest(name, key, LIMITS[name])


def holding_within_limits(storage: InMemoryStorage) -> None:
    for use in storage.limits():
        assert use.holding <= LIMITS[use.name], use


@settings(max_examples=300, deadline=None)
@given(operations)
def test_holders_never_outnumber_the_limit_and_nobody_waits_for_ever(
    ops: list[tuple[Any, ...]],
) -> None:
    clock = Clock()
    storage = InMemoryStorage(clock=clock)
    ids = []
    for n in range(INSTANCES):
        instance = engine.start(engine.new_instance(LimitedFlow, {}))
        instance = evolve(instance, lease_owner=f"owner-{n}", lease_expires_at=clock() + LEASE)
        storage.put(instance)
        ids.append(instance.id)
    for op in ops:
        kind = op[0]
        if kind == "admit":
            (index, step, name, key), priority = op[1], op[2]
            admitted = storage.admit(
                ids[index], step, request(name, key), priority=priority, lease=LEASE
            )
            if admitted:  # it holds the slot: asking again keeps it, whatever waits
                assert storage.admit(ids[index], step, request(name, key), priority=-5, lease=LEASE)
        elif kind == "release":
            index, step, name, key = op[1]
            storage.release(ids[index], step, request(name, key), lease=LEASE)
        elif kind == "renew":
            storage.renew(ids[op[1]], f"owner-{op[1]}", LEASE)
        elif kind == "delete":
            storage.delete(ids[op[1]])
        elif kind == "advance":
            clock.advance(seconds=op[1])
        else:
            storage.admit_waiting(lease=LEASE)
        holding_within_limits(storage)

    # Everyone in line is served once the holders give their slots back.
    for _ in range(INSTANCES * len(STEPS) * len(LIMITS) * len(KEYS) + 2):
        waiting = sum(use.waiting for use in storage.limits())
        if not waiting:
            break
        clock.advance(seconds=LEASE.total_seconds() + 1)  # every holder lapses
        storage.admit_waiting(lease=LEASE)
        holding_within_limits(storage)
    assert sum(use.waiting for use in storage.limits()) == 0
