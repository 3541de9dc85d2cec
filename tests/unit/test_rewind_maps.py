"""Rewinding across a map step on InMemoryStorage, both runners: its items are forgotten with
the rewind, a late item of the forgotten run is refused. (PostgreSQL:
``tests/integration/test_rewind_maps_django.py``.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus_django import RewindPlan, Status
from hephaestus_django.core import engine
from hephaestus_django.runtime import InMemoryStorage
from tests.support import rewind_maps
from tests.support.rewind_maps import RUNS, RewindInvoice, RewindLines, Sum, lines
from tests.support.runners import RUNNERS, Settle, runner_over


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: InMemoryStorage) -> Iterator[Settle]:
    rewind_maps.reset()
    with runner_over(storage, request.param) as settle:
        yield settle
    rewind_maps.reset()


def test_a_rewind_to_a_map_forgets_its_items_and_runs_them_again(
    settle: Settle, storage: InMemoryStorage
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


def test_a_rewind_after_a_map_keeps_its_items(settle: Settle, storage: InMemoryStorage) -> None:
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


def test_a_late_item_of_a_forgotten_map_run_is_refused(
    settle: Settle, storage: InMemoryStorage
) -> None:
    instance_id = RewindInvoice.start({"lines": lines(3)}, id=None)
    settle()
    first = engine.rewinds_of(RewindInvoice.get(instance_id))
    RewindInvoice.rewind(instance_id, to=RewindLines)
    settle()

    late = storage.record_map_item(
        instance_id,
        RewindLines.path(),
        0,
        attempts=0,
        done=True,
        result={"line": 0, "run": 0, "charged": 1},
        generation=first,
    )
    assert late is False
    assert [line["run"] for line in storage.map_results(instance_id, RewindLines.path())] == [
        2,
        2,
        2,
    ]


def test_a_rewind_while_the_map_runs_refuses_the_items_of_the_earlier_run(
    settle: Settle, storage: InMemoryStorage
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
    # The run the rewind cut short recorded nothing after it: items 1 and 2 ran once.
    assert RUNS == {"0": 2, "1": 1, "2": 1}
    assert [line["run"] for line in stored.context.result(RewindLines)] == [2, 1, 1]
    assert engine.rewinds_of(stored) == 2
