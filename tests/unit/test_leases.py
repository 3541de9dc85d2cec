"""Leases: one runner executes an instance's steps; a dead runner's steps are taken over."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import Done, Status, Step, Workflow
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, bounded
from hephaestus_django.runtime.leases import new_owner
from tests import flows
from tests.timers import Clock

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class ProcessDied(BaseException):
    """Stands in for kill -9: not an Exception, so nothing records it as a step failure."""


def test_each_drive_has_its_own_owner_token() -> None:
    assert new_owner() != new_owner()


def test_a_runner_holds_the_lease_only_while_steps_are_runnable() -> None:
    storage = InMemoryStorage()
    seen: list[tuple[str | None, Status]] = []

    class Look(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            stored = storage.get(instance.id)
            seen.append((stored.lease_owner, stored.status))
            return "ok"

    class Looking(Workflow):
        start = Look
        transitions = {Look: {"ok": Done}}

    done = LocalRunner().start(Looking, {}, storage=storage)
    ((owner, status),) = seen
    assert owner is not None
    assert status is Status.RUNNING
    assert done.lease_owner is None
    assert storage.get(done.id).lease_owner is None


def test_a_resume_while_another_runner_executes_leaves_the_steps_to_it() -> None:
    clock = Clock(T0)
    storage = InMemoryStorage(clock=clock)
    runner = LocalRunner()
    instance = runner.start(flows.TwoWaits, {"script": {}}, storage=storage)
    instance = runner.resume(instance.id, "paid", storage=storage)
    # pretend another runner is executing this instance right now
    instance.lease_owner, instance.lease_expires_at = "busy-runner", T0 + timedelta(minutes=5)
    storage.put(instance)

    after = runner.resume(instance.id, "signed", storage=storage)
    assert after.lease_owner == "busy-runner"
    assert after.status is Status.RUNNING  # Join is runnable, but not ours to run
    assert flows.executions(instance.id).get("join") is None

    # the busy runner dies; once its lease lapses a worker runs the join
    clock.now = T0 + timedelta(minutes=6)
    (taken,) = LocalRunner().work(storage=storage)
    assert taken.status is Status.COMPLETED
    assert flows.executions(instance.id)["join"] == 1


def test_a_dead_runners_steps_run_again_after_its_lease_lapses() -> None:
    clock = Clock(T0)
    storage = InMemoryStorage(clock=clock)
    attempts: list[int] = []

    class Fragile(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            attempts.append(1)
            if len(attempts) == 1:
                raise ProcessDied
            return "ok"

    class Crashy(Workflow):
        start = Fragile
        transitions = {Fragile: {"ok": Done}}

    with pytest.raises(ProcessDied):
        LocalRunner(lease=60).start(Crashy, {}, storage=storage)
    (stalled,) = storage.query()
    assert stalled.status is Status.RUNNING
    assert stalled.lease_owner is not None

    assert LocalRunner().work(storage=storage) == []  # lease still live
    clock.now = T0 + timedelta(seconds=61)
    (recovered,) = LocalRunner().work(storage=storage)
    assert recovered.status is Status.COMPLETED
    assert len(attempts) == 2  # at least once: the step ran again


class RecordingRenewals(InMemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[str] = []
        self.renewed_twice = threading.Event()

    def renew(self, instance_id: Any, owner: str, lease: timedelta) -> bool:
        self.renewals.append(owner)
        if len(self.renewals) >= 2:
            self.renewed_twice.set()
        return super().renew(instance_id, owner, lease)


def test_a_long_step_keeps_its_lease_alive() -> None:
    storage = RecordingRenewals()

    class Long(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            # Returns once the heartbeat has renewed the lease twice (never, without one).
            assert storage.renewed_twice.wait(timeout=30), "the lease was never renewed"
            return "ok"

    class Patient(Workflow):
        start = Long
        transitions = {Long: {"ok": Done}}

    runner = LocalRunner(lease=0.15)
    done = runner.start(Patient, {}, storage=storage)
    assert done.status is Status.COMPLETED
    assert len(set(storage.renewals)) == 1


def test_close_stops_the_heartbeat_and_it_restarts_when_needed() -> None:
    storage = RecordingRenewals()
    runner = LocalRunner(lease=0.15)
    instance = runner.start(flows.IfElse, {"script": {}}, storage=storage)
    with runner._heartbeat.held(storage, instance.id, "me"):
        assert storage.renewed_twice.wait(timeout=30)
        beating = runner._heartbeat._thread
    assert beating is not None
    runner.close()
    assert not beating.is_alive()
    with runner._heartbeat.held(storage, instance.id, "me"):
        again = runner._heartbeat._thread
        assert again is not None
        assert again.is_alive()
    runner.close()
    assert not again.is_alive()


def test_an_idle_heartbeat_ends_its_thread_closing_its_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once no lease is left the thread ends by itself, running the thread-exit hooks (the
    Django app's: close the thread's connections), and the next lease held starts a new one."""
    ended: list[str] = []
    monkeypatch.setattr(
        bounded, "_exit_hooks", [lambda: ended.append(threading.current_thread().name)]
    )
    storage = RecordingRenewals()
    runner = LocalRunner(lease=0.15)
    instance = runner.start(flows.IfElse, {"script": {}}, storage=storage)
    with runner._heartbeat.held(storage, instance.id, "me"):
        assert storage.renewed_twice.wait(timeout=30)
        beating = runner._heartbeat._thread
    assert beating is not None
    beating.join(timeout=30)  # nothing to renew any more: it ends without close()
    assert not beating.is_alive()
    assert ended == ["hephaestus-heartbeat"]
    storage.renewals.clear()
    storage.renewed_twice.clear()
    with runner._heartbeat.held(storage, instance.id, "me"):
        assert storage.renewed_twice.wait(timeout=30)  # renewed by a new thread
        assert runner._heartbeat._thread is not beating
    runner.close()
    assert ended == ["hephaestus-heartbeat"] * 2


