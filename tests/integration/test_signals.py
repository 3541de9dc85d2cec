"""Django signals (``hephaestus_django.signals``): every signal, on both runners and storages.

Each scenario runs four times: ``LocalRunner`` and ``QueuedRunner`` (its jobs run from the
in-memory queue, as a worker would run them), each on PostgreSQL and on the in-memory
storage; the signals must be the same in all four. Then what is sent when: nothing for a
rolled-back transaction, everything at the commit of the caller's, and a receiver that raises
breaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from django.db import transaction
from django.dispatch import Signal

from hephaestus_django import Done, Event, Status, Step, Workflow, signals
from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest, limit_name
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.contract import SlotKeeping, Storage
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.flow_control import PerTenant, PerTenantFlow
from tests.timers import make_due

pytestmark = pytest.mark.django_db(transaction=True)

ALL = [
    "instance_started",
    "instance_waiting",
    "instance_resumed",
    "instance_completed",
    "instance_failed",
    "instance_cancelled",
    "step_completed",
    "step_failed",
    "step_retried",
    "step_throttled",
]

BROKEN: set[str] = set()
"""While ``"fragile"`` is in it, ``Fragile`` raises."""


class Fragile(Step):
    """Fails while the test says so, without a retry policy: the instance fails."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        if "fragile" in BROKEN:
            raise RuntimeError("the service is down")
        return Event("ok")


class FragileFlow(Workflow):
    start_step = Fragile
    transitions = {Fragile: {"ok": Done}}


@dataclass
class Sent:
    """What one receiver got: the signal's name, and its keyword arguments."""

    name: str
    sender: Any
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.kwargs[key]

    @property
    def step(self) -> str | None:
        step = self.kwargs["step"]
        return None if step is None else step.__name__


@pytest.fixture
def sent() -> Iterator[list[Sent]]:
    """Every signal sent while the test runs, in order."""
    received: list[Sent] = []
    connected: list[tuple[Signal, Callable[..., None]]] = []
    for name in ALL:
        signal: Signal = getattr(signals, name)

        def receiver(sender: Any, *, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            received.append(Sent(_name, sender, kwargs))

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
    yield received
    for signal, receiver in connected:
        signal.disconnect(receiver)


@dataclass
class World:
    """A runner on a storage, and how to let it finish what it started."""

    storage: Storage
    runner: LocalRunner | QueuedRunner
    dispatcher: InMemoryDispatcher | None

    def settle(self) -> None:
        """Run the queued jobs (QueuedRunner); LocalRunner ran its steps already."""
        if self.dispatcher is not None:
            self.dispatcher.drain()

    def fire_timers(self, instance_id: UUID) -> None:
        """Make the instance's timers due, and let the worker (or the wake-up job) fire them."""
        make_due(self.storage, instance_id)
        if self.dispatcher is None:
            self.runner.work(storage=self.storage)
            return
        for job in self.dispatcher.take():  # the wake-up, enqueued for the timer's old time
            self.dispatcher.run(job)
        self.settle()


@pytest.fixture(params=["local-postgres", "local-memory", "queued-postgres", "queued-memory"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    kind, where = request.param.split("-")
    storage: Storage = DjangoStorage(using="default") if where == "postgres" else InMemoryStorage()
    dispatcher = InMemoryDispatcher() if kind == "queued" else None
    runner: LocalRunner | QueuedRunner = (
        LocalRunner()
        if dispatcher is None
        else QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    )
    configure(storages={"default": storage}, runner=runner)
    BROKEN.clear()
    flows.UNDONE.clear()
    flows.BROKEN_UNDO.clear()
    yield World(storage, runner, dispatcher)
    runner.close()
    configure()
    BROKEN.clear()


def summary(sent: list[Sent]) -> list[tuple[str, str | None]]:
    return [(item.name, item.step) for item in sent]


def test_a_run_to_completion(world: World, sent: list[Sent]) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Check"),
        ("step_completed", "Check"),
        ("step_completed", "Approve"),
        ("step_completed", "Merge"),
        ("step_completed", "Done"),
        ("instance_completed", "Done"),
    ]
    for item in sent:
        assert item.sender is flows.IfElse
        assert item["instance_id"] == instance_id
        assert item["workflow"] is flows.IfElse
        assert item["version"] == 1
        assert item["error"] is None
        assert item["lifecycle_event"].name == item.name
    check = sent[1]
    assert (check["event"], check["attempt"], check["compensation"]) == ("valid", 1, False)
    assert sent[-1]["instance"].status is Status.COMPLETED


def test_waiting_and_resumed_by_an_event(world: World, sent: list[Sent]) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Split"),
        ("step_completed", "Split"),
        ("instance_waiting", "Signature"),
    ]
    assert sent[-1]["steps"] == (flows.Signature, flows.Payment)
    assert sent[-1]["resume_at"] is None
    sent.clear()

    flows.TwoWaits.resume(instance_id, "paid")
    world.settle()
    # still waiting, for the signature: the status did not change, no second instance_waiting
    assert summary(sent) == [("instance_resumed", "Payment"), ("step_completed", "Payment")]
    assert (sent[0]["event"], sent[0]["by_timer"]) == ("paid", False)
    sent.clear()

    flows.TwoWaits.resume(instance_id, "signed")
    world.settle()
    assert summary(sent) == [
        ("instance_resumed", "Signature"),
        ("step_completed", "Signature"),
        ("step_completed", "Join"),
        ("step_completed", "Finish"),
        ("step_completed", "Done"),
        ("instance_completed", "Done"),
    ]


def test_waiting_and_resumed_by_a_timer(world: World, sent: list[Sent]) -> None:
    instance_id = flows.Timed.start({"script": {}})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Approve"),
        ("step_completed", "Approve"),
        ("instance_waiting", "Wait"),
    ]
    assert sent[-1]["resume_at"] == flows.Timed.get(instance_id).waiting_steps[flows.Wait].resume_at
    sent.clear()

    world.fire_timers(instance_id)
    assert summary(sent) == [
        ("instance_resumed", "Wait"),
        ("step_completed", "Wait"),
        ("step_completed", "Done"),
        ("instance_completed", "Done"),
    ]
    assert (sent[0]["event"], sent[0]["by_timer"]) == ("timeout", True)


