"""A deleted instance stays deleted, whichever process is running its step.

An instance is deleted (``storage.delete``, as the admin's delete does) or cancelled and then
pruned (``manage.py hephaestus_prune``) by this process while one of its steps runs in another:
a ``LocalRunner`` process that started it, or a worker of each job engine. When the step ends,
its result's write finds the row gone: the row is not re-created and the next step never runs.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from hephaestus_django import InstanceNotFound
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import ENGINES, Engine, Workers, all_completed, spawn_workers
from tests.processes.children import Children

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REMOVALS = ["delete", "cancel-then-prune"]


def remove(instance_id: uuid.UUID, removal: str) -> None:
    """Delete the instance, or cancel it and prune the cancelled instances."""
    if removal == "delete":
        DjangoStorage().delete(instance_id)
        return
    workflows.Held.cancel(instance_id)
    time.sleep(1.1)  # prune deletes what has not changed for at least --older-than
    call_command("hephaestus_prune", "--status", "cancelled", "--older-than", "1s")


def stays_deleted(instance_id: uuid.UUID, folder: Path) -> None:
    with pytest.raises(InstanceNotFound):
        DjangoStorage().get(instance_id)
    assert not list(folder.glob("ship-*")), "the step after the deletion ran"


def wait_until(done: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    """Poll until ``done`` (a bound on a hang, not a timing assertion)."""
    deadline = time.monotonic() + 120
    while not done():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.05)


def ids_of(workflow: type[workflows.Held]) -> list[uuid.UUID]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM workflow_instances WHERE workflow = %s", [workflow.path()])
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


@pytest.mark.parametrize("removal", REMOVALS)
def test_local_runner_an_instance_removed_while_its_step_runs_stays_deleted(
    children: Children, tmp_path: Path, removal: str
) -> None:
    """The process that started the instance is running its step; the start reports the
    deletion (``InstanceDeletedError``) once the step ends."""
    release, folder = tmp_path / "release", tmp_path / "runs"
    folder.mkdir()
    context = {"dir": str(folder), "release": str(release)}
    process = children.spawn("start", {"workflow": workflows.Held.path(), "context": context})
    wait_until(lambda: any(folder.glob("hold-*")), "the step starting", process)
    [instance_id] = ids_of(workflows.Held)

    remove(instance_id, removal)
    release.touch()
    _, err = process.communicate(timeout=120)

    assert process.returncode != 0
    assert f"InstanceDeletedError: workflow instance {instance_id} not found" in err
    stays_deleted(instance_id, folder)


@pytest.fixture(params=ENGINES, ids=str)
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workers]:
    engine: Engine = request.param
    yield from spawn_workers(engine, tmp_path, lease=60)


@pytest.mark.parametrize("removal", REMOVALS)
def test_queued_an_instance_removed_while_its_step_runs_stays_deleted(
    workers: Workers, tmp_path: Path, removal: str
) -> None:
    """A worker of the job engine is running the step: the job drops its result (logged),
    enqueues nothing, and does not fail; an instance beside it completes."""
    release = tmp_path / "release"
    folders = [tmp_path / "removed", tmp_path / "kept"]
    for folder in folders:
        folder.mkdir()
    workers.worker("worker-1")
    workers.worker("worker-2")  # each holds one step
    removed, kept = (
        workflows.Held.start({"dir": str(folder), "release": str(release)}) for folder in folders
    )
    workers.wait_for(
        lambda: all(any(folder.glob("hold-*")) for folder in folders), "both steps starting"
    )

    remove(removed, removal)
    release.touch()
    workers.wait_for(all_completed([kept]), "the other instance completing")
    workers.wait_for(
        lambda: "the instance no longer exists" in workers.logs(), "the removed one's job ending"
    )

    stays_deleted(removed, folders[0])
    assert workers.engine.failed() == 0
