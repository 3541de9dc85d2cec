"""``effects``: what a transition decided, computed once, equal to asking the engine again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hephaestus_django.core import engine
from hephaestus_django.core.effects import effects, unchanged
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.instance import evolve
from hephaestus_django.core.outcomes import Event
from hephaestus_django.core.steps import Wait
from tests import flows

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_new_instance_makes_its_start_step_runnable() -> None:
    started = engine.start(engine.new_instance(flows.FanOut, {}))
    done = effects(None, started)
    assert done.changed
    assert done.newly_runnable == done.runnable == {flows.Split}
    assert done.due is None
    assert done.due_moved


def test_a_fan_out_makes_its_branches_newly_runnable() -> None:
    before = engine.start(engine.new_instance(flows.FanOut, {}))
    after = engine.apply(before, [Executed(flows.Split, outcome=Event("ok"))], now=NOW)
    done = effects(before, after)
    assert done.runnable == engine.runnable_steps(after)
    assert done.runnable_before == engine.runnable_steps(before)
    assert done.newly_runnable == {flows.Pack, flows.Charge, flows.Notify}
    assert not done.due_moved


def test_a_timer_is_reported_with_its_due_time_and_survives_a_lease() -> None:
    before = engine.start(engine.new_instance(flows.Timed, {}))
    after = engine.apply(before, [Executed(flows.Approve, outcome=Event("ok"))], now=NOW)
    after = engine.apply(
        after,
        [
            Executed(
                Wait,
                outcome=Wait().execute(after, {"duration": 5, "unit": "minutes"}, after.context),
            )
        ],
        now=NOW,
    )
    done = effects(before, after)
    assert done.due == engine.next_due_time(after) == NOW + timedelta(minutes=5)
    assert done.due_moved
    assert not done.newly_runnable
    leased = evolve(after, lease_owner="queued:x", lease_expires_at=NOW)
    assert done.settled(leased).after is leased
    assert done.settled(leased).due == done.due


def test_no_change_makes_nothing_new() -> None:
    instance = engine.start(engine.new_instance(flows.FanOut, {}))
    done = unchanged(instance)
    assert effects(instance, instance) == done
    assert not done.changed
    assert not done.newly_runnable
    assert not done.due_moved
