"""The state document a storage writes: what ``to_row`` encodes, and that it reads back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from hephaestus_django import CorruptInstanceError, Done, Event, SerializationError, Step, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Context, Instance, Running, evolve
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.document import from_row, to_row
from tests import flows
from tests.support.engine import run_waves


class Dated(Step):
    """A result with a value ``encode`` tags, so its encoded form is a new object."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("ok", updates={"on": date(2026, 11, 24), "n": context.initial["n"]})


class OddlyKeyed(Dated):
    """Its result sits under the key ``encode`` escapes in ``context.steps``."""

    step_key = codec.TYPE_KEY


class DatedAgain(Dated):
    pass


class DatedFlow(Workflow):
    start = Dated
    transitions = {Dated: {"ok": DatedAgain}, DatedAgain: {"ok": Done}}


class OddlyKeyedFlow(Workflow):
    start = Dated
    transitions = {Dated: {"ok": OddlyKeyed}, OddlyKeyed: {"ok": Done}}


def finished(n: int = 1, workflow: type[Workflow] = DatedFlow) -> Instance:
    return run_waves(engine.start(engine.new_instance(workflow, {"n": n})))


def read_back(instance: Instance) -> Instance:
    """Encode, write as text, read and decode, as a storage does."""
    row = to_row(instance)
    return from_row(replace(row, state=codec.loads(codec.dumps(row.state))))


def test_results_in_the_history_are_written_as_in_the_context() -> None:
    instance = finished()
    state = to_row(instance).state
    entries = state["execution_history"]
    steps = state["context"]["steps"]
    assert [entry["context_updates"] for entry in entries[:2]] == [
        steps["dated"],
        steps["dated_again"],
    ]
    assert entries[0]["context_updates"]["on"] == {"__type__": "date", "value": "2026-11-24"}
    assert read_back(instance) == instance


def test_results_under_the_escaped_key_are_written_as_in_the_context() -> None:
    instance = finished(workflow=OddlyKeyedFlow)
    state = to_row(instance).state
    escaped = state["context"]["steps"]
    assert escaped["__type__"] == "dict"
    entries = state["execution_history"]
    assert entries[1]["context_updates"] == escaped["value"][codec.TYPE_KEY]
    assert read_back(instance) == instance


def with_first_entry(instance: Instance, **changes: Any) -> Instance:
    """``instance`` with its first history entry changed."""
    first, *rest = instance.execution_history
    return evolve(instance, execution_history=(replace(first, **changes), *rest))


def test_a_history_result_that_is_not_the_one_in_the_context_is_checked_on_its_own() -> None:
    instance = finished()
    # Equal to the context's result, but another object, holding what cannot be stored.
    updates = {**instance.execution_history[0].context_updates, "bad": object()}
    with pytest.raises(SerializationError) as caught:
        to_row(with_first_entry(instance, context_updates=updates))
    assert caught.value.path == "execution_history[0].context_updates.bad"
    assert str(instance.id) in str(caught.value)


def test_a_history_result_that_differs_from_the_contexts_is_written_as_it_is() -> None:
    instance = finished(n=1)
    older = with_first_entry(instance, context_updates={"on": date(2020, 1, 1), "n": 0})
    got = read_back(older)
    assert got.execution_history[0].context_updates == {"on": date(2020, 1, 1), "n": 0}
    assert got.context.steps["dated"] == {"on": date(2026, 11, 24), "n": 1}


@pytest.mark.parametrize("event", ["nul\x00", "\ud800"])
def test_an_event_name_that_cannot_be_stored_is_refused_naming_the_entry(event: str) -> None:
    with pytest.raises(SerializationError) as caught:
        to_row(with_first_entry(finished(), event=event))
    assert caught.value.path == "execution_history[0].event"


def test_a_non_ascii_event_name_is_stored() -> None:
    renamed = with_first_entry(finished(), event="geprüft")
    assert read_back(renamed).execution_history[0].event == "geprüft"


def test_the_first_value_refused_is_the_first_in_the_document() -> None:
    instance = finished()
    broken = evolve(
        instance,
        context=Context(
            initial={**instance.context.initial, "bad": object()},
            steps={**instance.context.steps, "bad": object()},
        ),
        runtime_metadata={"bad": object()},
    )
    with pytest.raises(SerializationError) as caught:
        to_row(broken)
    assert caught.value.path == "context.initial.bad"


