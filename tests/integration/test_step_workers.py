"""Workers that die are seen: ``hephaestus_status --check`` and the dashboard read
``QueuedRunner``'s queue in the job engine's own table (procrastinate's, django-tasks-db's) and
the step workers' records, and fail when jobs wait too long or no step worker is seen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from hephaestus_django import LocalRunner
from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher
from hephaestus_django.queues.tasks import TasksDispatcher
from hephaestus_django.runtime import QueuedRunner, configure
from hephaestus_django.runtime.queued import observe_jobs, receive
from hephaestus_django.storage import DjangoStorage
from hephaestus_django.worker_passes import JobRecorder
from tests import flows

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:hephaestus_django_workflowinstance_dashboard")


def status(*args: str) -> tuple[int, str, str]:
    """Run the command: (exit status, stdout, the error's message)."""
    out = StringIO()
    try:
        call_command("hephaestus_status", *args, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue(), str(error)
    return 0, out.getvalue(), ""


def check(*args: str) -> tuple[int, str, str]:
    """``--check`` with only this module's thresholds on (the others are tested elsewhere)."""
    return status(
        "--check",
        "--max-overdue=off",
        "--max-stalled=off",
        "--max-quarantined=off",
        "--max-worker-silence=off",
        *args,
    )


@pytest.fixture
def procrastinate() -> Iterator[None]:
    runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue="hephaestus"), lease=30)
    configure(storages={"default": DjangoStorage()}, runner=runner)
    yield
    runner.close()
    configure()


@pytest.fixture
def tasks() -> Iterator[None]:
    runner = QueuedRunner(dispatcher=TasksDispatcher(), lease=30)
    configure(storages={"default": DjangoStorage()}, runner=runner)
    yield
    runner.close()
    configure()


