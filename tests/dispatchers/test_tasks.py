"""What is particular to the Django Tasks adapter (``hephaestus_django.queues.tasks``): when
enqueueing joins a storage's transaction, the task rows it writes, and its system checks (run as
a deployment runs them: ``manage.py check``)."""

from __future__ import annotations

import sys
import uuid
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import modify_settings
from django_tasks_db.models import DBTaskResult

from hephaestus_django import conf, storages
from hephaestus_django.core.engine import next_due_time
from hephaestus_django.queues import tasks
from hephaestus_django.queues.tasks import TasksDispatcher
from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.runtime.dispatch import StepJob
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.harness_tasks import run_db_worker_batch
from tests.dispatchers.workers import TASKS
from tests.docblocks import block

if TYPE_CHECKING:
    from pytest_django import Settings

QUEUED = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {"dispatcher": "hephaestus_django.queues.tasks.TasksDispatcher"},
    }
}


def immediate_backend() -> str:
    """The Tasks API's immediate backend (runs a task inside enqueue; no database)."""
    return f"{tasks.framework().__name__}.backends.immediate.ImmediateBackend"


def check(fail_level: str = "WARNING") -> str:
    """``manage.py check``'s report; empty when it passes at ``fail_level``."""
    try:
        call_command("check", fail_level=fail_level, stdout=StringIO(), stderr=StringIO())
    except SystemCheckError as failure:
        return str(failure)
    return ""


# --- joining the caller's transaction ----------------------------------------------------------


@pytest.mark.django_db
def test_the_database_backend_on_the_storages_database_joins_its_transaction() -> None:
    assert TasksDispatcher().joins_transaction(storages["default"]) is True


@pytest.mark.django_db
def test_a_storage_on_another_database_is_not_joined() -> None:
    """The task rows go to 'default' (where the router sends them), the instances to 'other':
    two connections, two transactions."""
    assert TasksDispatcher().joins_transaction(DjangoStorage(using="other")) is False


def test_a_storage_without_database_transactions_is_not_joined() -> None:
    assert TasksDispatcher().joins_transaction(InMemoryStorage()) is False


def test_a_backend_that_is_not_the_database_backend_is_not_joined(settings: Settings) -> None:
    settings.TASKS = {"default": {"BACKEND": immediate_backend()}}
    assert TasksDispatcher().joins_transaction(storages["default"]) is False


# --- the task rows -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobs_are_task_rows_on_the_dispatchers_queue_with_its_priority(
    settings: Settings, tmp_path: Path
) -> None:
    """A worker finds each task by the dotted path stored in its row; a wake-up waits for its
    timer's due time (run_after)."""
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["workflows"]}
    }
    options = {"queue_name": "workflows", "priority": 7}
    settings.HEPHAESTUS = {
        "RUNNER": {
            **QUEUED["RUNNER"],
            "OPTIONS": {**QUEUED["RUNNER"]["OPTIONS"], "dispatcher_options": options},
        }
    }
    instance_id = workflows.Napping.start({"dir": str(tmp_path)})
    run_db_worker_batch("--queue-name", "workflows")

    rows = list(DBTaskResult.objects.order_by("enqueued_at"))
    assert [row.task_path for row in rows] == [
        "hephaestus_django.queues.tasks.run_step",  # First; its write starts Nap's timer
        "hephaestus_django.queues.tasks.run_wakeup",
    ]
    assert {(row.queue_name, row.priority, row.backend_name) for row in rows} == {
        ("workflows", 7, "default")
    }
    *steps, wakeup = rows
    assert [step.status for step in steps] == ["SUCCESSFUL"]
    assert steps[-1].return_value == {"instance": str(instance_id), "status": "waiting"}
    assert wakeup.status == "READY"  # not due yet
    assert wakeup.run_after == next_due_time(storages["default"].get(instance_id))
    assert wakeup.args_kwargs["args"][0]["kind"] == "wake-up"


@pytest.mark.django_db
def test_an_instances_priority_is_added_to_its_step_tasks(settings: Settings) -> None:
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    dispatcher = TasksDispatcher(priority=7)
    dispatcher.enqueue_steps(
        [
            StepJob("default", uuid.uuid4(), workflows.First.path(), priority=priority)
            for priority in (0, 5, 500)
        ]
    )
    rows = list(DBTaskResult.objects.order_by("enqueued_at"))
    assert [row.priority for row in rows] == [7, 12, 100]  # within the Tasks API's bounds


