"""The storage contract (SPEC §4), run against every backend through the ``storage`` fixture.

A backend passes when every test here passes for it; adding a backend means
adding a parameter to the fixture in ``tests/contract/conftest.py``, never a
test of its own for contract behaviour.
"""

from __future__ import annotations

import gc
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hephaestus_django import (
    Done,
    DuplicateInstanceError,
    InstanceDeletedError,
    InstanceNotFound,
    SerializationError,
    StaleInstanceError,
    Status,
    Step,
    UnknownWorkflowError,
    Workflow,
)
from hephaestus_django.core import engine
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.core.instance import Instance, Running
from hephaestus_django.core.upgrades import upgrade as upgrade_instance
from hephaestus_django.runtime.contract import StepMarking, Storage
from tests import flows
from tests.support.engine import run_waves
from tests.support.instances import flows_now, keyed, stored
from tests.support.workflows import KEYED, OTHER_GLOBAL


def waiting(storage: Storage) -> Instance:
    return stored(storage, flows.TwoWaits)


def assert_same_instance(got: Instance, expected: Instance) -> None:
    assert got == expected
    assert type(got.context.initial) is dict
    for entry_got, entry_expected in zip(
        got.execution_history, expected.execution_history, strict=True
    ):
        assert type(entry_got.timestamp) is type(entry_expected.timestamp)


# --- get / put / delete ---------------------------------------------------------------------


def test_put_then_get_returns_an_equal_instance(storage: Storage) -> None:
    instance = stored(storage)
    assert instance.revision == 1
    assert instance.inserted_at is not None
    assert_same_instance(storage.get(instance.id), instance)
    assert_same_instance(storage.get(str(instance.id)), instance)


def test_waiting_state_round_trips(storage: Storage) -> None:
    instance = stored(storage, flows.Timed)
    got = storage.get(instance.id)
    assert got.status is Status.WAITING
    assert got.waiting_steps == instance.waiting_steps
    assert_same_instance(got, instance)


def test_failed_state_round_trips(storage: Storage) -> None:
    instance = stored(storage, flows.FanOut, script={"charge": "fail"})
    got = storage.get(instance.id)
    assert got.error == instance.error
    assert_same_instance(got, instance)


def test_a_failures_traceback_round_trips(storage: Storage) -> None:
    instance = stored(storage, flows.FanOut, script={"charge": "fail"})
    got = storage.get(instance.id).error
    assert got is not None
    assert got.traceback is not None
    assert got.traceback == instance.error.traceback  # type: ignore[union-attr]
    assert got.traceback.startswith("Traceback (most recent call last):")
    assert 'raise StepFailed(f"{self.step_key} was told to fail")' in got.traceback
    assert got.traceback.endswith("tests.flows.StepFailed: charge was told to fail")


def test_a_failure_without_a_traceback_round_trips(storage: Storage) -> None:
    failed = run_waves(
        engine.start(engine.new_instance(flows.FanOut, {"script": {"charge": "fail"}}))
    )
    assert failed.error is not None
    instance = replace(failed, error=replace(failed.error, traceback=None))
    storage.put(instance)
    got = storage.get(instance.id)
    assert got.error is not None
    assert got.error.traceback is None
    assert got.error == instance.error


@pytest.mark.parametrize("missing", [uuid.uuid4(), str(uuid.uuid4()), "not-a-uuid", 42, None])
def test_get_of_a_missing_or_malformed_id_is_not_found(storage: Storage, missing: Any) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        storage.get(missing)
    assert str(missing) in str(caught.value)


def test_put_replaces_and_bumps_the_revision(storage: Storage) -> None:
    instance = waiting(storage)
    resumed = run_waves(engine.resume(instance, "paid", now=flows_now()))
    storage.put(resumed)
    assert resumed.revision == 2
    got = storage.get(instance.id)
    assert got.revision == 2
    assert got.execution_history == resumed.execution_history


def test_stale_put_is_refused_and_writes_nothing(storage: Storage) -> None:
    instance = waiting(storage)
    first, second = storage.get(instance.id), storage.get(instance.id)
    storage.put(run_waves(engine.resume(first, "paid", now=flows_now())))
    with pytest.raises(StaleInstanceError) as caught:
        storage.put(run_waves(engine.resume(second, "signed", now=flows_now())))
    assert str(instance.id) in str(caught.value)
    got = storage.get(instance.id)
    assert got.revision == 2
    assert [entry.event for entry in got.execution_history] == ["ok", "paid"]