def test_a_step_over_its_concurrency_limit_is_throttled(world: World, sent: list[Sent]) -> None:
    request = SlotRequest(limit_name(PerTenant, PerTenant.concurrency), "acme", 1)
    occupant = engine.start(engine.new_instance(PerTenantFlow, {"tenant": "acme"}))
    world.storage.put(occupant)
    assert isinstance(world.storage, SlotKeeping)
    assert world.storage.admit(
        occupant.id, "tests.Occupant", request, priority=0, lease=timedelta(minutes=5)
    )
    instance_id = PerTenantFlow.start({"tenant": "acme"})
    world.settle()
    assert summary(sent) == [("instance_started", "PerTenant"), ("step_throttled", "PerTenant")]
    assert (sent[1]["limit"], sent[1]["key"]) == (request.name, "acme")
    assert sent[1]["instance_id"] == instance_id


def test_a_failed_attempt_retried_by_its_policy(world: World, sent: list[Sent]) -> None:
    instance_id = flows.Retried.start({"fails": 1})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Flaky"),
        ("step_failed", "Flaky"),
        ("step_retried", "Flaky"),
        ("instance_waiting", "Flaky"),
    ]
    failed, retried = sent[1], sent[2]
    assert (failed["attempt"], failed["will_retry"]) == (1, True)
    assert failed["error"].error_type == "tests.flows.Transient"
    assert failed["error"].message == "run 1 failed"
    waiting = flows.Retried.get(instance_id).waiting_steps[flows.Flaky]
    assert (retried["attempt"], retried["retry_at"]) == (2, waiting.resume_at)
    assert retried["error"] == failed["error"]
    sent.clear()

    world.fire_timers(instance_id)
    assert summary(sent) == [
        ("step_completed", "Flaky"),
        ("step_completed", "Done"),
        ("instance_completed", "Done"),
    ]
    assert sent[0]["attempt"] == 2


