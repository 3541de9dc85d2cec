"""DjangoStorage and the model against a real PostgreSQL: what the contract suite cannot see."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.models.expressions import RawSQL
from django.db.models.functions import Length
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hephaestus_django import CorruptInstanceError, StaleInstanceError, Status, UnknownWorkflowError
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.sql import FIELDS
from hephaestus_django.postgres.storage import DjangoStorage
from tests import flows
from tests.processes.children import Children
from tests.support.engine import run_waves
from tests.support.instances import flows_now, stored

pytestmark = pytest.mark.django_db


# --- one statement per operation --------------------------------------------------------------


def statements(action: Any) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        action()
    return [query["sql"] for query in captured.captured_queries]


def test_every_operation_is_one_statement(storage: DjangoStorage) -> None:
    instance = engine.start(engine.new_instance(flows.TwoWaits, {"script": {}}))
    (insert,) = statements(lambda: storage.put(instance))
    assert insert.lstrip().startswith("INSERT INTO workflow_instances")
    assert "DO UPDATE" not in insert
    resumed = run_waves(instance)
    (update,) = statements(lambda: storage.put(resumed))
    assert update.lstrip().startswith("UPDATE workflow_instances")  # a later write never inserts
    assert "stored.revision = 1" in update
    (select,) = statements(lambda: storage.get(instance.id))
    assert select.startswith("SELECT")
    (listing,) = statements(lambda: storage.query(status="waiting", workflow=flows.TwoWaits))
    assert "ORDER BY inserted_at, id" in listing
    (delete,) = statements(lambda: storage.delete(instance.id))
    assert "DELETE FROM workflow_instances WHERE id" in delete  # its slots go in the same one
    assert statements(lambda: storage.query(limit=0)) == []


# --- racing writers ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_stale_writers_exactly_one_wins(storage: DjangoStorage) -> None:
    instance = stored(storage, flows.TwoWaits)
    copies = [storage.get(instance.id), storage.get(instance.id)]
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[object] = []

    def write(copy: Instance, event: str) -> None:
        try:
            changed = run_waves(engine.resume(copy, event, now=flows_now()))
            barrier.wait()
            storage.put(changed)
            outcomes.append(event)
        except StaleInstanceError as error:
            outcomes.append(error)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=write, args=(copy, event))
        for copy, event in zip(copies, ["paid", "signed"], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [outcome for outcome in outcomes if isinstance(outcome, str)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, StaleInstanceError)]
    assert len(winners) == 1
    assert len(losers) == 1
    got = storage.get(instance.id)
    assert got.revision == 2
    assert got.execution_history[-1].event == winners[0]


# --- querying the JSONB state -----------------------------------------------------------------


def test_state_contains_finds_instances_by_initial_context(storage: DjangoStorage) -> None:
    wanted = stored(storage, order_id=123, customer={"tier": "gold", "since": date(2020, 1, 2)})
    stored(storage, order_id=124, customer={"tier": "gold"})
    stored(storage, order_id=123.5)

    def found(**lookup: Any) -> list[uuid.UUID]:
        return list(WorkflowInstance.objects.filter(**lookup).values_list("id", flat=True))

    assert found(state__contains={"context": {"initial": {"order_id": 123}}}) == [wanted.id]
    by_helper = WorkflowInstance.objects.with_context(order_id=123)
    assert [row.id for row in by_helper] == [wanted.id]
    gold = WorkflowInstance.objects.with_context(customer={"tier": "gold"}).order_by("inserted_at")
    assert gold.count() == 2
    # tagged values (a date here) match too, because the lookup is encoded like stored data
    since = WorkflowInstance.objects.with_context({"customer": {"since": date(2020, 1, 2)}})
    assert [row.id for row in since] == [wanted.id]


def test_instances_can_be_found_by_a_step_result(storage: DjangoStorage) -> None:
    paid = stored(storage, flows.TwoWaits)
    paid = run_waves(engine.resume(paid, "paid", {"receipt": "R-9"}, now=flows_now()))
    storage.put(paid)
    stored(storage, flows.TwoWaits)
    found = WorkflowInstance.objects.with_result(flows.Payment, receipt="R-9")
    assert [row.id for row in found] == [paid.id]
    assert WorkflowInstance.objects.with_result("payment", {"receipt": "R-8"}).count() == 0


def test_rows_turn_into_engine_instances(storage: DjangoStorage) -> None:
    done = stored(storage)
    waiting = stored(storage, flows.TwoWaits, price=Decimal("9.90"))
    row = WorkflowInstance.objects.get(id=waiting.id)
    assert row.to_instance() == storage.get(waiting.id)
    assert row.state["context"]["initial"]["price"] == Decimal("9.90")
    assert [i.id for i in WorkflowInstance.objects.waiting().to_instances()] == [waiting.id]
    assert [i.id for i in WorkflowInstance.objects.completed().to_instances()] == [done.id]
    assert WorkflowInstance.objects.of_workflow(flows.TwoWaits).get().id == waiting.id
    assert WorkflowInstance.objects.with_status("waiting", Status.COMPLETED).count() == 2
    assert str(row) == f"TwoWaits {waiting.id} (waiting)"


def test_to_instances_reads_what_the_queryset_selects_in_one_statement(
    storage: DjangoStorage,
) -> None:
    first, second, third = (stored(storage, order_id=n) for n in (1, 2, 3))
    everything = WorkflowInstance.objects.order_by("inserted_at")
    found = statements(lambda: everything.to_instances())
    assert len(found) == 1
    assert everything.to_instances() == [storage.get(i.id) for i in (first, second, third)]
    assert [i.id for i in everything.reverse()[:2].to_instances()] == [third.id, second.id]
    assert [i.id for i in everything.only("id").with_context(order_id=2).to_instances()] == [
        second.id
    ]
    assert statements(lambda: WorkflowInstance.objects.filter(id__in=[]).to_instances()) == []
    assert WorkflowInstance.objects.none().to_instances() == []


def test_to_instances_reads_whole_rows_whatever_the_queryset_selects(
    storage: DjangoStorage,
) -> None:
    first, second = (stored(storage, order_id=n) for n in (1, 2))
    expected = [storage.get(first.id), storage.get(second.id)]
    rows = WorkflowInstance.objects.order_by("inserted_at")
    narrowed = {
        "as is": rows,
        "only": rows.only("id", "status"),
        "defer": rows.defer("state"),
        "annotate": rows.annotate(size=Length("workflow")),
        "alias": rows.alias(size=Length("workflow")).filter(size__gt=0),
        "extra": rows.extra(select={"one": "1"}),
        "values": rows.values("status"),
        "values_list": rows.values_list("id", flat=True),
        "union": WorkflowInstance.objects.filter(id=first.id)
        .union(WorkflowInstance.objects.filter(id=second.id))
        .order_by("inserted_at"),
    }
    for name, queryset in narrowed.items():
        found = statements(lambda queryset=queryset: queryset.to_instances())
        assert len(found) == 1, name
        assert queryset.to_instances() == expected, name


def test_a_row_failed_before_tracebacks_were_kept_reads(storage: DjangoStorage) -> None:
    instance = stored(storage, flows.FanOut, script={"charge": "fail"})
    assert instance.error is not None
    assert instance.error.traceback
    WorkflowInstance.objects.filter(pk=instance.id).update(
        state=RawSQL("state #- '{error,traceback}'", [])
    )
    assert "traceback" not in WorkflowInstance.objects.values("state__error").get()["state__error"]
    got = storage.get(instance.id)
    assert got.error is not None
    assert got.error.traceback is None
    assert (got.error.step, got.error.error_type, got.error.message) == (
        instance.error.step,
        instance.error.error_type,
        instance.error.message,
    )


def test_fields_are_the_models_columns_in_order() -> None:
    columns = tuple(field.column for field in WorkflowInstance._meta.concrete_fields)
    assert columns[: len(FIELDS)] == FIELDS
    # The business key's claim is written (by put) and read by the unique index only, never
    # by a read: it comes after the columns every read selects.
    assert columns[len(FIELDS) :] == ("key_claim",)


@pytest.mark.slow
def test_state_contains_uses_the_gin_index_on_100k_rows() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO workflow_instances (id, workflow, status, workflow_version, state)
            SELECT gen_random_uuid(), 'shop.workflows.Order', 'completed', 1,
                   jsonb_build_object(
                       'context', jsonb_build_object(
                           'initial', jsonb_build_object('order_id', n, 'sku', 'SKU-' || n % 97),
                           'steps', '{}'::jsonb))
            FROM generate_series(1, 100000) AS n
            """
        )
        cursor.execute("ANALYZE workflow_instances")
    query = WorkflowInstance.objects.with_context(order_id=4242)
    plan = query.explain()
    assert "idx_workflow_instances_state" in plan, plan
    assert query.count() == 1