def test_inserting_an_id_that_exists_is_stale(storage: Storage) -> None:
    instance = stored(storage)
    twin = engine.new_instance(flows.IfElse, {}, id=instance.id)
    with pytest.raises(StaleInstanceError):
        storage.put(twin)
    assert storage.get(instance.id).status is Status.COMPLETED


def test_workflow_version_and_inserted_at_never_change(storage: Storage) -> None:
    instance = waiting(storage)
    inserted_at = instance.inserted_at
    instance.workflow_version = 7
    storage.put(instance)
    got = storage.get(instance.id)
    assert got.workflow_version == 1
    assert instance.workflow_version == 1  # put reports what is stored
    assert got.inserted_at == inserted_at
    assert got.updated_at is not None
    assert inserted_at is not None
    assert got.updated_at >= inserted_at


def test_query_by_tag_selects_the_workflows_carrying_it(storage: Storage) -> None:
    from tests.versions import Newsletter, OnboardingV1, OnboardingV2

    old = engine.start(engine.new_instance(OnboardingV1, {}))
    new = engine.start(engine.new_instance(OnboardingV2, {}))
    other = engine.start(engine.new_instance(Newsletter, {}))
    for instance in (old, new, other):
        storage.put(instance)
    assert ids(storage.query(tag="customers")) == [old.id, new.id]
    assert ids(storage.query(tag="eu", workflow_version=1)) == [old.id]
    assert ids(storage.query(tag="marketing", status="running")) == [other.id]
    assert storage.query(tag="nobody-has-it") == []
    with pytest.raises(InvalidQueryError):
        storage.query(tag=["customers"])


def test_query_by_schedule_selects_exactly_its_instances(storage: Storage) -> None:
    def by(name: str | None, **more: Any) -> Instance:
        metadata = {} if name is None else {"schedule": {"name": name, "tick": "2025"}}
        return engine.start(engine.new_instance(flows.IfElse, {}, metadata={**metadata, **more}))

    nightly, weekly, by_hand = by("nightly"), by("weekly"), by(None, note="schedule")
    strange = 'night\'s "report" %_'
    odd = by(strange)
    for instance in (nightly, weekly, by_hand, odd):
        storage.put(instance)
    assert ids(storage.query(schedule="nightly")) == [nightly.id]
    assert ids(storage.query(schedule="weekly", workflow=flows.IfElse)) == [weekly.id]
    assert ids(storage.query(schedule=strange)) == [odd.id]
    assert storage.query(schedule="night") == []
    assert storage.query(schedule="nightly", status="completed") == []
    for bad in ("", 3, "a\x00b"):
        with pytest.raises(InvalidQueryError):
            storage.query(schedule=bad)


def test_only_an_upgrade_of_the_stored_version_changes_it(storage: Storage) -> None:
    from tests.versions import OnboardingV1, OnboardingV2

    instance = engine.start(engine.new_instance(OnboardingV1, {"email": "a@b.c"}))
    instance = run_waves(instance)
    storage.put(instance)
    inserted_at = instance.inserted_at
    upgraded = upgrade_instance(instance, to=OnboardingV2, now=flows_now())
    storage.put(upgraded)
    got = storage.get(instance.id)
    assert (got.workflow, got.workflow_version) == (OnboardingV2, 2)
    assert got.inserted_at == inserted_at
    assert_same_instance(got, upgraded)
    assert [i.id for i in storage.query(workflow_version=2)] == [instance.id]
    # a later put keeps it; one claiming an upgrade from a version not stored changes nothing
    got.workflow_version = 5
    storage.put(got)
    assert storage.get(instance.id).workflow_version == 2
    assert got.workflow_version == 2


def test_delete_is_idempotent(storage: Storage) -> None:
    instance = stored(storage)
    storage.delete(instance.id)
    storage.delete(instance.id)
    storage.delete("not-a-uuid")
    with pytest.raises(InstanceNotFound):
        storage.get(instance.id)