def test_failed_then_retried(world: World, sent: list[Sent]) -> None:
    BROKEN.add("fragile")
    instance_id = FragileFlow.start({})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Fragile"),
        ("step_failed", "Fragile"),
        ("instance_failed", "Fragile"),
    ]
    failed, instance_failed = sent[1], sent[2]
    assert (failed["attempt"], failed["will_retry"]) == (1, False)
    assert failed["error"].error_type == "RuntimeError"
    assert failed["error"].message == "the service is down"
    assert instance_failed["error"] == failed["error"]
    sent.clear()

    BROKEN.clear()
    FragileFlow.retry(instance_id)
    world.settle()
    assert summary(sent) == [
        ("step_retried", "Fragile"),
        ("step_completed", "Fragile"),
        ("step_completed", "Done"),
        ("instance_completed", "Done"),
    ]
    assert (sent[0]["attempt"], sent[0]["retry_at"]) == (1, None)
    assert sent[0]["error"] == failed["error"]


def test_cancelled_while_waiting(world: World, sent: list[Sent]) -> None:
    instance_id = flows.Saga.start({"script": {}})
    world.settle()
    sent.clear()
    flows.Saga.cancel(instance_id, reason="the customer called")
    world.settle()
    assert summary(sent) == [("instance_cancelled", "Shipment")]
    assert (sent[0]["reason"], sent[0]["compensated"]) == ("the customer called", False)


def test_cancelled_after_its_compensations(world: World, sent: list[Sent]) -> None:
    instance_id = flows.Saga.start({"script": {}})
    world.settle()
    sent.clear()
    flows.Saga.cancel(instance_id, compensate=True)
    world.settle()
    assert summary(sent) == [
        ("step_completed", "Bill"),
        ("step_completed", "Hold"),
        ("instance_cancelled", "Shipment"),
    ]
    assert [(item["event"], item["compensation"]) for item in sent[:2]] == [
        ("compensated", True),
        ("compensated", True),
    ]
    assert sent[-1]["compensated"] is True
    assert flows.undone(instance_id) == ["bill", "hold"]


def test_failed_after_its_compensations(world: World, sent: list[Sent]) -> None:
    flows.FailingSaga.start({"script": {"bill": "fail"}})
    world.settle()
    assert summary(sent) == [
        ("instance_started", "Hold"),
        ("step_completed", "Hold"),
        ("step_completed", "Mail"),
        ("step_failed", "Bill"),  # once: not again when the failure comes back at the end
        ("step_completed", "Hold"),
        ("instance_failed", "Bill"),
    ]
    assert sent[3]["compensation"] is False
    assert sent[4]["compensation"] is True
    assert sent[5]["error"] == sent[3]["error"]


def test_a_failed_compensation_is_a_failed_step(world: World, sent: list[Sent]) -> None:
    flows.BROKEN_UNDO.add("hold")
    instance_id = flows.Saga.start({"script": {}})
    world.settle()
    sent.clear()
    flows.Saga.cancel(instance_id, compensate=True)
    world.settle()
    assert summary(sent) == [
        ("step_completed", "Bill"),
        ("step_failed", "Hold"),
        ("instance_failed", "Hold"),
    ]
    assert sent[1]["compensation"] is True


def test_a_receiver_can_listen_to_one_workflow(world: World) -> None:
    got: list[UUID] = []

    def receiver(sender: Any, instance_id: UUID, **kwargs: Any) -> None:
        got.append(instance_id)

    signals.instance_completed.connect(receiver, sender=flows.Timed, weak=False)
    try:
        flows.IfElse.start({"script": {}})
        world.settle()
        assert got == []
        instance_id = flows.Timed.start({"script": {}})
        world.settle()
        world.fire_timers(instance_id)
        assert got == [instance_id]
    finally:
        signals.instance_completed.disconnect(receiver, sender=flows.Timed)


