"""Versions side by side, through the public API: an umbrella naming its versions and the
current one, instances running on the version they started with, rows naming a version that is
gone.

On InMemoryStorage with both runners (the integration tests run the same on PostgreSQL).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    InstanceNotFound,
    InvalidInstanceError,
    InvalidQueryError,
    KeyScope,
    Status,
    UnknownWorkflowError,
    VersionedWorkflow,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.workflow import resolve_workflow, workflow_registry
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
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


def test_new_instances_start_on_the_current_version_or_the_one_asked_for(settle: Settle) -> None:
    current = Onboarding.start({"contact": {"email": "a@example.com"}})
    older = Onboarding.start({"email": "b@example.com"}, version=1)
    settle()
    first, second = Onboarding.get(current), Onboarding.get(older)
    assert (first.workflow, first.workflow_version) == (OnboardingV2, 2)
    assert (second.workflow, second.workflow_version) == (OnboardingV1, 1)
    assert first.context.steps == {"send_welcome_email": {"to": "a@example.com"}}
    assert second.context.steps == {"send_welcome": {"to": "b@example.com"}}


def test_every_version_is_stored_under_the_umbrellas_path(
    settle: Settle, storage: InMemoryStorage
) -> None:
    assert OnboardingV1.path() == OnboardingV2.path() == Onboarding.path()
    assert Onboarding.path() == "tests.versions.Onboarding"
    direct = OnboardingV2.start({})
    settle()
    (stored,) = storage.query(workflow="tests.versions.Onboarding")
    assert (stored.id, stored.workflow, stored.workflow_version) == (direct, OnboardingV2, 2)
    # the registry names the umbrella, not the version classes
    assert "tests.versions.Onboarding" in workflow_registry
    assert "tests.versions.OnboardingV1" not in workflow_registry
    assert resolve_workflow("tests.versions.Onboarding", 1) is OnboardingV1


def test_a_running_instance_keeps_running_on_its_version(settle: Settle) -> None:
    old = Onboarding.start({}, version=1)
    new = Onboarding.start({})
    settle()
    Onboarding.resume(old, "verified")
    Onboarding.resume(new, "verified")
    settle()
    assert [entry.step for entry in Onboarding.get(old).execution_history] == [
        SendWelcome,
        LegacyCheck,
        AwaitVerification,
        Done,
    ]
    assert [entry.step for entry in Onboarding.get(new).execution_history] == [
        SendWelcomeEmail,
        AwaitVerification,
        Activate,
        Done,
    ]
    assert Onboarding.get(new).status is Status.COMPLETED


def test_the_umbrella_sees_every_version_and_a_version_class_its_own(settle: Settle) -> None:
    old = Onboarding.start({}, version=1)
    new = Onboarding.start({})
    other = Newsletter.start({})
    settle()
    assert [i.id for i in Onboarding.list()] == [old, new]
    assert [i.id for i in Onboarding.list(workflow_version=2)] == [new]
    assert [i.id for i in OnboardingV1.list()] == [old]
    assert [i.id for i in OnboardingV2.list(status="waiting")] == [new]
    assert OnboardingV1.get(old).id == old
    with pytest.raises(InstanceNotFound, match="OnboardingV2, not OnboardingV1"):
        OnboardingV1.get(new)
    with pytest.raises(InstanceNotFound, match="Newsletter, not Onboarding"):
        Onboarding.get(other)
    with pytest.raises(InstanceNotFound, match="Newsletter, not Onboarding"):
        Onboarding.resume(other, "verified")
    with pytest.raises(InstanceNotFound, match="OnboardingV2, not OnboardingV1"):
        OnboardingV1.cancel(new)
    assert Onboarding.cancel(old).status is Status.CANCELLED
    assert {i.id for i in Workflow.list()} == {old, new, other}


def test_start_refuses_a_version_the_workflow_does_not_have(
    settle: Settle, storage: InMemoryStorage
) -> None:
    with pytest.raises(InvalidInstanceError, match="Onboarding has no version 3; its versions"):
        Onboarding.start({}, version=3)
    with pytest.raises(InvalidInstanceError, match="Newsletter is version 1 and has no other"):
        Newsletter.start({}, version=2)
    assert len(storage) == 0
    assert Newsletter.get(Newsletter.start({}, version=1)).workflow_version == 1


def test_business_keys_span_the_versions_unless_scoped_per_version(settle: Settle) -> None:
    class OnceV1(Workflow):
        key_scope = KeyScope.WORKFLOW
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    class OnceV2(Workflow):
        version = 2
        key_scope = KeyScope.WORKFLOW
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    class Once(VersionedWorkflow):
        versions = (OnceV1, OnceV2)

    class PerV1(Workflow):
        key_scope = KeyScope.VERSION
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    class PerV2(PerV1):
        version = 2

    class Per(VersionedWorkflow):
        versions = (PerV1, PerV2)

    first = Once.start({}, key="customer-42", version=1)
    assert Once.start({}, key="customer-42") == first
    assert Once.get(key="customer-42").workflow is OnceV1
    assert Once.key_scope is KeyScope.WORKFLOW
    one = Per.start({}, key="customer-42", version=1)
    two = Per.start({}, key="customer-42", version=2)
    assert one != two
    assert {i.workflow_version for i in Per.list(key="customer-42")} == {1, 2}
    assert PerV2.get(key="customer-42").id == two


def test_a_row_naming_a_version_no_longer_registered(storage: InMemoryStorage) -> None:
    class FadingV1(Workflow):
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    def umbrella(*versions: type[Workflow]) -> type[VersionedWorkflow]:
        """An umbrella at one path, whatever versions it names."""
        body = {"versions": versions, "__qualname__": "Fading", "__module__": __name__}
        return type("Fading", (VersionedWorkflow,), body)

    def store_a_v2() -> Any:
        class FadingV2(Workflow):
            version = 2
            start_step = AwaitVerification
            transitions = {AwaitVerification: {"verified": Done}}

        fading = umbrella(FadingV1, FadingV2)
        instance = engine.start(engine.new_instance(fading, {}))
        storage.put(instance)
        return fading.path(), instance.id

    path, gone = store_a_v2()
    kept = engine.start(engine.new_instance(FadingV1, {}))
    Fading = umbrella(FadingV1)  # the same path, version 2 removed
    gc.collect()
    assert Fading.path() == path
    storage.put(kept)
    with pytest.raises(UnknownWorkflowError) as raised:
        storage.get(gone)
    assert raised.value.version == 2
    assert raised.value.instance_id == gone
    assert f"has no version 2 registered (instance {gone}); its versions are 1" in str(raised.value)
    assert [i.id for i in storage.query()] == [kept.id]


def test_a_plain_workflow_turned_into_an_umbrella_keeps_its_rows(storage: InMemoryStorage) -> None:
    at = {"__qualname__": "Signup", "__module__": __name__}

    def plain() -> Any:
        body = {
            "start_step": AwaitVerification,
            "transitions": {AwaitVerification: {"verified": Done}},
        }
        signup = type("Signup", (Workflow,), {**body, **at})
        instance = engine.start(engine.new_instance(signup, {"user": 7}))
        storage.put(instance)
        return signup.path(), instance.id

    path, stored_id = plain()
    gc.collect()

    class SignupV1(Workflow):
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    class SignupV2(Workflow):
        version = 2
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Activate}, Activate: {"activated": Done}}

    signup = type("Signup", (VersionedWorkflow,), {"versions": (SignupV1, SignupV2), **at})
    assert signup.path() == path == f"{__name__}.Signup"
    found = storage.get(stored_id)
    assert (found.workflow, found.workflow_version) == (SignupV1, 1)
    assert found.context.initial == {"user": 7}


def test_a_plain_workflow_decodes_any_version_number(storage: InMemoryStorage) -> None:
    instance = engine.start(engine.new_instance(Newsletter, {}))
    instance.workflow_version = 7
    storage.put(instance)
    found = storage.get(instance.id)
    assert (found.workflow, found.workflow_version) == (Newsletter, 7)


def _umbrella(**body: Any) -> type:
    return type("Broken", (VersionedWorkflow,), body)


class LoneV1(Workflow):
    start_step = AwaitVerification
    transitions = {AwaitVerification: {"verified": Done}}


class LoneV1Again(LoneV1):
    pass


class LoneV3(Workflow):
    version = 3
    key_scope = KeyScope.NONE
    start_step = AwaitVerification
    transitions = {AwaitVerification: {"verified": Done}}


class NotConcrete(Workflow):
    abstract = True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "versions must be a non-empty tuple"),
        ({"versions": ()}, "versions must be a non-empty tuple"),
        ({"versions": LoneV1}, "versions must be a non-empty tuple"),
        ({"versions": (LoneV1, "v2")}, "must name concrete workflow classes"),
        ({"versions": (NotConcrete,)}, "must name concrete workflow classes"),
        ({"versions": (Onboarding,)}, "must name concrete workflow classes"),
        ({"versions": (LoneV1, LoneV1)}, "LoneV1 is named twice"),
        ({"versions": (LoneV1, LoneV1Again)}, "LoneV1 and LoneV1Again are both version 1"),
        ({"versions": (LoneV1,), "current": 2}, "current = 2 is not one of its versions (1)"),
        ({"versions": (LoneV1,), "current": True}, "current = True is not one of its versions"),
        ({"versions": (OnboardingV1,)}, "already a version of tests.versions.Onboarding"),
        ({"versions": (LoneV1, LoneV3)}, "declare different key_scope"),
    ],
)
def test_a_malformed_umbrella_is_refused_when_defined(body: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=re.escape(message)) as raised:
        _umbrella(**body)
    assert raised.value.rule == "malformed-versions"


def test_the_umbrella_names_its_versions() -> None:
    assert Onboarding.by_version == {1: OnboardingV1, 2: OnboardingV2}
    assert Onboarding.known_versions() == (1, 2)
    assert Onboarding.current == Onboarding.version == 2
    assert OnboardingV1.umbrella() is Onboarding
    assert Newsletter.umbrella() is None
    assert Onboarding.owns(OnboardingV1)
    assert not Onboarding.owns(Newsletter)
    assert not Onboarding.is_abstract()
    assert VersionedWorkflow.is_abstract()
    with pytest.raises(InvalidInstanceError, match="abstract"):
        engine.new_instance(VersionedWorkflow, {})
    assert engine.new_instance(Onboarding, {}).workflow is OnboardingV2


# --- tags ----------------------------------------------------------------------------------


def test_tags_select_the_workflows_carrying_them(settle: Settle) -> None:
    onboarding = Onboarding.start({}, version=1)
    newsletter = Newsletter.start({})
    settle()
    assert Onboarding.tags == ("customers", "eu")  # its versions' tags
    assert OnboardingV1.tags == ("customers",)
    assert [i.id for i in Workflow.list(tag="eu")] == [onboarding]  # every version's instances
    assert [i.id for i in Workflow.list(tag="marketing")] == [newsletter]
    assert [i.id for i in Onboarding.list(tag="marketing")] == []
    assert Workflow.list(tag="no-such-tag") == []
    with pytest.raises(InvalidQueryError, match="tag must be a workflow tag"):
        Workflow.list(tag=3)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("billing", "tags must be a tuple of strings"),
        (("billing", 3), "each tag must be a non-empty string of at most 64 characters, not 3"),
        (("",), "not ''"),
        (("  ",), "not '  '"),
        (("x" * 65,), "at most 64 characters"),
    ],
)
def test_malformed_tags_are_refused_when_defined(tags: object, message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=re.escape(message)) as raised:
        type(
            "Tagged",
            (Workflow,),
            {
                "tags": tags,
                "start_step": AwaitVerification,
                "transitions": {AwaitVerification: {"verified": Done}},
            },
        )
    assert raised.value.rule == "malformed-tags"
    with pytest.raises(WorkflowDefinitionError, match=re.escape(message)):
        _umbrella(versions=(LoneV1,), tags=tags)


def test_repeated_tags_are_kept_once() -> None:
    class Twice(Workflow):
        tags = ("billing", "billing", "eu")
        start_step = AwaitVerification
        transitions = {AwaitVerification: {"verified": Done}}

    assert Twice.tags == ("billing", "eu")