def test_a_write_after_the_first_never_brings_a_deleted_instance_back(storage: Storage) -> None:
    instance = waiting(storage)
    read = storage.get(instance.id)
    storage.delete(instance.id)
    resumed = engine.resume(read, "paid", now=flows_now())
    with pytest.raises(InstanceDeletedError) as caught:
        storage.put(resumed)
    assert isinstance(caught.value, InstanceNotFound)  # callers that catch "not found" still do
    assert str(instance.id) in str(caught.value)
    assert "deleted" in str(caught.value)
    assert resumed.revision == read.revision  # nothing recorded on the instance either
    with pytest.raises(InstanceNotFound):
        storage.get(instance.id)
    assert storage.query(id=instance.id) == []
    # a stale copy of the deleted instance is refused the same way, and so is the locked path
    with pytest.raises(InstanceDeletedError):
        storage.put(replace(read, revision=read.revision + 5))
    with pytest.raises(InstanceNotFound):
        storage.update(instance.id, lambda current: current)
    with pytest.raises(InstanceNotFound):
        storage.get(instance.id)


def test_only_a_new_instance_is_inserted(storage: Storage) -> None:
    new = run_waves(engine.start(engine.new_instance(flows.IfElse, {"script": {}})))
    assert new.revision == 0
    storage.put(new)
    assert new.revision == 1
    storage.delete(new.id)
    again = run_waves(engine.start(engine.new_instance(flows.IfElse, {"script": {}}, id=new.id)))
    storage.put(again)  # a new instance may take a deleted one's id: it is a first write
    assert storage.get(new.id).revision == 1


def test_returned_instances_share_nothing_with_storage(storage: Storage) -> None:
    instance = stored(storage, items=[1, 2])
    got = storage.get(instance.id)
    got.context.initial["items"].append(3)
    assert storage.get(instance.id).context.initial["items"] == [1, 2]
    instance.context.initial["items"].append(4)
    assert storage.get(instance.id).context.initial["items"] == [1, 2]


# --- values ---------------------------------------------------------------------------------

RICH = {
    "when": datetime(2026, 11, 24, 9, 30, tzinfo=ZoneInfo("Europe/Paris")),
    "naive": datetime(2026, 1, 1, 0, 0),
    "day": date(2026, 12, 24),
    "at": time(8, 15, 30, 120),
    "span": timedelta(days=2, seconds=5, microseconds=7),
    "price": Decimal("19.990"),
    "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tags": {"gift", "fragile"},
    "frozen": frozenset({1, 2}),
    "pair": (1, "a"),
    "blob": b"\x00\xff",
    "big": 10**30,
    "tiny": 1e-7,
    "huge": 1e16,
    "nested": {"__type__": "user data", "list": [{"deep": (date(2026, 1, 2),)}]},
}


def test_every_supported_type_round_trips_equal_and_of_the_same_type(storage: Storage) -> None:
    instance = stored(storage, rich=RICH)
    got = storage.get(instance.id).context.initial["rich"]
    assert got == RICH
    for key, value in RICH.items():
        assert type(got[key]) is type(value), key
    assert got["when"].tzinfo == ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (object(), "context.initial.bad"),
        ({"items": [{"price": 1}, {"price": float("nan")}]}, "context.initial.bad.items[1].price"),
        ({1: "int key"}, "context.initial.bad"),
        ("nul\x00byte", "context.initial.bad"),
    ],
)
def test_unstorable_values_are_refused_naming_the_path(
    storage: Storage, value: Any, path: str
) -> None:
    instance = engine.start(engine.new_instance(flows.IfElse, {"bad": value}))
    with pytest.raises(SerializationError) as caught:
        storage.put(instance)
    assert caught.value.path == path
    assert str(instance.id) in str(caught.value)
    with pytest.raises(InstanceNotFound):
        storage.get(instance.id)


def nested_lists(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("field", "enclosing"),
    # The containers around the value in the stored document: the state itself, then e.g.
    # "context" and "initial".
    [("initial", 3), ("runtime_metadata", 2)],
)
def test_the_nesting_limit_counts_from_the_root_of_the_stored_document(
    storage: Storage, field: str, enclosing: int
) -> None:
    def with_nesting(levels: int) -> Instance:
        instance = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
        if field == "initial":
            initial = {**instance.context.initial, "deep": nested_lists(levels)}
            return replace(instance, context=replace(instance.context, initial=initial))
        return replace(instance, runtime_metadata={"deep": nested_lists(levels)})

    deepest = with_nesting(100 - enclosing)
    storage.put(deepest)
    assert storage.get(deepest.id) == deepest
    too_deep = with_nesting(101 - enclosing)
    with pytest.raises(SerializationError, match="nested more than 100") as caught:
        storage.put(too_deep)
    assert caught.value.path.startswith(
        "context.initial.deep[0]" if field == "initial" else "runtime_metadata.deep[0]"
    )
    with pytest.raises(InstanceNotFound):
        storage.get(too_deep.id)


