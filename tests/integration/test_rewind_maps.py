"""Rewinding across a map step, both storages, both runners: its items are forgotten with the
rewind (on PostgreSQL their rows are deleted in the rewind's transaction), and a late item of
the forgotten run is written under its generation's key, never read as the map's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest

from hephaestus_django import RewindError, RewindPlan, Status
from hephaestus_django.core import engine
from hephaestus_django.core.rewind import items_key
from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.storage import DjangoStorage
from tests.support import rewind_maps
from tests.support.rewind_maps import RUNS, RewindInvoice, RewindLines, Sum, lines
from tests.support.runners import RUNNERS, STORAGES, Settle, runner_over, storage_named

Stored = InMemoryStorage | DjangoStorage
"""Both storages: they keep map items (``map_progress``, ``record_map_item``, ...)."""

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Stored:
    return cast(Stored, storage_named(request.param))


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: Storage) -> Iterator[Settle]:
    rewind_maps.reset()
    with runner_over(storage, request.param) as settle:
        yield settle
    rewind_maps.reset()


def test_a_rewind_to_a_map_forgets_its_items_and_runs_them_again(
    settle: Settle, storage: Stored
) -> None:
    instance_id = RewindInvoice.start({"lines": lines(3)})
    settle()
    assert RewindInvoice.get(instance_id).status is Status.COMPLETED

    found = RewindInvoice.rewind(instance_id, to=RewindLines, dry_run=True)
    assert isinstance(found, RewindPlan)
    assert found.maps == (RewindLines,)
    assert dict(found.map_items) == {RewindLines: 3}
    assert len(storage.map_progress(instance_id, RewindLines.path())) == 3  # dry: kept

    RewindInvoice.rewind(instance_id, to=RewindLines)
    settle()

    stored = RewindInvoice.get(instance_id)
    assert stored.status is Status.COMPLETED
    assert RUNS == {"0": 2, "1": 2, "2": 2}
    assert [line["run"] for line in stored.context.result(RewindLines)] == [2, 2, 2]
    assert stored.context.result(Sum) == {"total": 6}


def test_a_rewind_after_a_map_keeps_its_items(settle: Settle, storage: Stored) -> None:
    instance_id = RewindInvoice.start({"lines": lines(2)})
    settle()

    found = RewindInvoice.rewind(instance_id, to=Sum, dry_run=True)
    assert isinstance(found, RewindPlan)
    assert (found.maps, dict(found.map_items)) == ((), {})
    RewindInvoice.rewind(instance_id, to=Sum)
    settle()

    assert RewindInvoice.get(instance_id).status is Status.COMPLETED
    assert RUNS == {"0": 1, "1": 1}
    assert len(storage.map_progress(instance_id, RewindLines.path())) == 2


def test_a_late_item_of_a_forgotten_map_run_is_never_the_maps(
    settle: Settle, storage: Stored
) -> None:
    instance_id = RewindInvoice.start({"lines": lines(3)})
    settle()
    before = RewindInvoice.get(instance_id)
    RewindInvoice.rewind(instance_id, to=RewindLines)
    settle()
    after = RewindInvoice.get(instance_id)
    assert items_key(before, RewindLines) == RewindLines.path()
    assert items_key(after, RewindLines) == f"{RewindLines.path()}#1"

    # The first run's item 0, ending now: written under that run's key, never the map's.
    storage.record_map_item(
        instance_id,
        items_key(before, RewindLines),
        0,
        attempts=0,
        done=True,
        result={"line": 0, "run": 0, "charged": 1},
    )
    current = storage.map_results(instance_id, items_key(after, RewindLines))
    assert [line["run"] for line in current] == [2, 2, 2]
    assert [line["run"] for line in after.context.result(RewindLines)] == [2, 2, 2]

    # The next rewind forgets every generation's items.
    found = RewindInvoice.rewind(instance_id, to=RewindLines, dry_run=True)
    assert isinstance(found, RewindPlan)
    assert dict(found.map_items) == {RewindLines: 3}
    assert storage.forget_map_items(instance_id, [RewindLines.path()]) == 4
    assert storage.map_progress(instance_id, RewindLines.path()) == {}


def test_a_rewind_while_the_map_runs_keeps_the_earlier_runs_items_out(
    settle: Settle, storage: Stored
) -> None:
    instance_id = RewindInvoice.start({"lines": lines(3)}, id=None)
    settle()
    # Started again from scratch: item 0 of the first run rewinds the instance to the map.
    RUNS.clear()
    rewind_maps.REWIND_FROM["id"] = str(instance_id)
    RewindInvoice.rewind(instance_id, to=RewindLines)
    settle()
    settle()

    stored = RewindInvoice.get(instance_id)
    assert stored.status is Status.COMPLETED
    assert engine.rewinds_of(stored) == 2
    # Item 0 of the run the rewind cut short ended after it: its result is not the map's.
    assert stored.context.result(RewindLines)[0]["run"] == 2
    assert RUNS["0"] == 2


def test_a_refused_rewind_keeps_the_items(settle: Settle, storage: Stored) -> None:
    instance_id = RewindInvoice.start({"lines": lines(2)})
    settle()
    with pytest.raises(RewindError):
        RewindInvoice.rewind(instance_id, to="NoSuchStep")
    assert len(storage.map_progress(instance_id, RewindLines.path())) == 2
