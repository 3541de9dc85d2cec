"""Pausing a whole workflow or one version (``pause_all``/``unpause_all``) through the public
API: both storages, both runners."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus_django import Status, Workflow
from hephaestus_django.core.pause import PAUSED_KEY
from hephaestus_django.runtime.contract import Storage
from tests.pauses import TRAIL, Gated
from tests.support.runners import RUNNERS, STORAGES, Settle, runner_over, storage_named
from tests.versions import Onboarding, OnboardingV1

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    return storage_named(request.param)


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: Storage) -> Iterator[Settle]:
    TRAIL.clear()
    with runner_over(storage, request.param) as settle:
        yield settle
    TRAIL.clear()


def test_a_held_workflow_stores_new_starts_paused_and_unpause_all_runs_them(
    settle: Settle,
) -> None:
    waiting_id = Gated.start({})
    settle()
    alone_id = Gated.start({})
    settle()
    Gated.pause(alone_id, reason="one by one")

    assert Gated.pause_all(reason="deploy 42") == 1  # the other one was paused already
    held = Gated.get(waiting_id)
    assert held.runtime_metadata[PAUSED_KEY]["workflow"] is True
    assert "deploy 42" in held.runtime_metadata[PAUSED_KEY]["reason"]

    new_id = Gated.start({})  # stored, not run
    settle()
    new = Gated.get(new_id)
    assert new.status is Status.RUNNING
    assert PAUSED_KEY in new.runtime_metadata
    assert TRAIL[new.id] == []
    Gated.resume(waiting_id, "go")  # recorded, held
    settle()
    assert Gated.get(waiting_id).status is Status.RUNNING

    assert Gated.unpause_all() == 2
    settle()
    Gated.resume(new_id, "go")
    settle()
    assert Gated.get(waiting_id).status is Status.COMPLETED
    assert Gated.get(new_id).status is Status.COMPLETED
    assert TRAIL[new.id] == ["prepare", "finish"]
    alone = Gated.get(alone_id)  # paused one by one: it stays paused
    assert alone.runtime_metadata[PAUSED_KEY]["reason"] == "one by one"
    after_id = Gated.start({})  # no hold left
    settle()
    assert PAUSED_KEY not in Gated.get(after_id).runtime_metadata
    assert Gated.get(after_id).status is Status.WAITING


def test_a_held_version_leaves_the_others_running(settle: Settle) -> None:
    old_id = Onboarding.start({"email": "a@example.com"}, version=1)
    settle()
    assert OnboardingV1.pause_all() == 1  # a version class holds its own version
    new_id = Onboarding.start({"email": "b@example.com"})  # version 2: not held
    settle()
    assert PAUSED_KEY not in Onboarding.get(new_id).runtime_metadata
    assert Onboarding.get(new_id).status is Status.WAITING
    held_id = Onboarding.start({"email": "c@example.com"}, version=1)
    settle()
    assert PAUSED_KEY in Onboarding.get(held_id).runtime_metadata

    assert Onboarding.unpause_all(version=1) == 2
    settle()
    assert PAUSED_KEY not in Onboarding.get(old_id).runtime_metadata
    assert Onboarding.get(held_id).status is Status.WAITING


def test_pause_all_refuses_the_abstract_base_and_an_unknown_version(settle: Settle) -> None:
    with pytest.raises(TypeError, match="abstract"):
        Workflow.pause_all()
    with pytest.raises(ValueError, match="no version 7"):
        Onboarding.pause_all(version=7)
