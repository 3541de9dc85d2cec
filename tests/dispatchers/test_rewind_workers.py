"""Rewind racing a running queued step, with real worker processes, for each job engine: the
step's late result (computed before the rewind) is never recorded, whether it comes back
before or after the run the rewind enqueued; that run's result is.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hephaestus_django import Status
from hephaestus_django.core.rewind import REWOUND
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import (
    Workers,
    all_completed,
    recorded,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_late_result_of_a_step_running_when_rewound_is_never_recorded(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    workers.worker("worker-1")
    workers.worker("worker-2")
    instance_id = workflows.Relayed.start({"dir": str(ran)})
    workers.wait_for(lambda: any(ran.glob("relay-1-*")), "the step's first run starting")

    workflows.Relayed.rewind(instance_id, to=workflows.Relay)
    workers.wait_for(lambda: any(ran.glob("relay-2-*")), "the rewind's run of the step starting")

    (ran / "release1").touch()  # the first run returns now, after the rewind: too late
    workers.wait_for((ran / "returned1").exists, "the first run returning")
    storage = DjangoStorage()
    assert storage.get(instance_id).context.result(workflows.Relay) is None
    (ran / "release2").touch()
    workers.wait_for(all_completed([instance_id]), "the instance completing")

    instance = storage.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert instance.context.result(workflows.Relay)["run"] == 2
    completions = [e.step for e in instance.execution_history if e.event != REWOUND]
    assert completions.count(workflows.Relay) == 1
    assert recorded(instance)["Ship"] == 1
    assert [e.step for e in instance.execution_history if e.event == REWOUND] == [workflows.Relay]
    assert len(list(ran.glob("ship-*"))) == 1
    assert workers.engine.failed() == 0
