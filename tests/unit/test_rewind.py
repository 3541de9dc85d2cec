"""Rewind, fork and compensating a failed instance, through the public API, on both runners.

On InMemoryStorage with a clock the test moves; with ``QueuedRunner`` the steps run when the
test drains the in-memory queue, as a worker would run them. (PostgreSQL:
``tests/integration/test_rewind_django.py``; real worker processes:
``tests/dispatchers/test_rewind_workers.py``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from hephaestus_django import (
    InstanceNotCompensableError,
    InstanceNotFound,
    RewindError,
    RewindPlan,
    Status,
)
from hephaestus_django.core import engine
from hephaestus_django.core.rewind import FORKED_FROM_KEY, REWOUND
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    QueuedRunner,
    configure,
)
from tests.rewinds import (
    BROKEN,
    TRAIL,
    Bill,
    Branches,
    Elsewhere,
    Fetch,
    Left,
    Meet,
    Pipeline,
    Price,
    Right,
    Ship,
)
from tests.sagas import EFFECTS, Order, Reserve, UndoneOrder
from tests.support.runners import RUNNERS, Settle, runner_over
from tests.timers import Clock
from tests.versions import (
    Activate,
    AwaitVerification,
    LegacyCheck,
    Onboarding,
    SendWelcomeEmail,
)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    TRAIL.clear()
    BROKEN.clear()
    EFFECTS.clear()
    yield
    TRAIL.clear()
    BROKEN.clear()
    EFFECTS.clear()


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage(clock=Clock())


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: InMemoryStorage) -> Iterator[Settle]:
    with runner_over(storage, request.param, lease=timedelta(seconds=30)) as settle:
        yield settle


def failed_at_price(settle: Settle) -> str:
    BROKEN.add("price")
    instance_id = Pipeline.start({})
    settle()
    assert Pipeline.get(instance_id).status is Status.FAILED
    return str(instance_id)


# --- rewind --------------------------------------------------------------------------------


def test_a_failed_instance_rewound_to_an_earlier_step_runs_again_from_it(settle: Settle) -> None:
    instance_id = failed_at_price(settle)
    BROKEN.clear()  # the fix shipped

    Pipeline.rewind(instance_id, to=Fetch)
    settle()

    stored = Pipeline.get(instance_id)
    assert stored.status is Status.WAITING
    assert stored.waiting_steps.keys() == {Ship}
    assert TRAIL[stored.id] == ["fetch", "price", "fetch", "price", "bill"]
    assert stored.context.result(Fetch) == {"runs": 2, "factor": 1}
    rewinds = [entry for entry in stored.execution_history if entry.event == REWOUND]
    assert len(rewinds) == 1
    assert rewinds[0].step is Fetch
    assert rewinds[0].context_updates == {"forgotten": [Fetch.path(), Price.path()]}
    assert stored.error is None


def test_a_rewind_forgets_results_attempts_and_timers_after_the_step(settle: Settle) -> None:
    instance_id = Pipeline.start({})
    settle()
    waiting = Pipeline.get(instance_id)
    assert waiting.waiting_steps.keys() == {Ship}

    plan = Pipeline.rewind(instance_id, to=Price, dry_run=True)
    assert plan == RewindPlan(
        instance_id=waiting.id,
        to=Price,
        forgotten=(Price, Bill, Ship),
        active=(Price,),
        compensations=(Bill,),
    )
    assert Pipeline.get(instance_id).revision == waiting.revision  # a dry run writes nothing

    Pipeline.rewind(instance_id, to="Price")
    settle()
    stored = Pipeline.get(instance_id)
    assert stored.status is Status.WAITING
    assert TRAIL[stored.id] == ["fetch", "price", "bill", "price", "bill"]
    assert stored.context.result(Price) == {"runs": 2, "factor": 1}
    assert stored.context.result(Fetch) == {"runs": 1, "factor": 1}

    Pipeline.resume(instance_id, "shipped")
    settle()
    assert Pipeline.get(instance_id).status is Status.COMPLETED


def test_a_completed_instance_can_be_rewound(settle: Settle) -> None:
    instance_id = Branches.start({})
    settle()
    assert Branches.get(instance_id).status is Status.COMPLETED

    Branches.rewind(instance_id, to=Left)
    settle()

    stored = Branches.get(instance_id)
    assert stored.status is Status.COMPLETED
    # The parallel branch keeps what it did; the rewound one and the join run again.
    assert sorted(TRAIL[stored.id]) == sorted(["fetch", "left", "right", "meet", "left", "meet"])
    assert stored.context.result(Right) == {"runs": 1, "factor": 1}
    assert stored.context.result(Meet) == {"runs": 2, "factor": 1}


def test_a_rewind_whose_join_waits_for_the_rewound_branch(settle: Settle) -> None:
    BROKEN.add("left")
    instance_id = Branches.start({})
    settle()
    failed = Branches.get(instance_id)
    assert failed.status is Status.FAILED
    BROKEN.clear()

    plan = Branches.rewind(instance_id, to=Left, dry_run=True)
    assert isinstance(plan, RewindPlan)
    assert plan.forgotten == (Left,)
    Branches.rewind(instance_id, to=Left)
    settle()
    stored = Branches.get(instance_id)
    assert stored.status is Status.COMPLETED
    assert TRAIL[stored.id].count("meet") == 1


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        (Elsewhere, "has no such step"),
        ("NoSuchStep", "has no such step"),
        (Ship, "never reached"),
    ],
)
def test_a_rewind_to_a_step_not_reached_or_not_in_the_graph_is_refused(
    settle: Settle, to: object, reason: str
) -> None:
    instance_id = failed_at_price(settle)
    before = Pipeline.get(instance_id)

    with pytest.raises(RewindError, match=reason) as raised:
        Pipeline.rewind(instance_id, to=to)  # type: ignore[arg-type]
    with pytest.raises(RewindError, match=reason):
        Pipeline.rewind(instance_id, to=to, dry_run=True)  # type: ignore[arg-type]

    assert str(before.id) in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    assert Pipeline.get(instance_id).revision == before.revision


def test_a_cancelled_instance_is_not_rewound(settle: Settle) -> None:
    instance_id = Pipeline.start({})
    settle()
    Pipeline.cancel(instance_id)
    with pytest.raises(RewindError, match="cancelled for good; fork it"):
        Pipeline.rewind(instance_id, to=Fetch)


def test_a_rewind_through_another_workflow_class_finds_no_instance(settle: Settle) -> None:
    instance_id = failed_at_price(settle)
    with pytest.raises(InstanceNotFound):
        Order.rewind(instance_id, to=Reserve)


def test_a_rewind_with_compensate_undoes_the_forgotten_steps_first(settle: Settle) -> None:
    instance_id = Pipeline.start({})
    settle()

    plan = Pipeline.rewind(instance_id, to=Fetch, compensate=True, dry_run=True)
    assert isinstance(plan, RewindPlan)
    assert plan.compensations == (Bill, Fetch)
    Pipeline.rewind(instance_id, to=Fetch, compensate=True)
    settle()

    stored = Pipeline.get(instance_id)
    assert TRAIL[stored.id] == [
        "fetch",
        "price",
        "bill",
        "undo bill",
        "undo fetch",
        "fetch",
        "price",
        "bill",
    ]
    assert stored.status is Status.WAITING
    assert stored.compensation is None
    compensated = [e.step for e in stored.execution_history if e.event == engine.COMPENSATED]
    assert compensated == [Bill, Fetch]


def test_the_late_result_of_a_forgotten_step_is_refused() -> None:
    """A result computed before a rewind (a step still running) is never recorded, even when
    the step is runnable again: the engine checks the generation it was computed on."""
    storage = InMemoryStorage(clock=Clock())
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    try:
        instance_id = Pipeline.start({})
        first = dispatcher.take()  # Fetch's job, not run yet
        running = Pipeline.get(instance_id)
        late = engine.Executed(Fetch, outcome=engine.Event("ok", updates={"late": True}), rewinds=0)
        Pipeline.rewind(instance_id, to=Fetch)
        rewound = Pipeline.get(instance_id)
        assert engine.accepts(running, late)
        assert not engine.accepts(rewound, late)
        for job in first:
            dispatcher.run(job)
        dispatcher.drain()
        assert Pipeline.get(instance_id).context.result(Fetch) == {"runs": 1, "factor": 1}
    finally:
        runner.close()
        configure()


# --- compensating a failed instance --------------------------------------------------------


def test_a_failed_instance_is_compensated_and_ends_failed(settle: Settle) -> None:
    instance_id = Order.start({"decline": True})
    settle()
    failed = Order.get(instance_id)
    assert failed.status is Status.FAILED

    Order.compensate(instance_id)
    settle()

    stored = Order.get(instance_id)
    assert stored.status is Status.FAILED
    assert stored.error == failed.error
    assert EFFECTS[stored.id] == ["reserve", "notify", "release"]
    assert stored.compensation is not None
    assert stored.compensation.done
    with pytest.raises(InstanceNotCompensableError, match="after they were compensated"):
        Order.compensate(instance_id)


def test_compensating_an_instance_that_has_not_failed_is_refused(settle: Settle) -> None:
    instance_id = Order.start({})
    settle()
    before = Order.get(instance_id)
    with pytest.raises(InstanceNotCompensableError, match="only a failed instance"):
        Order.compensate(instance_id)
    assert Order.get(instance_id).revision == before.revision


def test_a_failed_instance_with_nothing_to_undo_is_refused(settle: Settle) -> None:
    BROKEN.add("fetch")  # the first step fails: nothing completed
    instance_id = Pipeline.start({})
    settle()
    with pytest.raises(InstanceNotCompensableError, match="nothing to undo"):
        Pipeline.compensate(instance_id)


def test_an_instance_compensated_on_failure_is_not_compensated_again(settle: Settle) -> None:
    instance_id = UndoneOrder.start({"decline": True})
    settle()
    assert UndoneOrder.get(instance_id).status is Status.FAILED
    with pytest.raises(InstanceNotCompensableError, match="after they were compensated"):
        UndoneOrder.compensate(instance_id)


# --- fork ------------------------------------------------------------------------------------


def test_a_fork_runs_a_copy_from_the_step_and_leaves_the_original(settle: Settle) -> None:
    instance_id = failed_at_price(settle)
    original = Pipeline.get(instance_id)
    BROKEN.clear()

    forked = Pipeline.fork(instance_id, at=Price, context={"factor": 3})
    settle()

    copy = Pipeline.get(forked.id)
    assert copy.id != original.id
    assert copy.status is Status.WAITING
    assert copy.runtime_metadata[FORKED_FROM_KEY] == {"id": str(original.id), "step": Price.path()}
    assert copy.context.initial == {"factor": 3}
    assert copy.context.result(Fetch) == {"runs": 1, "factor": 1}  # copied, not run again
    assert copy.context.result(Price) == {"runs": 1, "factor": 3}
    assert TRAIL[copy.id] == ["price", "bill"]
    assert Pipeline.get(instance_id) == original


def test_a_fork_at_a_step_not_in_the_graph_writes_nothing(
    settle: Settle, storage: InMemoryStorage
) -> None:
    instance_id = failed_at_price(settle)
    count = len(Pipeline.list())
    with pytest.raises(RewindError, match=r"cannot be forked to step 'Nope'.*has no such step"):
        Pipeline.fork(instance_id, at="Nope")
    with pytest.raises(RewindError, match="never reached"):
        Pipeline.fork(instance_id, at=Bill)
    assert len(Pipeline.list()) == count


def test_a_fork_of_a_cancelled_instance_runs(settle: Settle) -> None:
    instance_id = Pipeline.start({})
    settle()
    Pipeline.cancel(instance_id)
    forked = Pipeline.fork(instance_id, at=Ship)
    settle()
    assert Pipeline.get(forked.id).status is Status.WAITING
    assert Pipeline.get(instance_id).status is Status.CANCELLED


# --- versions --------------------------------------------------------------------------------


def test_a_rewind_to_a_step_the_instances_version_dropped_is_refused(settle: Settle) -> None:
    instance_id = Onboarding.start({"email": "a@example.com"}, version=1)
    settle()
    Onboarding.upgrade(instance_id, to_version=2)
    settle()
    before = Onboarding.get(instance_id)

    with pytest.raises(RewindError, match="version 2 of OnboardingV2 has no such step"):
        Onboarding.rewind(instance_id, to=LegacyCheck)

    assert Onboarding.get(instance_id).revision == before.revision
    Onboarding.rewind(instance_id, to=SendWelcomeEmail)  # its step under version 2
    settle()
    assert Onboarding.get(instance_id).waiting_steps.keys() == {AwaitVerification}


def test_a_fork_onto_a_newer_version_runs_the_new_steps(settle: Settle) -> None:
    instance_id = Onboarding.start({"email": "a@example.com"}, version=1)
    settle()

    forked = Onboarding.fork(instance_id, at=AwaitVerification, version=2)
    settle()
    Onboarding.resume(forked.id, "verified")
    settle()

    copy = Onboarding.get(forked.id)
    assert copy.workflow_version == 2
    assert copy.status is Status.COMPLETED
    assert Activate in copy.completed_steps
    original = Onboarding.get(instance_id)
    assert original.workflow_version == 1
    assert original.status is Status.WAITING
