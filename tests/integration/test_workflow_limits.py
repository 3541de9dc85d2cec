"""A concurrency limit on a workflow (``Workflow.concurrency``) bounds its running instances,
on both runners and both storages: the start of those over the limit waits in line, and the
end of one (completed, failed, cancelled) admits the next."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from hephaestus_django import (
    Concurrency,
    Done,
    RateLimit,
    Status,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    configure,
)
from hephaestus_django.storage import DjangoStorage
from tests.support.flow_control import Limited
from tests.support.workflow_limits import Open, Sessions, TenantSessions


def test_a_malformed_workflow_limit_is_refused_naming_the_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError, match="Crowd") as caught:

        class Crowd(Workflow):
            start_step = Open
            transitions = {Open: {"ok": Done}}
            concurrency = Concurrency(0)

    assert caught.value.rule == "malformed-concurrency"
    assert "limit must be an int of at least 1" in str(caught.value)

    with pytest.raises(WorkflowDefinitionError, match="start step Limited"):

        class Nested(Workflow):
            start_step = Limited
            transitions = {Limited: {"ok": Done}}
            concurrency = Concurrency(3)

    with pytest.raises(WorkflowDefinitionError, match="not both"):

        class Both(Workflow):
            start_step = Open
            transitions = {Open: {"ok": Done}}
            concurrency = Concurrency(3)
            rate_limit = RateLimit(3, per=timedelta(seconds=1))


class Harness:
    """One runner on an in-memory storage; ``settle`` does what a worker would."""

    def __init__(self, kind: str, storage: str) -> None:
        self.storage: InMemoryStorage | DjangoStorage = (
            InMemoryStorage() if storage == "memory" else DjangoStorage(using="default")
        )
        self.dispatcher = InMemoryDispatcher()
        self.runner: LocalRunner | QueuedRunner = (
            LocalRunner(lease=timedelta(seconds=30))
            if kind == "local"
            else QueuedRunner(dispatcher=self.dispatcher, lease=timedelta(seconds=30))
        )
        configure(storages={"default": self.storage}, runner=self.runner)

    def settle(self) -> None:
        for _ in range(3):
            self.runner.work(storage=self.storage)
            self.dispatcher.drain()

    def status(self, workflow: Any, ids: list[UUID]) -> list[Status]:
        return [workflow.get(i).status for i in ids]


@pytest.fixture(
    params=[
        ("local", "memory"),
        ("queued", "memory"),
        pytest.param(("local", "postgresql"), marks=pytest.mark.django_db(transaction=True)),
        pytest.param(("queued", "postgresql"), marks=pytest.mark.django_db(transaction=True)),
    ],
    ids=["local-memory", "queued-memory", "local-postgresql", "queued-postgresql"],
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    Open.opened.clear()
    made = Harness(*request.param)
    yield made
    made.runner.close()
    configure()


def test_the_end_of_one_instance_admits_the_next(harness: Harness) -> None:
    ids = [Sessions.start({"name": str(n)}) for n in range(5)]
    harness.settle()
    assert sorted(Open.opened) == ["0", "1"]  # 2 run (waiting for their event), 3 in line
    assert harness.status(Sessions, ids) == [Status.WAITING] * 2 + [Status.RUNNING] * 3
    if isinstance(harness.runner, QueuedRunner):
        assert not [job for job in harness.dispatcher.jobs if isinstance(job, StepJob)]
    assert [place.position for place in harness.storage.places(ids[3])] == [2]

    Sessions.resume(ids[0], "close")  # completed: its end admits the next, in its write
    harness.settle()
    assert Open.opened[-1] == "2"
    Sessions.cancel(ids[1])  # cancelled: the same
    harness.settle()
    assert Open.opened[-1] == "3"
    Sessions.resume(ids[2], "fail")  # failed: the same
    harness.settle()
    assert Open.opened[-1] == "4"
    assert harness.status(Sessions, ids) == [
        Status.COMPLETED,
        Status.CANCELLED,
        Status.FAILED,
        Status.WAITING,
        Status.WAITING,
    ]
    [use] = harness.storage.limits()
    assert (use.name, use.holding, use.waiting, use.limit) == (
        "running:tests.support.workflow_limits.Sessions",
        2,
        0,
        2,
    )


def test_a_waiting_instance_cancelled_leaves_the_line(harness: Harness) -> None:
    ids = [Sessions.start({"name": str(n)}) for n in range(4)]
    harness.settle()
    Sessions.cancel(ids[2])  # in line: it leaves it, and nobody is admitted in its place
    harness.settle()
    assert sorted(Open.opened) == ["0", "1"]
    Sessions.resume(ids[0], "close")
    harness.settle()
    assert Open.opened[-1] == "3"


def test_limits_per_key(harness: Harness) -> None:
    ids = [TenantSessions.start({"tenant": t}) for t in ["acme", "acme", "globex"]]
    harness.settle()
    assert harness.status(TenantSessions, ids) == [
        Status.WAITING,
        Status.RUNNING,
        Status.WAITING,
    ]
    TenantSessions.resume(ids[0], "close")
    harness.settle()
    assert TenantSessions.get(ids[1]).status is Status.WAITING
