"""Item 10: an instance looked up by its business key, against a lookup by its id.

Every bulk row has the business key ``order-<its order id>`` (no claim: they are completed,
under the default ``"active"`` scope), so at 1,000,000 rows there are a million keys in the
partial index ``idx_workflow_instances_key``. *By key* is ``storage.query(key=...)``, what
``Workflow.get(key=...)`` runs; *by id* is ``storage.get(id)``. Both return the decoded
instance, on ``DjangoStorage``; the plan is ``EXPLAIN (ANALYZE, BUFFERS)`` of the key lookup.
"""

from __future__ import annotations

import random
from typing import Any

import psycopg

from bench.containment import plan_line
from bench.data import BULK_ORDER_BASE
from bench.measure import interleave, repeat
from hephaestus_django.postgres.sql import COLUMNS, TABLE
from hephaestus_django.postgres.storage import DjangoStorage


def run(raw: psycopg.Connection[Any], *, rows: int, rounds: int, n: int) -> dict[str, Any]:
    """Measure at the current table size; bulk rows ``1..rows`` must be loaded."""
    picker = random.Random(rows + 1)
    storage = DjangoStorage()
    total = 2 * (rounds + 1) * n + 2
    keys = [f"order-{BULK_ORDER_BASE + picker.randint(1, rows)}" for _ in range(total)]
    ids = dict(
        raw.execute(
            f"SELECT business_key, id FROM {TABLE} WHERE business_key = ANY(%s)", [keys]
        ).fetchall()
    )
    by_key = iter(keys)
    by_id = iter(keys)

    def key_side(count: int) -> list[int]:
        wanted = [next(by_key) for _ in range(count)]

        def fetch(i: int) -> None:
            (found,) = storage.query(key=wanted[i])
            assert found.business_key == wanted[i]

        return repeat(fetch, count)

    def id_side(count: int) -> list[int]:
        wanted = [ids[next(by_id)] for _ in range(count)]
        return repeat(lambda i: storage.get(wanted[i]), count)

    compared = interleave(key_side, id_side, rounds=rounds, n=n, warmup=n)
    with raw.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) SELECT {COLUMNS} FROM {TABLE} "
            "WHERE business_key = %s ORDER BY inserted_at, id",
            [keys[-1]],
        )
        plan = [str(row[0]) for row in cursor.fetchall()]
    return {
        "rows": rows,
        "key_vs_id": compared,
        "plan": plan_line(plan),
        "uses_index": any("idx_workflow_instances_key" in line for line in plan),
        "explain": plan,
    }
