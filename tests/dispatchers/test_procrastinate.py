"""``ProcrastinateDispatcher`` itself: its jobs' rows, options, task registration, checks.

The tests with real ``manage.py procrastinate worker`` processes are in
``test_workers.py`` and ``test_procrastinate_workers.py``; what every adapter does (the
transaction too) is in ``test_contract.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from hephaestus_django import InstanceDeletedError, StaleInstanceError, signals
from hephaestus_django.core import engine
from hephaestus_django.queues.procrastinate import (
    DEFER_FUNCTION,
    JOB_FIELDS,
    JOB_TYPE,
    STEP_TASK,
    WAKE_UP_TASK,
    ProcrastinateDispatcher,
    defer_statement,
    register_tasks,
)
from hephaestus_django.runtime import InMemoryStorage, QueuedRunner, configure, queued
from hephaestus_django.runtime.dispatch import StepJob, WakeUp
from hephaestus_django.runtime.queued import receive
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.harness_procrastinate import clear_jobs, procrastinate_app
from tests.processes.children import REPO

if TYPE_CHECKING:
    from pytest_django import Settings

DISPATCHER = "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher"
QUEUED_RUNNER = {
    "BACKEND": "hephaestus_django.runtime.QueuedRunner",
    "OPTIONS": {"dispatcher": DISPATCHER},
}


# --- the dispatcher ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_steps_are_deferred_to_the_configured_queue_with_their_priority() -> None:
    dispatcher = ProcrastinateDispatcher(queue="elsewhere", priority=7)
    jobs = [StepJob("default", uuid.uuid4(), workflows.First.path()) for _ in range(3)]
    dispatcher.enqueue_steps(jobs)

    with connection.cursor() as cursor:
        cursor.execute("SELECT queue_name, task_name, priority FROM procrastinate_jobs ORDER BY id")
        rows = cursor.fetchall()
        cursor.execute("TRUNCATE procrastinate_jobs CASCADE")
    assert rows == [("elsewhere", STEP_TASK, 7)] * 3


@pytest.mark.django_db(transaction=True)
def test_an_instances_priority_is_added_to_its_step_jobs() -> None:
    dispatcher = ProcrastinateDispatcher(priority=7)
    dispatcher.enqueue_steps(
        [
            StepJob("default", uuid.uuid4(), workflows.First.path(), priority=priority)
            for priority in (0, 5, -3, 2**31 - 1)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT priority FROM procrastinate_jobs ORDER BY id")
        rows = [row[0] for row in cursor.fetchall()]
        cursor.execute("TRUNCATE procrastinate_jobs CASCADE")
    assert rows == [7, 12, 4, 2**31 - 1]  # the largest stays within the column


# --- the defer statement: procrastinate's own ------------------------------------------------

JOB_COLUMNS = (
    "queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, status,"
    " attempts, abort_requested, worker_id"
)


@pytest.mark.django_db
def test_the_defer_statement_calls_the_function_and_type_procrastinates_own_defer_sends() -> None:
    """What procrastinate's connector sends to defer a job names the same function, with the
    same argument type, whose fields come in the order our ``ROW(...)`` writes them: a
    procrastinate release that changes its defer statement fails here, not in production."""
    from procrastinate import sql, types

    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        procrastinate_app().configure_task(STEP_TASK, queue="q").defer(payload={})
        transaction.set_rollback(True)
    sent = " ".join(query["sql"] for query in captured.captured_queries)
    assert f"{DEFER_FUNCTION}(" in sent
    assert f"::{JOB_TYPE}[]" in sent
    assert f"{DEFER_FUNCTION}(" in sql.queries["defer_jobs"]
    assert types.JobToDefer._fields == JOB_FIELDS

    ours, params = defer_statement([("q", STEP_TASK, 0, {"payload": {}}, None)])
    assert f"{DEFER_FUNCTION}(ARRAY[ROW(" in ours
    assert ours.endswith(f"]::{JOB_TYPE}[])) AS id")
    assert len(params) == ours.count("%s") == 5


@pytest.mark.django_db
def test_the_databases_defer_function_takes_the_fields_in_our_order() -> None:
    """The function and its type as procrastinate's migrations created them in this database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_function_identity_arguments(%s::regproc)",
            [DEFER_FUNCTION],
        )
        assert cursor.fetchone() == (f"jobs {JOB_TYPE}[]",)
        cursor.execute(
            "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute"
            " WHERE attrelid = (SELECT typrelid FROM pg_type WHERE oid = %s::regtype)"
            " AND attnum > 0 AND NOT attisdropped",
            [JOB_TYPE],
        )
        row = cursor.fetchone()
    assert row is not None
    assert tuple(row[0]) == JOB_FIELDS