def sql(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def jobs_waited(engine: str, ago: str) -> None:
    """Every queued job of ``engine`` enqueued ``ago`` (a PostgreSQL interval)."""
    if engine == "procrastinate":
        sql("UPDATE procrastinate_events SET at = now() - %s::interval", [ago])
    else:
        sql(
            "UPDATE django_tasks_database_dbtaskresult SET enqueued_at = now() - %s::interval",
            [ago],
        )


def step_worker_seen(ago: str) -> None:
    sql(
        "INSERT INTO hephaestus_worker_passes (worker, storage, role, host, pid, started_at, "
        "last_pass_at, passes, handled) VALUES ('host-b:7', 'default', 'jobs', 'host-b', 7, "
        "now() - interval '1 hour', now() - %s::interval, 5, 0)",
        [ago],
    )


def test_with_local_runner_there_is_no_queue_to_watch() -> None:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        code, out, _ = check()
        document = json.loads(status("--json")[1])
    finally:
        configure()
    assert code == 0
    assert "--max-queue-wait" not in out
    assert "--max-step-worker-silence" not in out
    assert document["queue"] is None


@pytest.mark.usefixtures("procrastinate")
def test_procrastinate_jobs_waiting_with_no_worker_alive_fail_the_check() -> None:
    for _ in range(3):
        flows.IfElse.start({"script": {}})
    jobs_waited("procrastinate", "10 minutes")

    code, out, message = check()

    assert code == 1
    assert "CROSSED --max-queue-wait 5m00s: 3 job(s) wait in the procrastinate queue " in out
    assert "'hephaestus', the oldest for 10m0" in out
    assert "CROSSED --max-step-worker-silence 2m00s: no step worker was ever seen" in out
    assert message.startswith("threshold crossed: --max-queue-wait 5m00s (3 job(s) wait")


@pytest.mark.usefixtures("procrastinate")
def test_a_procrastinate_worker_heartbeat_is_a_step_worker_seen_even_idle() -> None:
    sql("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '5 seconds')")
    code, out, _ = check()
    assert code == 0, out
    assert "ok      --max-queue-wait 5m00s: no job waits in the procrastinate queue" in out
    assert "ok      --max-step-worker-silence 2m00s: the last step worker was seen 5" in out

    sql("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '3 minutes'")
    code, out, _ = check()
    assert code == 1  # idle, but procrastinate's workers beat while idle: gone
    assert "CROSSED --max-step-worker-silence 2m00s: the last step worker was seen 3m0" in out


@pytest.mark.usefixtures("procrastinate")
def test_a_backlog_under_live_workers_crosses_the_queue_wait_only() -> None:
    flows.IfElse.start({"script": {}})
    jobs_waited("procrastinate", "10 minutes")
    sql("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
    code, out, _ = check()
    assert code == 1
    assert "CROSSED --max-queue-wait" in out
    assert "ok      --max-step-worker-silence" in out
    assert check("--max-queue-wait=15m")[0] == 0
    assert check("--max-queue-wait=off")[0] == 0


@pytest.mark.usefixtures("tasks")
def test_django_tasks_waiting_with_no_db_worker_seen_fail_the_check() -> None:
    flows.IfElse.start({"script": {}})
    flows.IfElse.start({"script": {}})
    jobs_waited("tasks", "3 minutes")

    code, out, _ = check()

    assert code == 1
    assert (
        "ok      --max-queue-wait 5m00s: 2 job(s) wait in the Django Tasks queue 'default'" in out
    )
    assert (
        "CROSSED --max-step-worker-silence 2m00s: no step worker was ever seen; the oldest of "
        "the waiting jobs waits 3m0" in out
    )
    step_worker_seen("30 seconds")  # a db_worker took a job half a minute ago: it lives
    assert check()[0] == 0


@pytest.mark.usefixtures("tasks")
def test_an_idle_db_worker_cannot_be_seen_so_it_is_not_reported_missing() -> None:
    step_worker_seen("2 hours")
    code, out, _ = check()
    assert code == 0, out
    assert "the last step worker was seen 2h00m ago; no job waits for one" in out
    flows.IfElse.start({"script": {}})  # a job just enqueued: no worker has had time yet
    assert check()[0] == 0


@pytest.mark.usefixtures("procrastinate")
def test_an_unreadable_queue_fails_the_check_rather_than_saying_ok() -> None:
    sql("ALTER TABLE procrastinate_jobs RENAME TO procrastinate_jobs_gone")
    code, out, _ = check()
    assert code == 1
    assert "CROSSED --max-queue-wait 5m00s: the procrastinate queue could not be read" in out


@pytest.mark.django_db(transaction=True)  # the in-memory queue is given its jobs on commit
def test_a_job_received_by_a_worker_records_the_step_worker() -> None:
    from hephaestus_django.runtime import InMemoryDispatcher

    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": DjangoStorage()}, runner=runner)
    # A recorder of its own: the app's, installed by ready(), may have recorded in the last ten
    # seconds (another test's job), and then waits before it records again.
    stop_observing = observe_jobs(JobRecorder())
    try:
        flows.IfElse.start({"script": {}})
        [job] = dispatcher.take()
        receive(job.payload())  # what procrastinate's worker and db_worker call
    finally:
        stop_observing()
        runner.close()
        configure()
    with connection.cursor() as cursor:
        cursor.execute("SELECT storage, role, passes >= 1 FROM hephaestus_worker_passes")
        assert cursor.fetchall() == [("default", "jobs", True)]
        cursor.execute("DELETE FROM hephaestus_worker_passes")


@pytest.mark.usefixtures("procrastinate")
def test_the_dashboard_shows_the_queue_and_the_step_workers(admin_client: Client) -> None:
    flows.IfElse.start({"script": {}})
    jobs_waited("procrastinate", "10 minutes")
    page = admin_client.get(DASHBOARD).content.decode()
    assert 'class="hx-card hx-card-bad" id="hx-card-queue"' in page
    assert "1 job(s) wait in the procrastinate queue &#x27;hephaestus&#x27;" in page
    assert 'class="hx-card hx-card-bad" id="hx-card-step-workers"' in page
    assert "are the procrastinate workers running, under a supervisor?" in page

    sql("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
    sql("DELETE FROM procrastinate_jobs")
    page = admin_client.get(DASHBOARD).content.decode()
    assert 'class="hx-card" id="hx-card-queue"' in page
    assert 'class="hx-card" id="hx-card-step-workers"' in page


def test_the_dashboard_without_a_queue_shows_no_queue_card(admin_client: Client) -> None:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        page = admin_client.get(DASHBOARD).content.decode()
    finally:
        configure()
    assert "hx-card-queue" not in page


@pytest.mark.django_db(transaction=True)
def test_the_step_workers_migration_is_reversible() -> None:
    step_worker_seen("1 second")
    sql(  # the same process's sweep row: one of each role, as a process may both sweep and run
        "INSERT INTO hephaestus_worker_passes (worker, storage, role, host, pid, passes, handled) "
        "VALUES ('host-b:7', 'default', 'sweep', 'host-b', 7, 1, 0)"
    )
    call_command("migrate", "hephaestus_django", "0010", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT worker, storage FROM hephaestus_worker_passes")
        assert cursor.fetchall() == [("host-b:7", "default")]  # the jobs row is forgotten
    call_command("migrate", "hephaestus_django", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT role FROM hephaestus_worker_passes")
        assert cursor.fetchall() == [("sweep",)]
        cursor.execute("DELETE FROM hephaestus_worker_passes")
