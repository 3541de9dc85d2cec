"""Upgrading instances to a newer version: the checks when the version is defined, the engine's
transition, and ``Onboarding.upgrade`` through the public API on both runners.

On InMemoryStorage (the integration tests run upgrades on PostgreSQL, and race them against
resumes from real processes in tests/processes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    InstanceNotFound,
    InvalidInstanceError,
    Status,
    Upgrade,
    UpgradeError,
    VersionedWorkflow,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.instance import Compensation, UpgradeRecord, evolve
from hephaestus_django.core.outcomes import Async, Event
from hephaestus_django.core.upgrades import mapped_steps
from hephaestus_django.core.upgrades import upgrade as upgrade_instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.document import from_row, to_row
from tests.support.steps import GraphOnly
from tests.versions import (
    Activate,
    AwaitVerification,
    LegacyCheck,
    Newsletter,
    Onboarding,
    OnboardingV1,
    OnboardingV2,
    SendWelcome,
    SendWelcomeEmail,
)

Settle = Callable[[], None]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture(params=["local", "queued"])
def settle(request: pytest.FixtureRequest, storage: InMemoryStorage) -> Iterator[Settle]:
    if request.param == "local":
        configure(storages={"default": storage}, runner=LocalRunner())
        yield lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=runner)
        yield lambda: dispatcher.drain() and None
        runner.close()
    configure()


# --- through the public API ------------------------------------------------------------------


def test_a_waiting_v1_instance_is_upgraded_and_runs_on_as_v2(settle: Settle) -> None:
    instance_id = Onboarding.start({"email": "ada@example.com"}, version=1)
    settle()
    before = Onboarding.get(instance_id)
    assert before.waiting_steps.keys() == {AwaitVerification}

    upgraded = Onboarding.upgrade(instance_id, to_version=2)
    assert (upgraded.workflow, upgraded.workflow_version) == (OnboardingV2, 2)
    stored = Onboarding.get(instance_id)
    assert (stored.workflow, stored.workflow_version, stored.status) == (
        OnboardingV2,
        2,
        Status.WAITING,
    )
    assert stored.completed_steps == {SendWelcomeEmail}
    assert stored.waiting_steps == {AwaitVerification: before.waiting_steps[AwaitVerification]}
    assert [entry.step for entry in stored.execution_history] == [SendWelcomeEmail]
    assert stored.execution_history[0].timestamp == before.execution_history[0].timestamp
    assert stored.context.initial == {
        "email": "ada@example.com",
        "contact": {"email": "ada@example.com"},
    }
    assert stored.context.steps == {"send_welcome_email": {"to": "ada@example.com"}}
    (record,) = stored.upgrades
    assert (record.from_version, record.to_version) == (1, 2)
    assert record.steps == {SendWelcome.path(): SendWelcomeEmail.path(), LegacyCheck.path(): None}

    Onboarding.resume(instance_id, "verified")
    settle()
    done = Onboarding.get(instance_id)
    assert done.status is Status.COMPLETED
    assert [entry.step for entry in done.execution_history] == [
        SendWelcomeEmail,
        AwaitVerification,
        Activate,  # the step v2 added runs
        Done,
    ]


def test_the_default_target_is_the_current_version(settle: Settle) -> None:
    instance_id = Onboarding.start({}, version=1)
    settle()
    assert Onboarding.upgrade(instance_id).workflow_version == 2


def test_a_dry_run_computes_the_upgrade_and_writes_nothing(
    settle: Settle, storage: InMemoryStorage
) -> None:
    instance_id = Onboarding.start({"email": "a@b.c"}, version=1)
    settle()
    revision = Onboarding.get(instance_id).revision
    preview = Onboarding.upgrade(instance_id, to_version=2, dry_run=True)
    assert preview.workflow is OnboardingV2
    assert preview.completed_steps == {SendWelcomeEmail}
    after = Onboarding.get(instance_id)
    assert (after.workflow, after.revision) == (OnboardingV1, revision)


def test_an_instance_the_upgrade_does_not_cover_is_refused_and_left_as_it_is(
    settle: Settle,
) -> None:
    instance_id = Onboarding.start({"legacy_down": True}, version=1)
    settle()
    failed = Onboarding.get(instance_id)
    assert failed.status is Status.FAILED
    with pytest.raises(UpgradeError) as raised:
        Onboarding.upgrade(instance_id, to_version=2)
    error = raised.value
    assert (error.from_version, error.to_version, error.step) == (1, 2, "LegacyCheck")
    assert error.instance_id == instance_id
    assert str(error) == (
        f"instance {instance_id} of tests.versions.Onboarding cannot be upgraded from version 1 "
        f"to 2: it is failed at step LegacyCheck, which version 2 drops (nothing was changed)"
    )
    assert Onboarding.get(instance_id) == failed
    with pytest.raises(UpgradeError, match="failed at step LegacyCheck"):
        Onboarding.upgrade(instance_id, dry_run=True)


def test_an_upgrade_to_the_same_or_an_older_version_is_refused(settle: Settle) -> None:
    instance_id = Onboarding.start({})
    settle()
    with pytest.raises(UpgradeError, match="it is at version 2 already"):
        Onboarding.upgrade(instance_id, to_version=2)
    with pytest.raises(UpgradeError, match="OnboardingV1 declares no upgrade from OnboardingV2"):
        Onboarding.upgrade(instance_id, to_version=1)
    with pytest.raises(InvalidInstanceError, match="Onboarding has no version 7"):
        Onboarding.upgrade(instance_id, to_version=7)


def test_an_upgrade_names_an_instance_of_this_workflow_only(settle: Settle) -> None:
    other = Newsletter.start({})
    settle()
    with pytest.raises(InstanceNotFound, match="Newsletter, not Onboarding"):
        Onboarding.upgrade(other)
    with pytest.raises(InstanceNotFound, match="Newsletter, not Onboarding"):
        Onboarding.upgrade(other, dry_run=True)


def test_an_upgrade_by_business_key(settle: Settle) -> None:
    instance_id = Onboarding.start({}, version=1, key="customer-9")
    settle()
    assert Onboarding.upgrade(key="customer-9").id == instance_id
    assert Onboarding.get(key="customer-9").workflow_version == 2


def test_ended_instances_are_upgraded_too(settle: Settle) -> None:
    completed = Onboarding.start({}, version=1)
    cancelled = Onboarding.start({}, version=1)
    settle()
    Onboarding.resume(completed, "verified")
    Onboarding.cancel(cancelled, reason="duplicate")
    settle()
    done = Onboarding.upgrade(completed)
    assert (done.status, done.completed_steps) == (
        Status.COMPLETED,
        {SendWelcomeEmail, AwaitVerification, Done},
    )
    assert done.current_step is Done
    gone = Onboarding.upgrade(cancelled)
    assert gone.status is Status.CANCELLED
    assert gone.cancellation is not None
    assert gone.cancellation.steps == (AwaitVerification,)
    assert Onboarding.get(cancelled).workflow_version == 2


def test_an_upgraded_instance_round_trips_through_storage() -> None:
    instance = engine.start(engine.new_instance(OnboardingV1, {"email": "x@y.z"}))
    instance = upgrade_instance(instance, to=OnboardingV2, now=NOW)
    assert from_row(to_row(instance)) == instance
    assert to_row(instance).state["upgrades"] == [
        {
            "from": 1,
            "to": 2,
            "at": NOW.isoformat(),
            "steps": {SendWelcome.path(): SendWelcomeEmail.path(), LegacyCheck.path(): None},
        }
    ]
    assert "upgrades" not in to_row(engine.start(engine.new_instance(OnboardingV2, {}))).state


# --- the engine's transition -----------------------------------------------------------------


class Hold(WaitForEvent):
    events = ("go",)


class Pause(Wait):
    pass


class TimedV1(Workflow):
    start_step = Pause.configure(duration=5, unit="minutes")
    transitions = {Pause: {"timeout": Hold}, Hold: {"go": Done}}


class TimedV2(Workflow):
    version = 2
    upgrade_from = Upgrade(TimedV1)
    start_step = Pause.configure(duration=10, unit="minutes")
    transitions = {Pause: {"timeout": Hold}, Hold: {"go": Done}}


class Timed(VersionedWorkflow):
    versions = (TimedV1, TimedV2)


def test_a_waiting_timer_is_kept_and_the_new_configs_apply() -> None:
    started = engine.start(engine.new_instance(TimedV1, {}))
    waiting = engine.apply(
        started,
        [Executed(Pause, outcome=Async(after=timedelta(minutes=5), timer_event="timeout"))],
        now=NOW,
    )
    upgraded = upgrade_instance(waiting, to=TimedV2, now=NOW + timedelta(minutes=1))
    assert upgraded.waiting_steps == waiting.waiting_steps
    assert engine.next_due_time(upgraded) == NOW + timedelta(minutes=5)
    assert upgraded.step_configs == {Pause: {"duration": 10, "unit": "minutes"}}
    assert upgraded.upgrades == (
        UpgradeRecord(1, 2, NOW + timedelta(minutes=1), {}),
    )  # no step renamed or dropped


def test_mapped_steps_say_what_happens_to_each_step_of_the_instance() -> None:
    instance = engine.start(engine.new_instance(OnboardingV1, {}))
    instance = engine.apply(instance, [Executed(SendWelcome, outcome=Event("sent"))], now=NOW)
    assert mapped_steps(instance, OnboardingV2) == [
        (SendWelcome, SendWelcomeEmail),
        (LegacyCheck, None),
    ]
    with pytest.raises(UpgradeError, match="active at step LegacyCheck, which version 2 drops"):
        upgrade_instance(instance, to=OnboardingV2, now=NOW)


def test_a_compensating_instance_is_refused() -> None:
    instance = engine.start(engine.new_instance(OnboardingV1, {}))
    compensating = evolve(
        instance, compensation=Compensation(Status.CANCELLED, NOW, (SendWelcome,))
    )
    with pytest.raises(UpgradeError, match="it is compensating its steps"):
        upgrade_instance(compensating, to=OnboardingV2, now=NOW)


def test_a_context_function_that_raises_refuses_the_upgrade() -> None:
    class BadV1(Workflow):
        start_step = Hold
        transitions = {Hold: {"go": Done}}

    class BadV2(Workflow):
        version = 2
        upgrade_from = Upgrade(BadV1, context=lambda initial: initial["missing"])
        start_step = Hold
        transitions = {Hold: {"go": Done}}

    class ListV2(Workflow):
        version = 3
        upgrade_from = Upgrade(BadV1, context=lambda initial: [1, 2])
        start_step = Hold
        transitions = {Hold: {"go": Done}}

    instance = engine.start(engine.new_instance(BadV1, {}))
    with pytest.raises(UpgradeError, match="context function raised KeyError: 'missing'"):
        upgrade_instance(instance, to=BadV2, now=NOW)
    with pytest.raises(UpgradeError, match="context function returned list, not a dict"):
        upgrade_instance(instance, to=ListV2, now=NOW)


# --- checked when the version is defined ---------------------------------------------------


class A(GraphOnly):
    events = ("ok",)


class B(GraphOnly):
    events = ("ok",)


class C(GraphOnly):
    events = ("ok",)


class OldAB(Workflow):
    start_step = A
    transitions = {A: {"ok": B}, B: {"ok": Done}}


def _version(upgrade: Any, transitions: dict[Any, Any], start: Any = A, version: int = 2) -> None:
    type(
        "New",
        (Workflow,),
        {
            "version": version,
            "upgrade_from": upgrade,
            "start_step": start,
            "transitions": transitions,
        },
    )


@pytest.mark.parametrize(
    ("upgrade", "transitions", "start", "message"),
    [
        (
            Upgrade(OldAB),
            {A: {"ok": C}, C: {"ok": Done}},
            A,
            "step B of OldAB is not in New; map it to its new step (steps={B: NewStep}) or "
            "drop it (steps={B: None})",
        ),
        (
            Upgrade(OldAB, steps={C: A}),
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "steps names 'C', which is not a step of OldAB",
        ),
        (
            Upgrade(OldAB, steps={B: C}),
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "steps maps B to 'C', which is not a step of New",
        ),
        (
            Upgrade(OldAB, steps={A: C, B: C}),
            {C: {"ok": Done}},
            C,
            "steps A and B both map to C",
        ),
        (
            Upgrade(OldAB),
            {B: {"ok": A}, A: {"ok": Done}},
            B,
            "OldAB runs B after A, but New does not reach B from A",
        ),
        (
            Upgrade(OldAB, context="not a function"),  # type: ignore[arg-type]
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "context must be a function of the old initial context",
        ),
        (
            Upgrade(OldAB, steps=[(A, B)]),  # type: ignore[arg-type]
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "steps must be a dict",
        ),
        ("OldAB", {A: {"ok": B}, B: {"ok": Done}}, A, "must be an Upgrade(...) or a tuple"),
        (
            Upgrade("OldAB"),  # type: ignore[arg-type]
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "Upgrade(...) must name an earlier version's class, not 'OldAB'",
        ),
        (
            (Upgrade(OldAB), Upgrade(OldAB)),
            {A: {"ok": B}, B: {"ok": Done}},
            A,
            "two upgrades from version 1",
        ),
    ],
)
def test_a_malformed_upgrade_is_refused_when_the_version_is_defined(
    upgrade: Any, transitions: dict[Any, Any], start: Any, message: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=re.escape(message)) as raised:
        _version(upgrade, transitions, start)
    assert raised.value.rule == "malformed-upgrade"


def test_an_upgrade_comes_from_an_earlier_version() -> None:
    with pytest.raises(WorkflowDefinitionError, match="an upgrade comes from an earlier version"):
        _version(Upgrade(OldAB), {A: {"ok": B}, B: {"ok": Done}}, version=1)


def test_an_umbrella_refuses_an_upgrade_from_outside_it() -> None:
    class OutsideV2(Workflow):
        version = 2
        upgrade_from = Upgrade(OldAB)
        start_step = A
        transitions = {A: {"ok": B}, B: {"ok": Done}}

    class InsideV1(Workflow):
        start_step = A
        transitions = {A: {"ok": B}, B: {"ok": Done}}

    with pytest.raises(WorkflowDefinitionError, match="which is not an earlier version of") as e:

        class Mixed(VersionedWorkflow):
            versions = (InsideV1, OutsideV2)

    assert e.value.rule == "malformed-upgrade"


def test_a_step_dropped_or_added_keeps_the_order_rule() -> None:
    # a new step between two old ones is fine; so is dropping one at the end
    _version(Upgrade(OldAB), {A: {"ok": C}, C: {"ok": B}, B: {"ok": Done}})
    _version(Upgrade(OldAB, steps={B: None}), {A: {"ok": Done}})
    assert Onboarding.versions == (OnboardingV1, OnboardingV2)
    assert OnboardingV2.upgrades[0].mapping[AwaitVerification] is AwaitVerification