def test_a_refused_update_leaves_the_stored_instance_unchanged(storage: Storage) -> None:
    instance = waiting(storage)
    resumed = engine.resume(instance, "paid", {"receipt": object()}, now=flows_now())
    with pytest.raises(SerializationError) as caught:
        storage.put(resumed)
    assert caught.value.path.startswith("context.steps.payment")
    got = storage.get(instance.id)
    assert got.revision == 1
    assert got.status is Status.WAITING


# --- query ----------------------------------------------------------------------------------


@pytest.fixture
def population(storage: Storage) -> dict[str, Instance]:
    return {
        "done": stored(storage, flows.IfElse),
        "waiting": stored(storage, flows.TwoWaits),
        "failed": stored(storage, flows.FanOut, script={"charge": "fail"}),
        "timed": stored(storage, flows.Timed),
    }


def ids(instances: list[Instance]) -> list[uuid.UUID]:
    return [instance.id for instance in instances]


def test_query_without_filters_returns_all_oldest_first(
    storage: Storage, population: dict[str, Instance]
) -> None:
    assert ids(storage.query()) == [instance.id for instance in population.values()]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": Status.WAITING}, ["waiting", "timed"]),
        ({"status": "waiting"}, ["waiting", "timed"]),
        ({"status_in": ["failed", Status.COMPLETED]}, ["done", "failed"]),
        ({"status_in": []}, []),
        ({"workflow": flows.TwoWaits}, ["waiting"]),
        ({"workflow": "tests.flows.FanOut"}, ["failed"]),
        ({"workflow_version": 1}, ["done", "waiting", "failed", "timed"]),
        ({"workflow_version": 2}, []),
        ({"workflow_family": "tests.flows"}, ["done", "waiting", "failed", "timed"]),
        ({"workflow_family": "tests"}, ["done", "waiting", "failed", "timed"]),
        ({"workflow_family": "tests.flo"}, []),
        ({"workflow_family": "tests.flo_s"}, []),
        ({"workflow_family": "tests.%"}, []),
        ({"workflow_family": "tests.flows."}, ["done", "waiting", "failed", "timed"]),
        ({"workflow_family": "tests.flows.T"}, []),
        ({"status": "waiting", "workflow": flows.Timed}, ["timed"]),
        ({"status": "waiting", "status_in": ["completed"]}, []),
    ],
)
def test_query_filters(
    storage: Storage,
    population: dict[str, Instance],
    filters: dict[str, Any],
    expected: list[str],
) -> None:
    assert ids(storage.query(**filters)) == [population[name].id for name in expected]


def test_query_by_id(storage: Storage, population: dict[str, Instance]) -> None:
    target = population["failed"]
    assert ids(storage.query(id=target.id)) == [target.id]
    assert ids(storage.query(id=str(target.id), status="failed")) == [target.id]
    assert storage.query(id="not-a-uuid") == []


def test_query_limit(storage: Storage, population: dict[str, Instance]) -> None:
    assert ids(storage.query(limit=2)) == [population["done"].id, population["waiting"].id]
    assert storage.query(limit=0) == []
    assert len(storage.query(limit=2**63 - 1)) == len(population)


@pytest.mark.parametrize(
    ("limit", "shown"),
    [
        (10**30, "not 1000000000000000000000000000000"),
        (2**63, "not 9223372036854775808"),
        (-1, "not -1"),
        pytest.param(10**5000, "not an int of 16610 bits", id="10**5000"),
        (2.5, "not 2.5"),
        (True, "not True"),
        ("10", "not '10'"),
    ],
)
def test_query_refuses_a_limit_no_backend_takes(storage: Storage, limit: Any, shown: str) -> None:
    with pytest.raises(
        InvalidQueryError, match="limit must be an int from 0 to 9223372036854775807"
    ) as caught:
        storage.query(limit=limit)
    assert shown in str(caught.value)


def test_query_refuses_unknown_filters(storage: Storage) -> None:
    with pytest.raises(TypeError, match="unknown filter"):
        storage.query(state="waiting")