class RenewalAfterTheWrite(InMemoryStorage):
    """Holds the heartbeat's first renewal until the runner has written the wave's outcome:
    the race where the write releases the lease while a beat is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.renewing = threading.Event()
        self.written = threading.Event()
        self.renewed = threading.Event()
        self.results: list[bool] = []

    def renew(self, instance_id: Any, owner: str, lease: timedelta) -> bool:
        if self.results:
            return super().renew(instance_id, owner, lease)
        self.renewing.set()
        assert self.written.wait(timeout=30), "the wave was never written"
        result = super().renew(instance_id, owner, lease)
        self.results.append(result)
        self.renewed.set()
        return result

    def put(self, instance: Instance) -> None:
        super().put(instance)
        if self.renewing.is_set():
            self.written.set()


def a_step_that_waits_for(event: threading.Event) -> type[Workflow]:
    class Beaten(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            assert event.wait(timeout=30), "the heartbeat never beat"
            return "ok"

    class Beating(Workflow):
        start = Beaten
        transitions = {Beaten: {"ok": Done}}

    return Beating


def lease_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_beat_racing_the_write_that_released_the_lease_does_not_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = RenewalAfterTheWrite()
    runner = LocalRunner(lease=0.15)
    done = runner.start(a_step_that_waits_for(storage.renewing), {}, storage=storage)
    assert storage.renewed.wait(timeout=30)
    runner.close()
    assert done.status is Status.COMPLETED
    assert storage.results == [False]  # the renewal came too late: the lease was released
    assert lease_warnings(caplog) == []


def test_losing_the_lease_to_another_runner_warns_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = RecordingRenewals()
    taken = threading.Event()

    class Robbed(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            # another runner takes the instance over while this step runs
            storage.update(
                instance.id,
                lambda current: evolve(
                    current,
                    lease_owner="thief",
                    lease_expires_at=storage.now() + timedelta(hours=1),
                ),
            )
            taken.set()
            assert storage.renewed_twice.wait(timeout=30)
            return "ok"

    class Robbery(Workflow):
        start = Robbed
        transitions = {Robbed: {"ok": Done}}

    runner = LocalRunner(lease=0.15)
    after = runner.start(Robbery, {}, storage=storage)
    runner.close()
    assert taken.is_set()
    # the step's outcome was recorded, and with nothing left to run no one keeps the lease
    assert after.status is Status.COMPLETED
    assert after.lease_owner is None
    (warning, *_) = lease_warnings(caplog)
    assert "lost the lease" in warning
    assert "another runner (thief) took it over" in warning