@pytest.mark.django_db(transaction=True)
def test_our_jobs_are_the_rows_procrastinates_own_defer_writes() -> None:
    """A step job and a wake-up, deferred by the dispatcher and by procrastinate's API with
    the same task, queue, priority, payload and time: the same rows."""
    at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    step = StepJob("default", uuid.uuid4(), workflows.First.path())
    wakeup = WakeUp("default", uuid.uuid4(), at)
    dispatcher = ProcrastinateDispatcher(queue="compared", priority=3, wakeup_priority=-2)
    app = procrastinate_app()
    try:
        dispatcher.enqueue_steps([step])
        dispatcher.enqueue_wakeup(wakeup)
        app.configure_task(STEP_TASK, queue="compared", priority=3).defer(payload=step.payload())
        app.configure_task(WAKE_UP_TASK, queue="compared", priority=-2, schedule_at=at).defer(
            payload=wakeup.payload()
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {JOB_COLUMNS} FROM procrastinate_jobs ORDER BY id")
            ours_step, ours_wakeup, their_step, their_wakeup = cursor.fetchall()
    finally:
        clear_jobs()
    assert ours_step == their_step
    assert ours_wakeup == their_wakeup
    assert ours_wakeup[6] == at


@pytest.mark.django_db(transaction=True)
def test_a_committed_job_notifies_the_workers_queue() -> None:
    """procrastinate's insert trigger sends the NOTIFY its workers LISTEN for, at the commit."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    listener = psycopg.connect(**params, autocommit=True)
    try:
        listener.execute('LISTEN "procrastinate_queue_v1#notified"')
        with transaction.atomic():
            ProcrastinateDispatcher(queue="notified").enqueue_steps(
                [StepJob("default", uuid.uuid4(), workflows.First.path())]
            )
            assert not list(listener.notifies(timeout=0.2, stop_after=1))
        received = list(listener.notifies(timeout=10, stop_after=1))
    finally:
        listener.close()
        clear_jobs()
    assert [note.channel for note in received] == ["procrastinate_queue_v1#notified"]
    assert json.loads(received[0].payload)["type"] == "job_inserted"


# --- a step's result and the next step's job: one statement ----------------------------------


@pytest.fixture
def chain_runner() -> Iterator[QueuedRunner]:
    """``QueuedRunner`` on ``ProcrastinateDispatcher`` and ``DjangoStorage``, configured."""
    runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue=FOLDED_QUEUE), lease=60)
    configure(storages={"default": DjangoStorage(using="default")}, runner=runner)
    try:
        yield runner
    finally:
        configure()
        runner.close()
        clear_jobs()


FOLDED_QUEUE = "folded"


def job_rows() -> list[tuple[str, dict[str, str]]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT task_name, args->'payload' FROM procrastinate_jobs ORDER BY id")
        rows = cursor.fetchall()
    return [(task, json.loads(payload)) for task, payload in rows]


@pytest.mark.django_db(transaction=True)
def test_a_job_records_its_step_and_defers_the_next_in_one_statement(
    chain_runner: QueuedRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark (which is also the read) and the result's write, which defers the next step's
    job in its own statement: no transaction of a write and a separate defer. (A step worker's
    sign of life, one upsert per process every 10 s at most, is no cost of a job: left out here,
    tested in ``tests/integration/test_step_workers.py``.)"""
    monkeypatch.setattr(queued, "_observers", [])
    instance_id = workflows.Chain.start({})
    [(task, payload)] = job_rows()
    assert task == STEP_TASK
    clear_jobs()
    with CaptureQueriesContext(connection) as queries:
        receive(payload)
    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert statements == ["UPDATE", "WITH"], statements
    assert DEFER_FUNCTION in queries.captured_queries[1]["sql"]
    assert job_rows() == [
        (STEP_TASK, StepJob("default", instance_id, workflows.Second.path()).payload())
    ]
    assert [entry.step for entry in workflows.Chain.get(instance_id).execution_history] == [
        workflows.First
    ]


@pytest.mark.django_db(transaction=True)
def test_a_job_recorded_with_its_next_jobs_in_one_statement_sends_its_signals(
    chain_runner: QueuedRunner,
) -> None:
    """The folded write (result and next jobs in one statement) tells the lifecycle listeners
    as every other write does: the Django signals of the step's completion are sent."""
    received: list[tuple[str, str]] = []

    def step_done(sender: Any, *, step: Any, **kwargs: Any) -> None:
        received.append(("step_completed", step.__name__))

    def instance_done(sender: Any, **kwargs: Any) -> None:
        received.append(("instance_completed", sender.__name__))

    signals.step_completed.connect(step_done, weak=False)
    signals.instance_completed.connect(instance_done, weak=False)
    try:
        instance_id = workflows.Chain.start({})
        for _ in range(3):
            [(_, payload)] = job_rows()
            clear_jobs()
            receive(payload)
    finally:
        signals.step_completed.disconnect(step_done)
        signals.instance_completed.disconnect(instance_done)
    assert workflows.Chain.get(instance_id).status.value == "completed"
    assert received == [
        ("step_completed", "First"),
        ("step_completed", "Second"),
        ("step_completed", "Third"),
        ("step_completed", "Done"),
        ("instance_completed", "Chain"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_stale_put_with_jobs_writes_and_defers_nothing(chain_runner: QueuedRunner) -> None:
    storage = DjangoStorage(using="default")
    instance = storage.get(workflows.Chain.start({}))
    clear_jobs()
    storage.put(storage.get(instance.id))  # another writer: ``instance`` is now stale
    jobs = chain_runner.dispatcher.jobs_for_put(  # type: ignore[attr-defined]
        [StepJob("default", instance.id, workflows.Second.path())], None, storage
    )
    with pytest.raises(StaleInstanceError):
        storage.put_with_jobs(instance, jobs)
    assert job_rows() == []


@pytest.mark.django_db(transaction=True)
def test_a_put_with_jobs_of_a_deleted_instance_writes_and_defers_nothing(
    chain_runner: QueuedRunner,
) -> None:
    storage = DjangoStorage(using="default")
    instance = storage.get(workflows.Chain.start({}))
    clear_jobs()
    storage.delete(instance.id)
    jobs = chain_runner.dispatcher.jobs_for_put(  # type: ignore[attr-defined]
        [StepJob("default", instance.id, workflows.Second.path())], None, storage
    )
    with pytest.raises(InstanceDeletedError):
        storage.put_with_jobs(instance, jobs)
    assert job_rows() == []
    assert storage.query(id=instance.id) == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_put_with_jobs_leaves_neither(chain_runner: QueuedRunner) -> None:
    storage = DjangoStorage(using="default")
    instance = storage.get(workflows.Chain.start({}))
    clear_jobs()
    revision = instance.revision
    jobs = chain_runner.dispatcher.jobs_for_put(  # type: ignore[attr-defined]
        [], WakeUp("default", instance.id, datetime(2031, 1, 1, tzinfo=UTC)), storage
    )
    with transaction.atomic():
        storage.put_with_jobs(instance, jobs)
        assert [task for task, _ in job_rows()] == [WAKE_UP_TASK]
        transaction.set_rollback(True)
    assert job_rows() == []
    assert storage.get(instance.id).revision == revision


@pytest.mark.django_db
def test_put_with_jobs_refuses_what_no_dispatcher_made() -> None:
    storage = DjangoStorage(using="default")
    instance = engine.start(engine.new_instance(workflows.Chain, {}))
    with pytest.raises(TypeError, match="jobs must be a JobsSQL or None"):
        storage.put_with_jobs(instance, "SELECT 1")
    storage.put_with_jobs(instance, None)  # nothing to enqueue: a put
    assert storage.get(instance.id).revision == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lost", ["answer", "statement"])
def test_a_put_with_jobs_after_a_dropped_connection_writes_and_defers_once(
    chain_runner: QueuedRunner, lost: str
) -> None:
    """Its answer lost (it landed: not made again), or lost before it ran (made again)."""
    storage = DjangoStorage(using="default")
    instance = storage.get(workflows.Chain.start({}))
    clear_jobs()
    jobs = chain_runner.dispatcher.jobs_for_put(  # type: ignore[attr-defined]
        [StepJob("default", instance.id, workflows.Second.path())], None, storage
    )
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        folded = sql.startswith("WITH written")
        if folded and lost == "statement" and len(seen) == 1:
            connection.connection.close()
        result = execute(sql, params, many, context)
        if folded and lost == "answer" and len(seen) == 1:
            connection.connection.close()
            raise OperationalError("server closed the connection unexpectedly")
        return result

    revision = instance.revision
    with connection.execute_wrapper(wrapper):
        storage.put_with_jobs(instance, jobs)
    assert sum(sql.startswith("WITH written") for sql in seen) == (1 if lost == "answer" else 2)
    assert instance.revision == storage.get(instance.id).revision == revision + 1
    assert [task for task, _ in job_rows()] == [STEP_TASK]


def _waiting_at_the_gate() -> Any:
    """A :class:`~tests.dispatchers.workflows.Gated` instance run to its wait, no job left."""
    instance_id = workflows.Gated.start({})
    [(_, payload)] = job_rows()
    clear_jobs()
    receive(payload)
    assert job_rows() == []
    return instance_id


@pytest.mark.django_db(transaction=True)
def test_a_resume_is_the_locked_read_and_one_write_that_defers_the_next_job(
    chain_runner: QueuedRunner,
) -> None:
    """``update_with_jobs``: the event's write and the job of the step it makes runnable are one
    statement after the row lock, in one transaction: no savepoint, no separate defer."""
    instance_id = _waiting_at_the_gate()
    with CaptureQueriesContext(connection) as queries:
        workflows.Gated.resume(instance_id, "go")
    statements = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"] not in ("BEGIN", "COMMIT")
    ]
    assert [sql.split()[0] for sql in statements] == ["SELECT", "WITH"]
    assert statements[0].endswith("FOR UPDATE")
    assert DEFER_FUNCTION in statements[1]
    assert job_rows() == [
        (STEP_TASK, StepJob("default", instance_id, workflows.Second.path()).payload())
    ]
    assert workflows.Gated.get(instance_id).active_steps == {workflows.Second}


@pytest.mark.django_db(transaction=True)
def test_an_update_with_jobs_that_changes_nothing_neither_writes_nor_asks_for_jobs(
    chain_runner: QueuedRunner,
) -> None:
    storage = DjangoStorage(using="default")
    instance_id = _waiting_at_the_gate()
    revision = storage.get(instance_id).revision
    asked: list[Any] = []
    same = storage.update_with_jobs(instance_id, lambda current: current, asked.append)
    assert asked == []
    assert job_rows() == []
    assert same.revision == storage.get(instance_id).revision == revision


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_resume_leaves_neither_its_write_nor_its_job(
    chain_runner: QueuedRunner,
) -> None:
    storage = DjangoStorage(using="default")
    instance_id = _waiting_at_the_gate()
    revision = storage.get(instance_id).revision
    with transaction.atomic():
        workflows.Gated.resume(instance_id, "go")
        assert [task for task, _ in job_rows()] == [STEP_TASK]
        transaction.set_rollback(True)
    assert job_rows() == []
    assert storage.get(instance_id).revision == revision


@pytest.mark.django_db(transaction=True)
def test_update_with_jobs_refuses_jobs_no_dispatcher_made(chain_runner: QueuedRunner) -> None:
    storage = DjangoStorage(using="default")
    instance_id = _waiting_at_the_gate()
    revision = storage.get(instance_id).revision
    with pytest.raises(TypeError, match="jobs must be a JobsSQL or None"):
        storage.update_with_jobs(
            instance_id,
            lambda current: engine.resume(current, "go", now=datetime.now(UTC)),
            lambda changed: "SELECT 1",
        )
    assert storage.get(instance_id).revision == revision
    assert job_rows() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lost", ["write", "commit"])
def test_a_resume_after_a_dropped_connection_writes_and_defers_once(
    chain_runner: QueuedRunner, lost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection lost after the write, before the commit (nothing landed: the whole locked
    update is made again, jobs and all), or during the commit (it landed: the row says so, and
    nothing is made again)."""
    storage = DjangoStorage(using="default")
    instance_id = _waiting_at_the_gate()
    revision = storage.get(instance_id).revision
    writes: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.startswith("WITH written"):
            writes.append(sql)
            if lost == "write" and len(writes) == 1:
                connection.connection.close()
                raise OperationalError("server closed the connection unexpectedly")
        return result

    commit = connection._commit

    def commit_then_lose() -> None:
        commit()
        if len(writes) == 1:
            connection.connection.close()
            raise OperationalError("server closed the connection unexpectedly")

    if lost == "commit":
        monkeypatch.setattr(connection, "_commit", commit_then_lose)
    with connection.execute_wrapper(wrapper):
        workflows.Gated.resume(instance_id, "go")
    monkeypatch.undo()
    assert len(writes) == (2 if lost == "write" else 1)
    assert storage.get(instance_id).revision == revision + 1
    assert [task for task, _ in job_rows()] == [STEP_TASK]


def test_joins_transaction_exactly_for_a_django_storage_on_procrastinates_alias(
    settings: Settings,
) -> None:
    dispatcher = ProcrastinateDispatcher()
    assert dispatcher.joins_transaction(DjangoStorage(using="default"))
    assert not dispatcher.joins_transaction(DjangoStorage(using="other"))
    assert not dispatcher.joins_transaction(InMemoryStorage())

    settings.PROCRASTINATE_DATABASE_ALIAS = "other"
    assert dispatcher.database_alias() == "other"
    assert dispatcher.joins_transaction(DjangoStorage(using="other"))
    assert not dispatcher.joins_transaction(DjangoStorage(using="default"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": ""}, "queue must be a non-empty string, not ''"),
        ({"queue": 3}, "queue must be a non-empty string, not 3"),
        ({"priority": "high"}, "priority must be an integer, not 'high'"),
        ({"wakeup_priority": True}, "wakeup_priority must be an integer, not True"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ProcrastinateDispatcher(**options)  # type: ignore[arg-type]


def test_a_dotted_path_with_options_builds_it() -> None:
    runner = QueuedRunner(dispatcher=DISPATCHER, dispatcher_options={"queue": "q", "priority": 2})
    assert repr(runner.dispatcher) == (
        "ProcrastinateDispatcher(queue='q', priority=2, wakeup_priority=2)"
    )


# --- the workers' tasks ---------------------------------------------------------------------


def test_the_tasks_are_registered_on_procrastinates_django_app_once() -> None:
    from procrastinate.contrib.django import app

    register_tasks()  # again, after the app's ready() did: nothing changes
    assert {STEP_TASK, WAKE_UP_TASK} <= set(app.tasks)
    assert app.tasks[STEP_TASK].queue == "default"  # deferring names the queue itself


# --- a project without procrastinate ----------------------------------------------------------

WITHOUT_PROCRASTINATE = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": json.loads(sys.argv[1])},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "django.contrib.postgres", "hephaestus_django"],
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command
    import hephaestus_django.queues.procrastinate as adapter
    adapter.ProcrastinateDispatcher()
    call_command("check")
    assert not any(name.startswith("procrastinate") for name in sys.modules), sorted(
        name for name in sys.modules if name.startswith("procrastinate"))
    print("NO PROCRASTINATE")
    """
)


@pytest.mark.django_db
def test_a_project_without_procrastinates_app_never_imports_procrastinate() -> None:
    """Setting up, checking, even importing the adapter and building a dispatcher."""
    database = {
        key: connection.settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
    }
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROCRASTINATE, json.dumps(database)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "NO PROCRASTINATE" in result.stdout


# --- system checks ----------------------------------------------------------------------------


def check_report(fail_level: str = "ERROR") -> str:
    """``manage.py check``'s report; it must fail at ``fail_level``."""
    with pytest.raises(SystemCheckError) as failure:
        call_command("check", fail_level=fail_level, stdout=StringIO(), stderr=StringIO())
    return str(failure.value)


def test_the_check_passes_with_procrastinate_set_up(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": QUEUED_RUNNER}
    call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())


def test_procrastinate_not_installed_is_e011_saying_which_extra(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.HEPHAESTUS = {"RUNNER": QUEUED_RUNNER}
    for name in [name for name in sys.modules if name.startswith("procrastinate")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "procrastinate", None)  # import procrastinate fails

    report = check_report()
    assert "(hephaestus.E011)" in report
    assert "procrastinate is not installed" in report
    assert "HINT: pip install 'hephaestus-django[procrastinate]'" in report


def test_procrastinates_app_not_installed_is_e012(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": QUEUED_RUNNER}
    settings.INSTALLED_APPS = [
        app for app in settings.INSTALLED_APPS if app != "procrastinate.contrib.django"
    ]

    report = check_report()
    assert "settings.INSTALLED_APPS: (hephaestus.E012)" in report
    assert "'procrastinate.contrib.django' is not in INSTALLED_APPS" in report
    assert "manage.py migrate" in report


def test_a_storage_on_another_alias_than_the_jobs_is_w002_naming_both(
    settings: Settings,
) -> None:
    settings.HEPHAESTUS = {
        "RUNNER": QUEUED_RUNNER,
        "STORAGES": {
            "default": {"BACKEND": "hephaestus_django.storage.DjangoStorage"},
            "tenant": {
                "BACKEND": "hephaestus_django.storage.DjangoStorage",
                "OPTIONS": {"using": "other"},
            },
        },
    }
    call_command("check", stdout=StringIO(), stderr=StringIO())  # a warning only

    report = check_report("WARNING")
    (line,) = [line for line in report.splitlines() if "hephaestus.W002" in line]
    assert line.startswith("settings.HEPHAESTUS['STORAGES']['tenant']: (hephaestus.W002)")
    assert "stores in database 'other'" in line
    assert "keeps its jobs in database 'default'" in line

    settings.PROCRASTINATE_DATABASE_ALIAS = "other"  # now it is the default storage that differs
    report = check_report("WARNING")
    (line,) = [line for line in report.splitlines() if "hephaestus.W002" in line]
    assert line.startswith("settings.HEPHAESTUS['STORAGES']['default']: (hephaestus.W002)")


def test_a_local_runner_is_not_held_to_procrastinate(settings: Settings) -> None:
    settings.INSTALLED_APPS = [
        app for app in settings.INSTALLED_APPS if app != "procrastinate.contrib.django"
    ]
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": "hephaestus_django.runtime.LocalRunner"}}
    call_command("check", fail_level="WARNING", stdout=StringIO(), stderr=StringIO())