@pytest.mark.parametrize(
    "filters",
    [
        {"status": "sleeping"},
        {"status_in": "waiting"},
        {"workflow_version": 0},
        {"workflow": 3},
        {"workflow_family": ""},
    ],
)
def test_query_refuses_bad_values(storage: Storage, filters: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError):
        storage.query(**filters)


def test_query_returns_decoded_instances(storage: Storage, population: dict[str, Instance]) -> None:
    (got,) = storage.query(id=population["timed"].id)
    assert_same_instance(got, population["timed"])


# --- rows that no longer decode -------------------------------------------------------------


def test_an_unregistered_workflow_breaks_only_its_own_rows(storage: Storage) -> None:
    class Only(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            return "ok"

    def make_gone() -> uuid.UUID:
        gone = type("Gone", (Workflow,), {"start": Only, "transitions": {Only: {"ok": Done}}})
        return stored(storage, gone).id

    gone_id = make_gone()
    gc.collect()  # the class was only referenced here, so the registry forgets it
    survivor = stored(storage)
    with pytest.raises(UnknownWorkflowError) as caught:
        storage.get(gone_id)
    assert str(gone_id) in str(caught.value)
    assert ids(storage.query()) == [survivor.id]
    assert_same_instance(storage.get(survivor.id), survivor)


# --- sharing instances across processes: update, claim, renew ---------------------------------

LATER = datetime(2030, 1, 1, tzinfo=UTC)


def test_update_applies_a_change_atomically(storage: Storage) -> None:
    instance = waiting(storage)
    changed = storage.update(
        instance.id, lambda current: engine.resume(current, "paid", now=flows_now())
    )
    assert changed.revision == 2
    assert [e.event for e in storage.get(instance.id).execution_history] == ["ok", "paid"]


def test_update_writes_nothing_when_the_change_raises(storage: Storage) -> None:
    instance = waiting(storage)

    def refuse(current: Instance) -> Instance:
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        storage.update(instance.id, refuse)
    assert storage.get(instance.id).revision == 1


def test_update_of_a_missing_instance_is_not_found(storage: Storage) -> None:
    with pytest.raises(InstanceNotFound):
        storage.update(uuid.uuid4(), lambda current: current)
    with pytest.raises(InstanceNotFound):
        storage.update("nope", lambda current: current)


ROUND_TRIP = timedelta(seconds=1)
"""How far ``storage.now()`` may be from the time a statement reads (it is read once a minute:
ahead of the database by up to one round trip)."""


def running(
    storage: Storage, owner: str | None = None, expires: timedelta | None = None
) -> Instance:
    """A running instance, leased to ``owner`` until ``expires`` from the storage's now."""
    instance = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    if owner is not None and expires is not None:
        instance.lease_owner, instance.lease_expires_at = owner, storage.now() + expires
    storage.put(instance)
    return instance


def test_claim_hands_out_due_timers_and_stalled_runs_once(storage: Storage) -> None:
    due = stored(storage, flows.Timed)  # its timer came due five minutes after flows_now()
    not_yet = run_waves(
        engine.start(engine.new_instance(flows.Timed, {"script": {}})), now=storage.now()
    )
    storage.put(not_yet)  # due five minutes from now by the storage's clock
    stalled = running(storage)  # nobody holds a lease: its runner died
    lapsed = running(storage, "dead", -timedelta(seconds=1))
    live = running(storage, "busy", timedelta(minutes=1))
    stored(storage)  # completed: never claimed
    stored(storage, flows.TwoWaits)  # waits for events only: never claimed

    before = storage.now()
    claimed = storage.claim("w1", lease=timedelta(minutes=1), limit=10)
    after = storage.now()
    assert sorted(ids(claimed)) == sorted([due.id, stalled.id, lapsed.id])
    for instance in claimed:
        assert instance.lease_owner == "w1"
        assert instance.lease_expires_at is not None
        assert before + timedelta(minutes=1) - ROUND_TRIP <= instance.lease_expires_at
        assert instance.lease_expires_at <= after + timedelta(minutes=1) + ROUND_TRIP
    assert {i.id: i.revision for i in claimed}[due.id] == due.revision + 1
    assert storage.claim("w2", lease=timedelta(minutes=1), limit=10) == []
    with pytest.raises(StaleInstanceError):
        storage.put(due)  # a write based on a read before the claim
    assert storage.get(live.id).lease_owner == "busy"
    assert storage.get(not_yet.id).lease_owner is None


def test_claim_hands_out_the_oldest_first_and_respects_the_limit(storage: Storage) -> None:
    first = running(storage, "dead", -timedelta(minutes=3))
    second = running(storage, "dead", -timedelta(minutes=2))
    third = running(storage, "dead", -timedelta(minutes=1))
    claimed = storage.claim("w1", lease=timedelta(minutes=1), limit=2)
    rest = storage.claim("w2", lease=timedelta(minutes=1), limit=2)
    assert ids(claimed) == [first.id, second.id]
    assert ids(rest) == [third.id]


@pytest.mark.parametrize("limit", [0, -1, 2**63, 1.5, None])
def test_claim_refuses_a_limit_no_backend_takes(storage: Storage, limit: Any) -> None:
    with pytest.raises(InvalidQueryError, match="limit"):
        storage.claim("w1", lease=timedelta(minutes=1), limit=limit)


def test_renew_extends_only_the_owners_lease(storage: Storage) -> None:
    instance = running(storage, "me", timedelta(seconds=1))
    before = storage.now()
    assert storage.renew(instance.id, "me", timedelta(hours=1))
    assert not storage.renew(instance.id, "someone else", timedelta(days=1))
    assert not storage.renew(uuid.uuid4(), "me", timedelta(hours=1))
    got = storage.get(instance.id)
    assert (got.lease_owner, got.revision) == ("me", 1)
    assert got.lease_expires_at is not None
    assert before + timedelta(hours=1) - ROUND_TRIP <= got.lease_expires_at
    assert got.lease_expires_at <= storage.now() + timedelta(hours=1) + ROUND_TRIP


def test_mark_running_marks_a_runnable_step_as_a_write_and_reads_it(storage: Storage) -> None:
    assert isinstance(storage, StepMarking)
    instance = running(storage, "queued:abc", timedelta(seconds=5))
    before = storage.now()
    marked = storage.mark_running(instance.id, flows.Check.path(), "host-1:42")
    assert marked is not None
    [(step, mark)] = marked.running.items()
    assert (step, mark.on) == (flows.Check, "host-1:42")
    assert before - ROUND_TRIP <= mark.since <= storage.now() + ROUND_TRIP
    got = storage.get(instance.id)
    assert got == marked
    assert got.revision == 2
    # The mark writes the marks alone: not updated_at, not the lease (the job's heartbeat
    # renews it), so PostgreSQL can write it in place.
    assert (got.updated_at, got.lease_owner, got.lease_expires_at) == (
        instance.updated_at,
        instance.lease_owner,
        instance.lease_expires_at,
    )


def test_mark_running_refuses_a_live_foreign_lease_and_leaves_a_lapsed_one_alone(
    storage: Storage,
) -> None:
    """A live lease that is not a queue lease is another runner's (the sweep between its claim
    and its take-over, a ``LocalRunner``): its steps are that runner's to run. A lapsed one
    is nobody's: the step is marked, and the lease is neither taken nor extended."""
    assert isinstance(storage, StepMarking)
    held = running(storage, "host:1:runner", timedelta(hours=1))
    assert storage.mark_running(held.id, flows.Check.path(), "h:1") is None
    assert storage.get(held.id).revision == 1
    lapsed = running(storage, "host:1:runner", -timedelta(seconds=1))
    marked = storage.mark_running(lapsed.id, flows.Check.path(), "h:1")
    assert marked is not None
    assert (marked.lease_owner, marked.lease_expires_at) == (
        lapsed.lease_owner,
        lapsed.lease_expires_at,
    )


def test_mark_running_refuses_a_step_already_running_under_a_live_mark(
    storage: Storage,
) -> None:
    """A second job of a step that runs (its mark under a live queue lease, which the first
    job renews) must not run it beside the first: nothing is written."""
    assert isinstance(storage, StepMarking)
    instance = running(storage, "queued:abc", timedelta(hours=1))
    step = flows.Check.path()
    first = storage.mark_running(instance.id, step, "h:1", attempt=1)
    assert first is not None
    assert storage.mark_running(instance.id, step, "h:2", attempt=1) is None
    assert storage.mark_running(instance.id, step, "h:2") is None
    got = storage.get(instance.id)
    assert got.revision == first.revision
    assert {mark.on for mark in got.running.values()} == {"h:1"}


def test_a_mark_under_a_lapsed_queue_lease_is_dead_and_is_marked_again(
    storage: Storage,
) -> None:
    """The job that marked the step stopped renewing the lease (it died): the step may run
    again, as the sweep's job of it does."""
    assert isinstance(storage, StepMarking)
    instance = running(storage, "queued:abc", -timedelta(seconds=1))
    dead = replace(instance, running={flows.Check: Running("h:1", storage.now())})
    storage.put(dead)
    marked = storage.mark_running(instance.id, flows.Check.path(), "h:2")
    assert marked is not None
    assert marked.running[flows.Check].on == "h:2"
    # The lease is left as it was: the job's runner renews it (QueuedRunner, at once when it is
    # this short).
    assert (marked.lease_owner, marked.lease_expires_at) == (
        instance.lease_owner,
        instance.lease_expires_at,
    )


@pytest.mark.parametrize("step", ["tests.flows.Approve", "tests.flows.Nothing", "'; drop"])
def test_mark_running_of_a_step_that_is_not_runnable_writes_nothing(
    storage: Storage, step: str
) -> None:
    assert isinstance(storage, StepMarking)
    instance = running(storage)
    assert storage.mark_running(instance.id, step, "h:1") is None
    assert storage.get(instance.id).revision == 1
    paused = waiting(storage)
    assert paused.waiting_steps
    waiting_step = next(iter(paused.waiting_steps)).path()
    assert storage.mark_running(paused.id, waiting_step, "h:1") is None
    with pytest.raises(InstanceNotFound):
        storage.mark_running(uuid.uuid4(), step, "h:1")


def test_mark_running_of_another_attempt_writes_nothing(storage: Storage) -> None:
    assert isinstance(storage, StepMarking)
    instance = running(storage)
    storage.put(replace(instance, attempts={flows.Check: 2}))  # two attempts failed
    step = flows.Check.path()
    assert storage.mark_running(instance.id, step, "h:1", attempt=1) is None
    assert storage.mark_running(instance.id, step, "h:1", attempt=2) is None
    assert storage.get(instance.id).revision == 2
    marked = storage.mark_running(instance.id, step, "h:1", attempt=3)
    assert marked is not None
    assert marked.attempts == {flows.Check: 2}
    fresh = running(storage)
    assert storage.mark_running(fresh.id, step, "h:1", attempt=1)


def test_a_running_mark_survives_a_put_only_if_the_instance_keeps_it(storage: Storage) -> None:
    assert isinstance(storage, StepMarking)
    instance = running(storage)
    marked = storage.mark_running(instance.id, flows.Check.path(), "h:1")
    assert marked is not None
    storage.put(replace(marked, running={}))
    assert storage.get(instance.id).running == {}


def test_now_is_the_storages_clock(storage: Storage) -> None:
    before = storage.now()
    instance = stored(storage)
    assert instance.updated_at is not None
    assert before - ROUND_TRIP <= instance.updated_at <= storage.now() + ROUND_TRIP


# --- quarantine: a claimed row that cannot be decoded ----------------------------------------


class Only(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        return "ok"


def define_vanishing() -> type[Workflow]:
    return type("Vanishing", (Workflow,), {"start": Only, "transitions": {Only: {"ok": Done}}})


def test_a_row_the_worker_cannot_decode_is_quarantined_until_written(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    def stalled_of_a_vanished_workflow() -> uuid.UUID:
        instance = engine.start(engine.new_instance(define_vanishing(), {}))
        storage.put(instance)  # running, nobody holds a lease: a worker must take it over
        return instance.id

    vanished = stalled_of_a_vanished_workflow()
    gc.collect()  # the workflow is no longer defined: the row cannot be decoded
    survivor = running(storage)

    assert ids(storage.claim("w1", lease=timedelta(minutes=1), limit=10)) == [survivor.id]
    logged = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(logged) == 1
    assert str(vanished) in logged[0].getMessage()
    # never claimed again (no lease to wait for: it is not leased), nor logged again
    assert storage.claim("w2", lease=timedelta(minutes=1), limit=10) == []
    assert len([r for r in caplog.records if "quarantined" in r.getMessage()]) == 1

    workflow = define_vanishing()  # the code is back: the row decodes again, still set aside
    got = storage.get(vanished)
    assert got.workflow is workflow
    assert got.revision == 2  # the one claim bumped it; the quarantine did not
    assert got.lease_owner is None
    assert storage.claim("w3", lease=timedelta(minutes=1), limit=10) == []
    storage.put(got)  # any write lifts the quarantine
    assert ids(storage.claim("w4", lease=timedelta(minutes=1), limit=10)) == [vanished]


# --- retries --------------------------------------------------------------------------------


def test_an_instance_waiting_to_retry_round_trips_and_is_claimed_when_due(
    storage: Storage,
) -> None:
    flows.ATTEMPTS.clear()
    fresh = engine.start(engine.new_instance(flows.Retried, {"fails": 1}))
    waiting = run_waves(fresh, now=storage.now() - timedelta(minutes=1))  # due 50 s ago
    not_yet = run_waves(
        engine.start(engine.new_instance(flows.Retried, {"fails": 1})), now=storage.now()
    )
    storage.put(waiting)
    storage.put(not_yet)
    got = storage.get(waiting.id)
    assert_same_instance(got, waiting)
    assert got.status is Status.WAITING
    assert got.attempts == {flows.Flaky: 1}
    assert got.waiting_steps[flows.Flaky].attempt == 2
    (entry,) = got.execution_history
    assert entry.error is not None
    assert entry.error.message == "run 1 failed"
    assert entry.error.traceback is not None
    assert ids(storage.query(status=Status.WAITING)) == [waiting.id, not_yet.id]

    claimed = storage.claim("w1", lease=timedelta(minutes=1), limit=10)
    assert ids(claimed) == [waiting.id]


def test_an_instance_stored_before_retries_existed_reads_with_no_attempts(
    storage: Storage,
) -> None:
    instance = stored(storage)
    got = storage.get(instance.id)
    assert got.attempts == {}
    assert all(entry.error is None for entry in got.execution_history)


# --- business keys --------------------------------------------------------------------------


def test_a_business_key_round_trips_and_is_queried(storage: Storage) -> None:
    instance = keyed(storage, "active", "order-A-1001")
    assert storage.get(instance.id).business_key == "order-A-1001"
    assert [found.id for found in storage.query(key="order-A-1001")] == [instance.id]
    assert storage.query(key="order-A-1002") == []


def test_a_key_held_in_its_scope_refuses_a_second_instance_naming_the_holder(
    storage: Storage,
) -> None:
    first = keyed(storage, "active", "order-7")
    with pytest.raises(DuplicateInstanceError) as raised:
        keyed(storage, "active", "order-7")
    assert raised.value.existing_id == first.id
    assert raised.value.key == "order-7"
    assert "order-7" in str(raised.value)
    assert str(first.id) in str(raised.value)
    assert [found.id for found in storage.query(key="order-7")] == [first.id]


def test_under_the_active_scope_a_finished_instance_frees_its_key(storage: Storage) -> None:
    first = keyed(storage, "active", "order-8")
    storage.put(run_waves(engine.resume(first, "go", now=datetime.now(UTC))))
    assert storage.get(first.id).status is Status.COMPLETED
    second = keyed(storage, "active", "order-8")
    assert {found.id for found in storage.query(key="order-8")} == {first.id, second.id}


@pytest.mark.parametrize("scope", ["workflow", "version", "global"])
def test_other_scopes_keep_the_key_after_the_end(storage: Storage, scope: str) -> None:
    first = keyed(storage, scope, "k-1")
    storage.put(run_waves(engine.resume(first, "go", now=datetime.now(UTC))))
    with pytest.raises(DuplicateInstanceError):
        keyed(storage, scope, "k-1")


def test_the_global_scope_spans_workflows_and_the_others_do_not(storage: Storage) -> None:
    keyed(storage, "global", "shared")
    with pytest.raises(DuplicateInstanceError):
        keyed(storage, "global", "shared", OTHER_GLOBAL)
    keyed(storage, "active", "shared")  # another workflow, another scope
    keyed(storage, "workflow", "shared")


def test_the_none_scope_never_refuses(storage: Storage) -> None:
    first = keyed(storage, "none", "label")
    second = keyed(storage, "none", "label")
    assert {found.id for found in storage.query(key="label")} == {first.id, second.id}


def test_a_keyed_insert_of_an_existing_id_is_stale(storage: Storage) -> None:
    first = keyed(storage, "active", "k-9")
    twin = engine.start(engine.new_instance(KEYED["active"], {}, id=first.id, key="k-10"))
    with pytest.raises(StaleInstanceError):
        storage.put(twin)
    assert storage.get(first.id).business_key == "k-9"
