"""The trip-ups a new user met (issue 24), each refused or explained where it happens:
workflows that no other process could load, states too large to store, and the project-wide
retry policy."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.test import Client, TestCase, override_settings

from hephaestus_django import (
    Done,
    Event,
    InMemoryDispatcher,
    LocalRunner,
    QueuedRunner,
    Retry,
    SerializationError,
    Status,
    Step,
)
from hephaestus_django import Workflow as WorkflowBase
from hephaestus_django.core.errors import WorkflowDefinitionError
from hephaestus_django.core.policies import project_defaults
from hephaestus_django.runtime import InMemoryStorage, configure
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.limits import limits
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.admin import detail_url, section, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def storage() -> Iterator[DjangoStorage]:
    storage = DjangoStorage()
    configure(storages={"default": storage}, runner=LocalRunner())
    yield storage
    configure()


class Ship(Step):
    events = ("shipped",)

    def execute(self, instance: object, config: object, context: object) -> str:
        return "shipped"


class Enormous(Step):
    events = ("made",)

    def execute(self, instance: object, config: object, context: object) -> object:
        return Event("made", updates={"report": "x" * 20_000})


class Report(WorkflowBase):
    start_step = Enormous
    transitions = {Enormous: {"made": Done}}


def _define_in(module_name: str, *, keep: bool) -> type[WorkflowBase]:
    """A workflow class whose ``__module__`` is ``module_name``, as a console or
    ``manage.py shell`` makes it: held by that module only when ``keep``."""
    namespace = {
        "__module__": module_name,
        "start_step": Ship,
        "transitions": {Ship: {"shipped": Done}},
    }
    workflow = type("Fulfilment", (WorkflowBase,), namespace)
    if keep:
        sys.modules[module_name].Fulfilment = workflow
    return workflow


@pytest.mark.parametrize(
    "module_name", ["__main__", "django.core.management.commands.shell", "<console>"]
)
def test_a_workflow_no_process_could_load_is_refused_before_the_write(
    storage: DjangoStorage, module_name: str
) -> None:
    shell = module_name == "django.core.management.commands.shell"
    if shell:
        import django.core.management.commands.shell  # noqa: F401
    # `manage.py shell -c` and piped input run in the command module's globals: the class is
    # even held there, under its name, in this process only
    workflow = _define_in(module_name, keep=shell)
    try:
        with pytest.raises(WorkflowDefinitionError) as raised:
            workflow.start({})
    finally:
        if shell:
            del sys.modules[module_name].Fulfilment
    assert raised.value.rule == "not-importable"
    message = str(raised.value)
    assert f"{module_name}.Fulfilment" in message
    assert "workflows.py" in message
    assert storage.query() == []


def test_the_same_class_runs_in_memory_and_once_its_module_holds_it(storage: DjangoStorage) -> None:
    workflow = _define_in("__main__", keep=False)
    memory = InMemoryStorage()
    assert memory.get(workflow.start({}, storage=memory)).status is Status.COMPLETED
    module = types.ModuleType("trip_up_app.workflows")
    module.__file__ = "trip_up_app/workflows.py"
    sys.modules[module.__name__] = module
    try:
        held = _define_in(module.__name__, keep=True)
        assert storage.get(held.start({})).status is Status.COMPLETED
    finally:
        del sys.modules[module.__name__]


def test_module_level_and_function_local_test_workflows_still_store(storage: DjangoStorage) -> None:
    class Local(WorkflowBase):
        start_step = Ship
        transitions = {Ship: {"shipped": Done}}

    assert storage.get(Local.start({})).status is Status.COMPLETED
    assert storage.get(flows.Retried.start({})).status is Status.COMPLETED


@pytest.mark.parametrize("backend", ["django", "memory"])
def test_a_state_over_the_bound_is_refused_naming_its_size_and_the_setting(
    storage: DjangoStorage, backend: str
) -> None:
    target = storage if backend == "django" else InMemoryStorage()
    with override_settings(HEPHAESTUS={"MAX_STATE_BYTES": 10_000}):
        assert limits.max_state_bytes == 10_000
        flows.Retried.start({"blob": "x" * 5_000}, storage=target)  # under the bound
        with pytest.raises(SerializationError) as raised:
            flows.Retried.start({"blob": "é" * 6_000}, storage=target)  # 12,000 bytes in UTF-8
    message = str(raised.value)
    assert 'HEPHAESTUS["MAX_STATE_BYTES"]' in message
    assert "10,000 bytes" in message
    assert "cannot store state" in message
    assert len(target.query()) == 1  # nothing of the refused one was written
    assert limits.max_state_bytes == 1024 * 1024  # back to the default with the setting


def test_a_step_whose_result_alone_is_over_the_bound_fails_naming_it(
    storage: DjangoStorage,
) -> None:
    with override_settings(HEPHAESTUS={"MAX_STATE_BYTES": 10_000}):
        failed = storage.get(Report.start({}))
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert "context.steps.enormous" in failed.error.message
    assert 'HEPHAESTUS["MAX_STATE_BYTES"]' in failed.error.message


def test_the_project_retry_policy_applies_to_steps_and_workflows_without_one(
    storage: DjangoStorage,
) -> None:
    policy = {"max_attempts": 4, "backoff": timedelta(seconds=30), "jitter": False}
    with override_settings(HEPHAESTUS={"DEFAULT_RETRY": policy}):
        assert project_defaults.retry == Retry(**policy)
        unguarded = storage.get(flows.Unguarded.start({"fails": 1}))
        own = storage.get(flows.RetriedByDefault.start({"fails": 2}))
    assert project_defaults.retry is None
    assert unguarded.status is Status.WAITING  # retried under the project's policy
    assert unguarded.waiting_steps[flows.PlainFlaky].attempt == 2
    assert own.waiting_steps[flows.PlainFlaky].attempt == 2  # the workflow's own policy: 5 s
    assert storage.get(flows.Unguarded.start({"fails": 1})).status is Status.FAILED


@pytest.mark.parametrize(
    ("setting", "check_id"),
    [
        ({"MAX_STATE_BYTES": 0}, "hephaestus.E016"),
        ({"MAX_STATE_BYTES": "1MB"}, "hephaestus.E016"),
        ({"DEFAULT_RETRY": {"max_attempts": 0}}, "hephaestus.E017"),
        ({"DEFAULT_RETRY": {"retries": 3}}, "hephaestus.E017"),
        ({"DEFAULT_RETRY": 5}, "hephaestus.E017"),
    ],
)
def test_malformed_policies_are_reported_by_the_checks(setting: dict, check_id: str) -> None:
    with override_settings(HEPHAESTUS=setting):
        ids = [message.id for message in run_checks()]
    assert check_id in ids


def test_sound_policies_pass_the_checks() -> None:
    setting = {"MAX_STATE_BYTES": None, "DEFAULT_RETRY": Retry(max_attempts=5)}
    with override_settings(HEPHAESTUS=setting):
        ids = [message.id for message in run_checks()]
    assert not {"hephaestus.E016", "hephaestus.E017"} & set(ids)


class Documented(WorkflowBase):
    start_step = Ship
    transitions = {Ship: {"shipped": Done}}
    metadata = {"owner": "logistics", "runbook": "https://runbooks.example/ship"}


def test_the_instance_page_cuts_large_blocks_and_links_to_the_whole_state(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance_id = Documented.start({"blob": "x" * 200_000})
    response = admin_client.get(detail_url(instance_id))
    assert response.status_code == 200
    page = response.content.decode()
    assert len(page) < 150_000  # the blob is shown twice (initial data, raw state), cut both times
    assert "Showing the first 20,000 of 200,0" in page
    whole = url("state", instance_id)
    assert f'<a href="{whole}">The whole stored state as JSON</a>' in page
    state = admin_client.get(whole)
    assert state.status_code == 200
    assert state["Content-Type"].startswith("application/json")
    assert json.loads(state.content)["context"]["initial"]["blob"] == "x" * 200_000
    metadata = section(page, "workflow-metadata")
    assert "Workflow metadata" in metadata
    assert "https://runbooks.example/ship" in metadata


def test_the_whole_state_needs_the_view_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    instance_id = Documented.start({})
    assert staff_client().get(url("state", instance_id)).status_code == 403


QUEUED = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {"dispatcher": "hephaestus_django.runtime.memory_dispatch.InMemoryDispatcher"},
    }
}


def test_configuring_storages_under_a_settings_queued_runner_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "_warned", False)
    caplog.set_level(logging.WARNING, logger="hephaestus_django.runner")
    try:
        with override_settings(HEPHAESTUS=QUEUED):
            configure(storages={"default": InMemoryStorage()}, runner=LocalRunner())
            assert caplog.records == []  # a runner was given
            configure(storages={"default": InMemoryStorage()})
            configure(storages={"default": InMemoryStorage()})
    finally:
        configure()
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1
    assert "QueuedRunner" in warned[0]
    assert "configure(storages=..., runner=LocalRunner())" in warned[0]


def test_no_warning_under_the_default_local_runner(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "_warned", False)
    caplog.set_level(logging.WARNING, logger="hephaestus_django.runner")
    try:
        configure(storages={"default": InMemoryStorage()})
    finally:
        configure()
    assert caplog.records == []


class Grows(Step):
    """Returns a result well under the bound alone, which the state stores twice (the
    step's result and its history entry): together over a 10,000-byte bound."""

    events = ("made",)
    runs = 0

    def execute(self, instance: object, config: object, context: object) -> object:
        Grows.runs += 1
        return Event("made", updates={"report": "x" * 6_000})


class Outgrown(WorkflowBase):
    start_step = Grows
    transitions = {Grows: {"made": Done}}


class OutgrownRetried(WorkflowBase):
    start_step = Grows
    transitions = {Grows: {"made": Done}}
    default_retry = Retry(max_attempts=3, backoff=timedelta(0), jitter=False)


def _run(workflow: type[WorkflowBase], target: object, runner: str) -> object:
    if runner == "local":
        local = LocalRunner()
        configure(storages={"default": target}, runner=local)  # type: ignore[dict-item]
        instance_id = workflow.start({})
        for _ in range(5):  # the retries' timers, due at once, are the worker's
            local.work(storage=target)  # type: ignore[arg-type]
        return instance_id
    dispatcher = InMemoryDispatcher()
    queued = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": target}, runner=queued)  # type: ignore[dict-item]
    try:
        # the jobs go out when the test's transaction would commit
        with TestCase.captureOnCommitCallbacks(execute=True):
            instance_id = workflow.start({})
        for _ in range(5):  # each retry's wake-up job is sent as its write commits
            with TestCase.captureOnCommitCallbacks(execute=True):
                dispatcher.drain()
    finally:
        queued.close()
    return instance_id


@pytest.mark.parametrize("runner", ["local", "queued"])
@pytest.mark.parametrize("backend", ["django", "memory"])
def test_results_that_together_outgrow_the_bound_fail_the_step_instead_of_looping(
    storage: DjangoStorage, backend: str, runner: str
) -> None:
    target = storage if backend == "django" else InMemoryStorage()
    Grows.runs = 0
    with override_settings(HEPHAESTUS={"MAX_STATE_BYTES": 10_000}):
        instance_id = _run(Outgrown, target, runner)
        failed = target.get(instance_id)  # type: ignore[arg-type]
        retried_id = _run(OutgrownRetried, target, runner)
        retried = target.get(retried_id)  # type: ignore[arg-type]
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.error_type.endswith("StateTooLargeError")
    assert 'HEPHAESTUS["MAX_STATE_BYTES"]' in failed.error.message
    assert "report" not in failed.context.steps.get("grows", {})
    # under a retry policy: its attempts and no more, then failed for good
    assert retried.status is Status.FAILED
    assert Grows.runs == 1 + 3
