"""The instances measured, and bulk loads of the table.

Single instances are real: a :class:`~bench.workflows.Linear3` run to completion in memory, whose
``state`` is ~2.2 KB of JSON. Bulk rows (100,000 / 1,000,000) are the same document written by
PostgreSQL itself, ``INSERT ... SELECT generate_series`` in batches, with the order and customer
numbers substituted per row, so every bulk row decodes and the admin can show it. The GIN index is
dropped before a bulk load and built again after it, with the DDL of the model as shipped, and a
``CHECKPOINT`` follows, so that writing the load out does not stall the measurements after it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg

from bench.workflows import Linear3, initial_context
from hephaestus_django.core.instance import Instance
from hephaestus_django.postgres.sql import INSERT, UPDATE_PLAIN
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, codec
from hephaestus_django.runtime.document import to_row

STATE_INDEX = "idx_workflow_instances_state"
BULK_ORDER_BASE = 1_000_000
"""Bulk rows carry order ids ``BULK_ORDER_BASE + n``; instances put by the bench use others."""
ORDER_SENTINEL = 900_000_007
_BULK_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_BATCH = 100_000

_BULK_INSERT = """
INSERT INTO workflow_instances
    (id, workflow, status, workflow_version, state, revision, inserted_at, updated_at,
     business_key)
SELECT gen_random_uuid(), %(workflow)s, 'completed', 1,
       replace(replace(%(template)s, '@O@', (%(base)s::int + g)::text),
               '@C@', (g %% 5000)::text)::jsonb,
       1,
       %(epoch)s::timestamptz + g * interval '1 millisecond',
       %(epoch)s::timestamptz + g * interval '1 millisecond',
       'order-' || (%(base)s::int + g)::text
FROM generate_series(%(first)s::int, %(last)s::int) AS g
"""


def insert_params(key: Any, workflow: str, status: str, text: str) -> list[Any]:
    """The parameters of :data:`~hephaestus_django.postgres.sql.INSERT` for a row with no lease,
    timer or business key: what the floor writes."""
    return [key, workflow, status, 1, text, None, None, None, None, None, None]


def raw_write(cursor: Any, key: Any, workflow: str, status: str, text: str, revision: int) -> Any:
    """The floor's write, by the statement ``DjangoStorage.put`` uses for it: the insert of a
    new row (``revision`` 0), else the update at ``revision``. What it returns (the new
    revision first), None if it wrote nothing."""
    if revision == 0:
        cursor.execute(INSERT, insert_params(key, workflow, status, text))
    else:
        # A row with no business key, never upgraded: the storage's plain update.
        cursor.execute(
            UPDATE_PLAIN, [workflow, status, text, None, None, None, None, key, revision]
        )
    return cursor.fetchone()


def completed_instance(order_id: int) -> Instance:
    """A :class:`Linear3` instance run to completion in memory, as if never stored."""
    storage = InMemoryStorage()
    runner = LocalRunner()
    try:
        done = runner.start(Linear3, initial_context(order_id), storage=storage)
    finally:
        runner.close()
    return unsaved(done)


def unsaved(instance: Instance) -> Instance:
    """A copy of ``instance`` under a new id, never stored (so ``put`` takes the insert path)."""
    return replace(instance, id=uuid4(), revision=0, inserted_at=None, updated_at=None)


def state_text(instance: Instance) -> str:
    """The JSON text ``DjangoStorage.put`` sends for ``instance``'s state."""
    return codec.dumps(to_row(instance).state)


def bulk_template() -> str:
    """A completed instance's state text with ``@O@`` (order id) and ``@C@`` (customer) slots."""
    context = initial_context(ORDER_SENTINEL)
    context["customer"] = {
        **context["customer"],
        "id": "C-@C@",
        "name": "Customer number @C@",
        "email": "customer@C@@example.com",
    }
    storage = InMemoryStorage()
    runner = LocalRunner()
    try:
        done = runner.start(Linear3, context, storage=storage)
    finally:
        runner.close()
    return state_text(done).replace(str(ORDER_SENTINEL), "@O@")


def drop_state_index(raw: psycopg.Connection[Any]) -> None:
    raw.execute(f"DROP INDEX IF EXISTS {STATE_INDEX}")


def create_state_index(raw: psycopg.Connection[Any]) -> float:
    """Build the GIN index with the model's own DDL; return the seconds it took."""
    from django.db import connection

    from hephaestus_django.models import WorkflowInstance

    (index,) = [i for i in WorkflowInstance._meta.indexes if i.name == STATE_INDEX]
    with connection.schema_editor(collect_sql=True) as editor:
        ddl = str(index.create_sql(WorkflowInstance, editor))
    start = time.perf_counter()
    raw.execute("SET maintenance_work_mem = '1GB'")
    raw.execute(ddl)
    raw.execute("RESET maintenance_work_mem")
    return time.perf_counter() - start


def bulk_load(raw: psycopg.Connection[Any], first: int, last: int) -> dict[str, float]:
    """Insert bulk rows ``first..last`` (inclusive), GIN index built after; VACUUM ANALYZE."""
    template = bulk_template()
    start = time.perf_counter()
    drop_state_index(raw)
    for low in range(first, last + 1, _BATCH):
        high = min(low + _BATCH - 1, last)
        raw.execute(
            _BULK_INSERT,
            {
                "workflow": Linear3.path(),
                "template": template,
                "base": BULK_ORDER_BASE,
                "epoch": _BULK_EPOCH,
                "first": low,
                "last": high,
            },
        )
    loaded = time.perf_counter() - start
    index = create_state_index(raw)
    start = time.perf_counter()
    raw.execute("VACUUM ANALYZE workflow_instances")
    vacuumed = time.perf_counter() - start
    # Write the load's dirty pages out now, not in a checkpoint during the next measurement.
    start = time.perf_counter()
    raw.execute("CHECKPOINT")
    return {
        "load_s": loaded,
        "index_s": index,
        "vacuum_s": vacuumed,
        "checkpoint_s": time.perf_counter() - start,
    }


def row_count(raw: psycopg.Connection[Any]) -> int:
    found = raw.execute("SELECT count(*) FROM workflow_instances").fetchone()
    return int(found[0]) if found else 0


def table_size(raw: psycopg.Connection[Any]) -> dict[str, int]:
    found = raw.execute(
        "SELECT pg_table_size('workflow_instances'), pg_relation_size(%s)", [STATE_INDEX]
    ).fetchone()
    return {"table_bytes": int(found[0]), "gin_bytes": int(found[1])} if found else {}
