"""Instance: validated when built; copied by the engine with ``evolve``; history entries read
from storage with ``read_history_entry``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from hephaestus_django import Done, Status, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.errors import InvalidInstanceError
from hephaestus_django.core.instance import (
    Failure,
    HistoryEntry,
    Instance,
    Waiting,
    evolve,
    read_history_entry,
)
from tests.support.steps import GraphOnly

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class First(GraphOnly):
    events = ("ok",)


class Second(GraphOnly):
    events = ("ok",)


class Linear(Workflow):
    start = First
    transitions = {First: {"ok": Second}, Second: {"ok": Done}}


def fresh() -> Instance:
    return engine.new_instance(Linear, {"script": {}}, metadata={"tenant": "a"})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"id": "not-a-uuid"}, "must be a UUID"),
        ({"workflow_version": 0}, "must be a positive int"),
        ({"workflow_version": True}, "must be a positive int"),
        ({"status": "sleeping"}, "must be one of"),
    ],
)
def test_building_an_instance_validates_it(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidInstanceError, match=fragment):
        Instance(workflow=Linear, **kwargs)  # type: ignore[arg-type]


def test_building_an_instance_coerces_id_and_status() -> None:
    uid = uuid4()
    built = Instance(workflow=Linear, id=str(uid), status="waiting")  # type: ignore[arg-type]
    assert built.id == uid
    assert built.status is Status.WAITING


def test_evolve_returns_a_new_instance_with_the_changes() -> None:
    original = fresh()
    copy = evolve(original, status=Status.RUNNING, lease_owner="me", lease_expires_at=NOW)
    assert copy is not original
    assert (copy.status, copy.lease_owner, copy.lease_expires_at) == (Status.RUNNING, "me", NOW)


def test_evolve_leaves_the_original_unchanged() -> None:
    original = fresh()
    before = dataclasses.asdict(original)
    evolve(original, status=Status.RUNNING, revision=7, lease_owner="me")
    assert dataclasses.asdict(original) == before
    assert original.status is Status.PENDING


def test_evolve_keeps_every_field_not_changed() -> None:
    original = fresh()
    copy = evolve(original, lease_owner="me")
    for name in (f.name for f in dataclasses.fields(Instance)):
        if name != "lease_owner":
            assert getattr(copy, name) == getattr(original, name), name
    assert copy == dataclasses.replace(original, lease_owner="me")


def test_evolve_with_no_changes_is_an_equal_copy() -> None:
    original = fresh()
    copy = evolve(original)
    assert copy is not original
    assert copy == original


def test_evolve_keeps_the_class_of_a_subclass() -> None:
    @dataclasses.dataclass(kw_only=True)
    class Tagged(Instance):
        tag: str = "none"

    original = Tagged(workflow=Linear, tag="blue")
    copy = evolve(original, status=Status.RUNNING)
    assert type(copy) is Tagged
    assert copy.tag == "blue"
    assert evolve(original, tag="red").tag == "red"  # a subclass's own field can change too


def test_evolve_refuses_a_name_that_is_not_a_field() -> None:
    original = fresh()
    with pytest.raises(TypeError, match="statuss"):
        evolve(original, statuss=Status.RUNNING)
    assert not hasattr(original, "statuss")


def test_evolve_is_shallow_like_replace() -> None:
    original = fresh()
    copy = evolve(original, status=Status.RUNNING)
    # unchanged fields refer to the same objects, exactly as dataclasses.replace does
    assert copy.context is original.context
    assert copy.runtime_metadata is original.runtime_metadata
    # but the instances themselves are independent: setting a field on one
    # (as storage.put does with its bookkeeping) does not touch the other
    copy.revision = 3
    copy.lease_owner = "me"
    assert (original.revision, original.lease_owner) == (0, None)
    assert copy.__dict__ is not original.__dict__


def test_a_history_entry_read_from_storage_is_the_entry_its_fields_make() -> None:
    failure = Failure(First, "OSError", "the gateway timed out", NOW)
    values = (First, "ok", NOW, {"total": 3}, {"tenant": "a"}, (Second,), failure, True)
    entry = read_history_entry(*values)
    built = HistoryEntry(*values)
    assert type(entry) is HistoryEntry
    assert entry == built
    assert [getattr(entry, f.name) for f in dataclasses.fields(HistoryEntry)] == list(values)


def test_a_history_entry_read_from_storage_stays_frozen() -> None:
    entry = read_history_entry(First, "ok", NOW, None, None, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.event = "changed"  # type: ignore[misc]
    assert entry.event == "ok"


def test_engine_transitions_give_valid_instances_and_leave_their_input_alone() -> None:
    pending = fresh()
    running = engine.start(pending)
    assert pending.status is Status.PENDING
    assert not pending.active_steps
    assert running.status is Status.RUNNING
    assert running.active_steps == {Linear.graph.start}
    assert (running.id, running.workflow_version) == (pending.id, pending.workflow_version)
    # what the engine built passes the validation of Instance(...)
    rebuilt = Instance(**{f.name: getattr(running, f.name) for f in dataclasses.fields(Instance)})
    assert rebuilt == running


# --- repr -------------------------------------------------------------------------------------


def test_repr_is_one_short_line_and_the_data_stays_reachable() -> None:
    big = {"items": [{"sku": f"SKU-{n}", "price": n} for n in range(200)]}
    started = engine.start(engine.new_instance(Linear, big, metadata={"tenant": "a"}))
    text = repr(started)
    assert text == f"<Instance {started.id} Linear v1 running at First, revision 0>"
    assert str(started.id) in repr([started])
    assert started.context.initial == big
    assert vars(started)["context"] is started.context


def test_repr_names_the_waiting_steps_the_error_and_at_most_three_steps() -> None:
    uid = uuid4()
    waiting = Instance(
        workflow=Linear,
        id=uid,
        status="waiting",  # type: ignore[arg-type]
        waiting_steps={Second: Waiting(since=NOW)},
        revision=3,
    )
    assert repr(waiting) == f"<Instance {uid} Linear v1 waiting at Second, revision 3>"

    failed = evolve(
        waiting,
        status=Status.FAILED,
        waiting_steps={},
        error=Failure(Second, "PaymentDeclined", "card declined " * 20, NOW),
    )
    text = repr(failed)
    assert text.startswith(f"<Instance {uid} Linear v1 failed at Second (PaymentDeclined: card")
    assert text.endswith("…), revision 3>")
    assert len(text) < 160, text

    branches = [type(f"Branch{n}", (GraphOnly,), {"events": ("ok",)}) for n in range(5)]
    fan_out = evolve(waiting, status=Status.RUNNING, waiting_steps={}, active_steps=branches)
    assert repr(fan_out).endswith("at Branch0, Branch1, Branch2 and 2 more, revision 3>")