def test_the_task_objects_are_built_with_the_configured_dispatchers_options(
    settings: Settings,
) -> None:
    """``import_string("hephaestus_django.queues.tasks.run_step")``, as a worker does it."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["q"]}}
    settings.HEPHAESTUS = {
        "RUNNER": {
            **QUEUED["RUNNER"],
            "OPTIONS": {**QUEUED["RUNNER"]["OPTIONS"], "dispatcher_options": {"queue_name": "q"}},
        }
    }
    from django.utils.module_loading import import_string

    task = import_string("hephaestus_django.queues.tasks.run_wakeup")

    assert isinstance(task, tasks.base_task_class())
    assert (task.queue_name, task.module_path) == ("q", "hephaestus_django.queues.tasks.run_wakeup")
    with pytest.raises(ImportError, match="run_anything"):
        import_string("hephaestus_django.queues.tasks.run_anything")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"backend": ""}, "backend must be"),
        ({"queue_name": 3}, "queue_name must be"),
        ({"priority": 101}, "between -100 and 100"),
        ({"priority": 1.5}, "whole number"),
    ],
)
def test_bad_options_are_refused_when_the_dispatcher_is_built(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        TasksDispatcher(**options)


# --- system checks -----------------------------------------------------------------------------


def test_the_tests_settings_pass_every_check(settings: Settings) -> None:
    settings.HEPHAESTUS = QUEUED
    assert check() == ""


def test_django_tasks_missing_is_e011_naming_the_extra(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.HEPHAESTUS = QUEUED
    # Neither Django 6's django.tasks (Django's own checks import it: it stays, unseen) nor
    # the backport.
    monkeypatch.setattr(tasks, "_has_django_tasks", lambda: False)
    monkeypatch.setitem(sys.modules, "django_tasks", None)

    report = check()
    assert "(hephaestus.E011)" in report
    assert "Django Tasks is not installed" in report
    assert "HINT: pip install 'hephaestus-django[tasks]'" in report


def test_an_unknown_task_backend_is_e013(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "RUNNER": {
            **QUEUED["RUNNER"],
            "OPTIONS": {**QUEUED["RUNNER"]["OPTIONS"], "dispatcher_options": {"backend": "jobs"}},
        }
    }
    report = check()
    assert "hephaestus.E013" in report
    assert "'jobs'" in report


def test_the_database_backend_without_its_app_is_e012(settings: Settings) -> None:
    settings.HEPHAESTUS = QUEUED
    # procrastinate's app cannot be set up twice in one process: it goes too
    with modify_settings(
        INSTALLED_APPS={"remove": ["django_tasks_db", "procrastinate.contrib.django"]}
    ):
        report = check("ERROR")
    assert "settings.INSTALLED_APPS: (hephaestus.E012)" in report
    assert "'django_tasks_db' is not in INSTALLED_APPS" in report
    assert "manage.py migrate" in report


def test_a_queue_the_backend_does_not_serve_is_e014(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "RUNNER": {
            **QUEUED["RUNNER"],
            "OPTIONS": {
                **QUEUED["RUNNER"]["OPTIONS"],
                "dispatcher_options": {"queue_name": "elsewhere"},
            },
        }
    }
    report = check()
    assert "hephaestus.E014" in report
    assert "'elsewhere'" in report


def test_a_backend_that_is_not_a_database_backend_is_a_warning(settings: Settings) -> None:
    """Not an error: the jobs are enqueued after the commit and the sweep covers a crash in
    between. It does not fail ``check`` at its default level."""
    settings.HEPHAESTUS = QUEUED
    settings.TASKS = {"default": {"BACKEND": immediate_backend()}}
    report = check()
    assert "hephaestus.W002" in report
    assert "is not on a database backend" in report
    assert "hephaestus.W003" in report  # the immediate backend cannot delay a wake-up
    assert check(fail_level="ERROR") == ""


def test_a_storage_on_another_database_than_the_tasks_is_a_warning(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        **QUEUED,
        "STORAGES": {
            "default": {"BACKEND": "hephaestus_django.storage.DjangoStorage"},
            "tenant": {
                "BACKEND": "hephaestus_django.storage.DjangoStorage",
                "OPTIONS": {"using": "other"},
            },
        },
    }
    report = check()
    (line,) = [line for line in report.splitlines() if "hephaestus.W002" in line]
    assert line.startswith("settings.HEPHAESTUS['STORAGES']['tenant']: (hephaestus.W002)")
    assert "stores in database 'other'" in line
    assert "Django Tasks keeps its jobs in database 'default'" in line


def test_a_local_runner_gets_no_tasks_message(settings: Settings) -> None:
    settings.TASKS = {"default": {"BACKEND": immediate_backend()}}
    assert check() == ""


# --- the docs' "Running on workers" for Django Tasks ---------------------------------------------


def docs_block(fragment: str) -> str:
    return block("docs/guides/workers.md", fragment)


@pytest.mark.django_db
def test_the_docs_tasks_settings_pass_the_checks(settings: Settings) -> None:
    """Its settings, applied to a project that has hephaestus_django, configure a queued
    runner whose tasks commit with its transitions, and nothing to warn about."""
    namespace: dict[str, Any] = {"INSTALLED_APPS": ["hephaestus_django"]}
    exec(docs_block('"django_tasks_db.DatabaseBackend"'), namespace)
    assert namespace["INSTALLED_APPS"] == ["hephaestus_django", "django_tasks_db"]
    settings.TASKS = namespace["TASKS"]
    settings.HEPHAESTUS = namespace["HEPHAESTUS"]

    assert check() == ""
    dispatcher = conf.runner.get().dispatcher
    assert isinstance(dispatcher, TasksDispatcher)
    assert dispatcher.joins_transaction(storages["default"])


def test_the_docs_tasks_commands_are_the_process_tests() -> None:
    """The process tests (``test_workers.py``: ``Workers.worker`` and ``Workers.sweep``) run
    these very commands, with test-friendly options."""
    commands = [line.split()[2] for line in docs_block("manage.py db_worker").splitlines()]
    assert commands == [TASKS.worker(1)[0], "hephaestus_worker"]