@pytest.mark.parametrize("status", ["done", "RUNNING", ""])
def test_a_row_with_an_unknown_status_is_corrupt(status: str) -> None:
    row = replace(to_row(finished()), status=status)
    with pytest.raises(CorruptInstanceError) as caught:
        from_row(row)
    assert caught.value.path == "status"
    assert repr(status) in str(caught.value)


def test_a_row_missing_state_keys_names_them() -> None:
    row = to_row(finished())
    state = {key: value for key, value in row.state.items() if key not in ("error", "context")}
    with pytest.raises(CorruptInstanceError, match="missing keys context, error"):
        from_row(replace(row, state=state))


def failed() -> Instance:
    return run_waves(
        engine.start(engine.new_instance(flows.FanOut, {"script": {"charge": "fail"}}))
    )


def test_a_failure_is_stored_with_its_traceback() -> None:
    instance = failed()
    assert instance.error is not None
    assert instance.error.traceback
    row = to_row(instance)
    assert row.state["error"]["traceback"] == instance.error.traceback
    assert read_back(instance).error == instance.error


def test_a_failure_stored_before_tracebacks_were_kept_still_reads() -> None:
    row = to_row(failed())
    error = {key: value for key, value in row.state["error"].items() if key != "traceback"}
    got = from_row(replace(row, state={**row.state, "error": error}))
    assert got.error is not None
    assert got.error.traceback is None
    assert got.error.message == "charge was told to fail"


def test_a_traceback_that_is_not_text_is_corrupt() -> None:
    row = to_row(failed())
    state = {**row.state, "error": {**row.state["error"], "traceback": ["not", "text"]}}
    with pytest.raises(CorruptInstanceError, match=r"error\.traceback.*expected a string"):
        from_row(replace(row, state=state))


# --- a status column that disagrees with the state -------------------------------------------


def as_stored(instance: Instance, status: str) -> Any:
    row = to_row(instance)
    return replace(row, status=status, state=codec.loads(codec.dumps(row.state)))


def in_every_status() -> dict[str, Instance]:
    started = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    return {
        "running": started,
        "waiting": run_waves(engine.start(engine.new_instance(flows.TwoWaits, {"script": {}}))),
        "completed": finished(),
        "failed": run_waves(
            engine.start(engine.new_instance(flows.FanOut, {"script": {"charge": "fail"}}))
        ),
    }


@pytest.mark.parametrize("state_of", ["running", "waiting", "completed", "failed"])
@pytest.mark.parametrize("column", ["running", "waiting", "completed", "failed"])
def test_a_status_that_disagrees_with_the_state_is_corrupt(state_of: str, column: str) -> None:
    instance = in_every_status()[state_of]
    assert instance.status.value == state_of
    row = as_stored(instance, column)
    if column == state_of:
        assert from_row(row).status.value == column
        return
    with pytest.raises(CorruptInstanceError) as caught:
        from_row(row)
    assert caught.value.path == "status"
    assert caught.value.instance_id == instance.id
    assert f"it is {column!r}" in str(caught.value)
    assert str(instance.id) in str(caught.value)


def test_completed_with_active_steps_names_them() -> None:
    running = in_every_status()["running"]
    with pytest.raises(
        CorruptInstanceError, match=r"'completed' but the state has active steps \(Check\)"
    ):
        from_row(as_stored(running, "completed"))


def test_running_marks_go_to_their_own_column_and_rows_from_before_it_still_read() -> None:
    """A mark is written in the row's ``running`` column, never in the state document (a job
    marking its step then writes that small column alone); a row written before the column
    existed keeps its marks in the document, and they read from there while the column is
    empty."""
    since = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    started = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    marked = evolve(started, running={flows.Check: Running("host-1:42", since)})
    row = to_row(marked)
    assert "running" not in row.state
    assert row.running == {
        flows.Check.path(): {"on": "host-1:42", "since": "2026-12-07T12:00:00+00:00"}
    }
    assert read_back(marked).running == marked.running
    assert to_row(started).running is None
    legacy = replace(
        to_row(started), state={**to_row(started).state, "running": row.running}, running=None
    )
    assert from_row(legacy).running == marked.running
    corrupt = replace(row, running={flows.Check.path(): {"on": "h:1", "since": "yesterday"}})
    with pytest.raises(CorruptInstanceError, match="running"):
        from_row(corrupt)