# --- corrupt rows -----------------------------------------------------------------------------


def corrupt_row(state: str, workflow: str = "tests.flows.IfElse") -> uuid.UUID:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, %s, 'running', %s::jsonb)",
            [row_id, workflow, state],
        )
    return row_id


@pytest.mark.parametrize(
    ("state", "workflow", "path"),
    [
        ('{"context": {}}', "tests.flows.IfElse", "state"),
        (
            '{"current_step": "tests.flows.Nope", "context": {"initial": {}, "steps": {}}, '
            '"step_configs": {}, "active_steps": [], "waiting_steps": {}, "completed_steps": [], '
            '"execution_history": [], "runtime_metadata": {}, "error": null}',
            "tests.flows.IfElse",
            "current_step",
        ),
        (
            '{"current_step": null, "context": {"initial": {"due": {"__type__": "date", '
            '"value": "not a date"}}, "steps": {}}, "step_configs": {}, "active_steps": [], '
            '"waiting_steps": {}, "completed_steps": [], "execution_history": [], '
            '"runtime_metadata": {}, "error": null}',
            "tests.flows.IfElse",
            "context.initial.due",
        ),
        (
            '{"current_step": null, "context": {"initial": {}, "steps": {}}, "step_configs": {}, '
            '"active_steps": "tests.flows.Check", "waiting_steps": {}, "completed_steps": [], '
            '"execution_history": [], "runtime_metadata": {}, "error": null}',
            "tests.flows.IfElse",
            "active_steps",
        ),
        # Valid jsonb (PostgreSQL takes ~12,000 levels), nested deeper than json parses on any
        # supported Python: written by hand, never by put().
        ("[" * 12_000 + "]" * 12_000, "tests.flows.IfElse", "state"),
    ],
)
def test_a_corrupt_row_is_a_clear_error_and_spares_the_others(
    storage: DjangoStorage, state: str, workflow: str, path: str
) -> None:
    healthy = stored(storage)
    broken = corrupt_row(state, workflow)
    with pytest.raises(CorruptInstanceError) as caught:
        storage.get(broken)
    assert caught.value.instance_id == broken
    assert caught.value.path == path
    assert str(broken) in str(caught.value)
    assert [instance.id for instance in storage.query()] == [healthy.id]
    assert [instance.id for instance in WorkflowInstance.objects.to_instances()] == [healthy.id]
    assert storage.get(healthy.id) == healthy


