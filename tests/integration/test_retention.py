"""``hephaestus_prune``: old finished instances deleted in batches, exactly the matching ones."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from hephaestus_django.models import WorkflowInstance
from hephaestus_django.retention import Pruner, parse_age
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.contract.test_storage_contract import stored

pytestmark = pytest.mark.django_db


def age_rows(days: int, *ids: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workflow_instances SET updated_at = now() - make_interval(days => %s) "
            "WHERE id = ANY(%s)",
            [days, list(ids)],
        )


@pytest.fixture
def population() -> dict[str, list[object]]:
    storage = DjangoStorage()
    old_done = [stored(storage).id for _ in range(5)]
    new_done = [stored(storage).id for _ in range(2)]
    old_failed = [stored(storage, flows.FanOut, script={"charge": "fail"}).id]
    old_waiting = [stored(storage, flows.TwoWaits).id]
    age_rows(40, *old_done, *old_failed, *old_waiting)
    age_rows(10, *new_done)
    return {
        "old_done": old_done,
        "new_done": new_done,
        "old_failed": old_failed,
        "old_waiting": old_waiting,
    }


def remaining() -> set[object]:
    return set(WorkflowInstance.objects.values_list("id", flat=True))


def prune(*args: str) -> str:
    out = StringIO()
    call_command("hephaestus_prune", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_counts_and_changes_nothing(population: dict[str, list[object]]) -> None:
    before = remaining()
    out = prune("--status", "completed", "--older-than", "30d", "--dry-run")
    assert out.startswith("Dry run: 5 completed instances last changed before ")
    assert remaining() == before


def test_a_prune_deletes_exactly_the_matching_rows_in_batches(
    population: dict[str, list[object]],
) -> None:
    out = prune("--status", "completed", "--older-than", "30d", "--batch-size", "2")
    assert out.startswith("Deleted 5 completed instances")
    assert "in 3 batch(es) of at most 2" in out
    kept = population["new_done"] + population["old_failed"] + population["old_waiting"]
    assert remaining() == set(kept)


def test_several_statuses(population: dict[str, list[object]]) -> None:
    report = Pruner(statuses=["completed", "failed"], older_than=timedelta(days=30)).run()
    assert (report.matched, report.deleted, report.batches) == (6, 6, 1)
    assert remaining() == set(population["new_done"] + population["old_waiting"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "done", "--older-than", "30d"], "unknown status 'done'"),
        (["--status", "completed", "--older-than", "30 days"], "is not an age"),
        (["--status", "completed", "--older-than", "30d", "--batch-size", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        prune(*args)


def test_ages() -> None:
    assert parse_age("45s") == timedelta(seconds=45)
    assert parse_age("2w") == timedelta(weeks=2)
    assert parse_age(" 12h ") == timedelta(hours=12)