def test_a_receiver_that_raises_breaks_nothing(
    world: World, sent: list[Sent], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("the receiver is broken")

    signals.step_completed.connect(broken, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="hephaestus_django.signals"):
            instance_id = flows.IfElse.start({"script": {}})
            world.settle()
    finally:
        signals.step_completed.disconnect(broken)
    assert flows.IfElse.get(instance_id).status is Status.COMPLETED
    assert summary(sent)[-1] == ("instance_completed", "Done")  # the others still got theirs
    errors = [r for r in caplog.records if r.name == "hephaestus_django.signals"]
    assert len(errors) == 4  # Check, Approve, Merge, Done
    record = errors[0]
    assert "a receiver of step_completed raised" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert (record.instance_id, record.workflow, record.step) == (  # type: ignore[attr-defined]
        str(instance_id),
        flows.IfElse.path(),
        flows.Check.path(),
    )


# --- when: after the commit, never for a rollback (PostgreSQL) ----------------------------


@pytest.fixture(params=["local", "queued"])
def postgres(request: pytest.FixtureRequest) -> Iterator[World]:
    storage = DjangoStorage(using="default")
    dispatcher = InMemoryDispatcher() if request.param == "queued" else None
    runner: LocalRunner | QueuedRunner = (
        LocalRunner() if dispatcher is None else QueuedRunner(dispatcher=dispatcher)
    )
    configure(storages={"default": storage}, runner=runner)
    yield World(storage, runner, dispatcher)
    runner.close()
    configure()


def test_nothing_is_sent_for_a_rolled_back_transaction(postgres: World, sent: list[Sent]) -> None:
    started: list[UUID] = []

    def start_then_fail() -> None:
        with transaction.atomic():
            started.append(flows.IfElse.start({"script": {}}))
            raise RuntimeError("the caller changes its mind")

    with pytest.raises(RuntimeError):
        start_then_fail()
    instance_id = started[0]
    postgres.settle()
    assert sent == []
    assert flows.IfElse.list(id=instance_id) == []


def test_nothing_is_sent_for_a_rolled_back_savepoint(postgres: World, sent: list[Sent]) -> None:
    with transaction.atomic():
        kept = flows.IfElse.start({"script": {}})
        try:
            with transaction.atomic():
                flows.IfElse.start({"script": {}})
                raise RuntimeError("this one is dropped")
        except RuntimeError:
            pass
        assert sent == []  # not before the commit
    postgres.settle()
    assert {item["instance_id"] for item in sent} == {kept}
    assert summary(sent)[-1] == ("instance_completed", "Done")


def test_signals_are_sent_when_the_callers_transaction_commits(
    postgres: World, sent: list[Sent]
) -> None:
    with transaction.atomic():
        flows.Timed.start({"script": {}})
        assert sent == []  # LocalRunner ran Approve in the transaction: told at the commit
    if postgres.dispatcher is None:
        assert summary(sent) == [
            ("instance_started", "Approve"),
            ("step_completed", "Approve"),
            ("instance_waiting", "Wait"),
        ]
    else:
        assert summary(sent) == [("instance_started", "Approve")]
        postgres.settle()  # the job, on a worker: its own transaction
        assert summary(sent)[1:] == [("step_completed", "Approve"), ("instance_waiting", "Wait")]


class JoiningDispatcher(InMemoryDispatcher):
    """An in-memory queue that says it joins the transaction (as procrastinate's does), and
    fails to enqueue when told to: the transition rolls back with it."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def joins_transaction(self, storage: Storage) -> bool:
        return True

    def enqueue_steps(self, jobs: Any) -> None:
        if self.broken:
            raise ConnectionError("the queue is down")
        super().enqueue_steps(jobs)


def test_a_queued_transition_is_told_after_its_own_transaction_with_its_jobs(
    sent: list[Sent],
) -> None:
    dispatcher = JoiningDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": DjangoStorage(using="default")}, runner=runner)
    try:
        dispatcher.broken = True
        with pytest.raises(ConnectionError):
            flows.IfElse.start({"script": {}})
        assert sent == []  # rolled back with the enqueue: nothing written, nothing told
        assert flows.IfElse.list() == []
        dispatcher.broken = False
        flows.IfElse.start({"script": {}})
        assert summary(sent) == [("instance_started", "Check")]
        dispatcher.drain()
        assert summary(sent)[-1] == ("instance_completed", "Done")
    finally:
        runner.close()
        configure()


def test_whether_anyone_receives_follows_connect_and_disconnect() -> None:
    """The runners ask :func:`signals.receiving` per write; its cached answer changes with
    the receivers."""

    def receiver(**kwargs: Any) -> None:
        pass

    before = signals.receiving()
    signals.step_failed.connect(receiver, weak=False)
    try:
        assert signals.receiving()
    finally:
        signals.step_failed.disconnect(receiver)
    assert signals.receiving() == before == any(s.receivers for s in signals.SIGNALS.values())