def test_nothing_is_imported_because_a_row_says_so(storage: DjangoStorage) -> None:
    import sys

    broken = corrupt_row('{"context": {}}', workflow="antigravity.Fly")
    with pytest.raises(
        UnknownWorkflowError, match=r"no workflow is registered as 'antigravity\.Fly'"
    ):
        storage.get(broken)
    assert "antigravity" not in sys.modules


# --- round trip through PostgreSQL ------------------------------------------------------------


def storable_text(max_size: int | None = None) -> st.SearchStrategy[str]:
    """Text PostgreSQL can hold: no NUL, no lone surrogates (the codec refuses those)."""
    alphabet = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
    return st.text(alphabet, max_size=max_size)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    storable_text(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.binary(max_size=16),
)
keys = storable_text(max_size=8)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
        st.frozensets(st.integers() | storable_text(max_size=4), max_size=4),
        st.sets(st.uuids() | st.dates(), max_size=4),
    ),
    max_leaves=20,
)


def same_types(left: Any, right: Any) -> bool:
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return all(same_types(left[key], right[key]) for key in left)
    if isinstance(left, (list, tuple)):
        return all(same_types(a, b) for a, b in zip(left, right, strict=True))
    return True


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(context=st.dictionaries(keys, values, max_size=5))
def test_any_supported_context_round_trips_through_postgresql(
    storage: DjangoStorage, context: dict[str, Any]
) -> None:
    instance = engine.new_instance(flows.IfElse, context)
    storage.put(instance)
    got = storage.get(instance.id).context.initial
    assert got == context
    assert same_types(got, context)


