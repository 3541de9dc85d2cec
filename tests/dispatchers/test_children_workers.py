"""Child workflows on ``QueuedRunner`` with real worker processes, for each job engine: a worker
killed with ``kill -9`` in the middle of a child's step leaves the child to recover like any
instance (its lease lapses, the sweep enqueues the step again), and the parent's next step
runs once, after the child's end.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import Workers, all_completed, recorded

pytestmark = pytest.mark.django_db(transaction=True)


def markers(folder: Path, prefix: str) -> list[str]:
    """The marker files of the runs of the step whose key starts ``prefix``, in attempt order."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(prefix))


@pytest.mark.slow
def test_a_childs_worker_killed_mid_step_the_child_recovers_and_the_parent_joins_once(
    short_lease_workers: Workers, tmp_path: Path
) -> None:
    workers = short_lease_workers
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    first = workers.worker("worker-1")
    parent_id = workflows.CrunchingParent.start({"dir": str(attempts)})
    workers.wait_for(lambda: bool(markers(attempts, "crunch-")), "the child's first attempt")

    first.send_signal(signal.SIGKILL)  # kill -9 in the middle of the child's step
    first.wait()
    second = workers.worker("worker-2")
    workers.sweep()

    workers.wait_for(all_completed([parent_id]), "the child recovering and the parent joining")
    storage = DjangoStorage()
    parent = storage.get(parent_id)
    child = storage.get(parent.children["crunch_as_child"])
    assert child.parent == parent_id
    assert recorded(child) == {"First": 1, "Crunch": 1, "Done": 1}
    assert markers(attempts, "crunch-") == [f"crunch-1-{first.pid}", f"crunch-2-{second.pid}"]
    assert recorded(parent) == {"CrunchAsChild": 1, "Joined": 1, "Done": 1}
    assert markers(attempts, "joined-") == [f"joined-1-{second.pid}"]  # the join ran once
    assert parent.context.result(workflows.CrunchAsChild) == child.context.steps
    assert f"took over instance {child.id}" in (tmp_path / "sweep.log").read_text()
