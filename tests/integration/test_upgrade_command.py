"""``manage.py hephaestus_upgrade``: batches, dry run, the report of refused instances, resuming."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from uuid import UUID

import pytest
from django.core.management import CommandError, call_command

from hephaestus_django import LocalRunner, Status
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.versions import Onboarding, OnboardingV2

pytestmark = pytest.mark.django_db

PATH = "tests.versions.Onboarding"


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def upgrade(*args: str) -> tuple[str, CommandError | None]:
    """Run the command; its output, and the CommandError it ended with (None: success)."""
    out = StringIO()
    try:
        call_command("hephaestus_upgrade", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def versions() -> dict[UUID, int]:
    return dict(WorkflowInstance.objects.values_list("id", "workflow_version"))


@pytest.fixture
def population() -> dict[str, list[UUID]]:
    waiting = [Onboarding.start({"email": f"{n}@example.com"}, version=1) for n in range(5)]
    failed = [Onboarding.start({"legacy_down": True}, version=1)]
    current = [Onboarding.start({})]
    return {"waiting": waiting, "failed": failed, "current": current}


def test_a_dry_run_reports_and_writes_nothing(population: dict[str, list[UUID]]) -> None:
    before = dict(WorkflowInstance.objects.values_list("id", "revision"))
    out, error = upgrade(PATH, "--from", "1", "--to", "2", "--dry-run", "--batch-size", "2")
    assert dict(WorkflowInstance.objects.values_list("id", "revision")) == before
    (failed,) = population["failed"]
    assert f"refused {failed}: it is failed at step LegacyCheck, which version 2 drops" in out
    assert (
        "Dry run: tests.versions.Onboarding version 1 -> 2: 5 would be upgraded, 1 refused, "
        "0 error(s), in 3 batch(es)." in out
    )
    assert error is not None
    assert "1 instance(s) refused and 0 error(s): they are left at version 1" in str(error)


def test_upgrades_in_batches_and_resumes(population: dict[str, list[UUID]]) -> None:
    out, error = upgrade(PATH, "--from", "1", "--to", "2", "--batch-size", "2")
    assert "5 upgraded, 1 refused, 0 error(s), in 3 batch(es)." in out
    assert error is not None  # one refused: a non-zero exit
    found = versions()
    assert all(found[i] == 2 for i in population["waiting"])
    assert found[population["failed"][0]] == 1
    assert Onboarding.get(population["waiting"][0]).workflow is OnboardingV2
    assert Onboarding.get(population["waiting"][0]).status is Status.WAITING

    # run again: only what is left at version 1 is looked at
    out, error = upgrade(PATH, "--from", "1", "--batch-size", "2")
    assert "0 upgraded, 1 refused, 0 error(s), in 1 batch(es)." in out
    assert error is not None

    # the refused one is dealt with (here: deleted); the next run finishes cleanly
    Onboarding.get(population["failed"][0])
    WorkflowInstance.objects.filter(id=population["failed"][0]).delete()
    out, error = upgrade(PATH, "--from", "1", "--to", "2")
    assert error is None
    assert "0 upgraded, 0 refused, 0 error(s), in 0 batch(es)." in out


def test_an_unreadable_row_is_an_error_and_the_others_go_on(
    population: dict[str, list[UUID]],
) -> None:
    broken = population["waiting"][0]
    WorkflowInstance.objects.filter(id=broken).update(state={"nonsense": True})
    out, error = upgrade(PATH, "--from", "1")
    assert f"error {broken}: CorruptInstanceError" in out
    assert "4 upgraded, 1 refused, 1 error(s)" in out
    assert error is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.versions.Newsletter", "--from", "1"], "is not a versioned workflow"),
        ([PATH, "--from", "1", "--to", "9"], "--to: Onboarding has no version 9"),
        ([PATH, "--from", "2", "--to", "2"], "--from 2 must be an earlier version than --to 2"),
        (["NoSuchFlow", "--from", "1"], "NoSuchFlow"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    _out, error = upgrade(*args)
    assert error is not None
    assert message in str(error)