# --- schema -----------------------------------------------------------------------------------


def test_makemigrations_is_clean() -> None:
    call_command("makemigrations", "hephaestus_django", "--check", "--dry-run", verbosity=0)


@pytest.mark.parametrize(
    "auto_field", [None, "django.db.models.AutoField", "django.db.models.SmallAutoField"]
)
def test_makemigrations_is_clean_whatever_the_projects_default_auto_field(
    tmp_path: Path, auto_field: str | None
) -> None:
    """The app pins its primary key type: a project's DEFAULT_AUTO_FIELD (or Django's default,
    when it sets none) asks for no migration of this app."""
    children = Children(tmp_path, dict(connection.settings_dict))
    env = {} if auto_field is None else {"DEFAULT_AUTO_FIELD": auto_field}
    argv = ["makemigrations", "hephaestus_django", "--check", "--dry-run"]
    result = children.run("manage", {"argv": argv}, **env)
    assert "No changes detected" in result["stdout"]


@pytest.mark.django_db(transaction=True)
def test_migrations_apply_backward_and_forward() -> None:
    def tables() -> list[str]:
        return connection.introspection.table_names()

    def indexes() -> set[str]:
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, "workflow_instances")
        return set(constraints)

    assert "workflow_instances" in tables()
    assert {
        "idx_workflow_instances_state",
        "idx_workflow_instances_status",
        "idx_workflow_instances_wf",
        "idx_workflow_instances_wf_ver",
        "workflow_instances_status_valid",
    } <= indexes()
    call_command("migrate", "hephaestus_django", "zero", verbosity=0)
    assert "workflow_instances" not in tables()
    call_command("migrate", "hephaestus_django", verbosity=0)
    assert "workflow_instances" in tables()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_workflow_instances_state'"
        )
        (definition,) = cursor.fetchone()
    assert "USING gin (state jsonb_path_ops)" in definition


def test_the_database_refuses_an_impossible_status() -> None:
    from django.db import IntegrityError, transaction

    row_id = corrupt_row('{"context": {}}')
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE workflow_instances SET status = 'sleeping' WHERE id = %s", [row_id])


def test_a_row_carries_its_lease_into_the_instance(storage: DjangoStorage) -> None:
    running = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    running.lease_owner, running.lease_expires_at = "runner-1", flows_now()
    storage.put(running)
    row = WorkflowInstance.objects.get(id=running.id)
    assert (row.to_instance().lease_owner, row.to_instance().lease_expires_at) == (
        "runner-1",
        flows_now(),
    )
    (listed,) = WorkflowInstance.objects.filter(id=running.id).to_instances()
    assert listed.lease_owner == "runner-1"


def test_the_settings_path_names_the_storage_in_postgres() -> None:
    """``hephaestus_django.storage.DjangoStorage``, the path settings name, is the backend that
    lives with the other statements in ``hephaestus_django.postgres``."""
    from hephaestus_django import storage as settings_path
    from hephaestus_django.postgres import storage as backend

    assert settings_path.DjangoStorage is backend.DjangoStorage
    assert settings_path.__all__ == ["DjangoStorage"]
