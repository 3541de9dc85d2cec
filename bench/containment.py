"""Item 2: ``state__contains`` on ``context.initial``, GIN index vs sequential scan.

*Ours* is the documented ORM path, ``WorkflowInstance.objects.with_context(order_id=...)
.to_instances()`` (one matching row, decoded into an engine instance). *Raw* executes the very
SQL and parameters that queryset compiles to (``state @> '{"context": {"initial": {...}}}'``)
through psycopg and ``json.loads`` the state. The sequential scan is the same raw statement in a
session with ``enable_bitmapscan``, ``enable_indexscan`` and ``enable_indexonlyscan`` off. Each
probe asks for a different order id, so no two probes match the same row.

As for the storage operations, the comparison is made three ways: Django's defaults (the
``default`` alias, which never prepares) against psycopg's (which prepares from the fifth
execution of the same SQL); the ``prepared`` alias against psycopg's defaults; and the
``default`` alias against a psycopg connection that does not prepare either.
"""

from __future__ import annotations

import json
import random
from functools import partial
from typing import Any

import psycopg
from django.db.models import TextField
from django.db.models.functions import Cast

from bench.data import BULK_ORDER_BASE
from bench.environment import PREPARED
from bench.measure import interleave, latency_ms, repeat, spread
from hephaestus_django.models import WorkflowInstance

_FORCE_SEQSCAN = ("enable_bitmapscan", "enable_indexscan", "enable_indexonlyscan")


def _queryset(order_id: int, using: str = "default") -> Any:
    return WorkflowInstance.objects.using(using).with_context(order_id=order_id)


def _compiled(order_id: int) -> tuple[str, Any]:
    """The SQL and parameters ``to_instances()`` executes for this probe."""
    rows = _queryset(order_id).defer("state").annotate(state_json=Cast("state", TextField()))
    return rows.query.sql_with_params()


def _raw_fetch(
    raw: psycopg.Connection[Any], compiled: tuple[str, Any], prepare: bool | None = None
) -> None:
    sql, params = compiled
    with raw.cursor() as cursor:
        # A prepared statement keeps its plan: a forced sequential scan must not be prepared.
        cursor.execute(sql, params, prepare=prepare)
        rows = cursor.fetchall()
    assert len(rows) == 1, len(rows)
    json.loads(rows[0][-1])


def _explain(raw: psycopg.Connection[Any], compiled: tuple[str, Any]) -> list[str]:
    sql, params = compiled
    with raw.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [str(row[0]) for row in cursor.fetchall()]


def _set_seqscan(raw: psycopg.Connection[Any], forced: bool) -> None:
    for name in _FORCE_SEQSCAN:
        raw.execute(f"SET {name} = {'off' if forced else 'on'}")


def plan_line(lines: list[str]) -> str:
    """The plan node that reads the table (the index or the scan), trimmed of timings."""
    for line in lines:
        text = line.strip().lstrip("-> ").strip()
        if text.startswith(("Bitmap Index Scan", "Index Scan", "Seq Scan", "Parallel Seq Scan")):
            return text.split("  (")[0]
    return lines[0].split("  (")[0] if lines else "?"


def run(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rows: int,
    rounds: int,
    n: int,
    seq_probes: int,
) -> dict[str, Any]:
    """Measure at the current table size; bulk rows ``1..rows`` must be loaded."""
    picker = random.Random(rows)
    total = 3 * 2 * (rounds + 1) * n + seq_probes + 4
    orders = [BULK_ORDER_BASE + picker.randint(1, rows) for _ in range(total)]
    probes = iter(orders)

    def ours(count: int, using: str) -> list[int]:
        wanted = [next(probes) for _ in range(count)]

        def fetch(i: int) -> None:
            found = _queryset(wanted[i], using).to_instances()
            assert len(found) == 1, len(found)

        return repeat(fetch, count)

    def raw_side(count: int, connection: psycopg.Connection[Any]) -> list[int]:
        wanted = [_compiled(next(probes)) for _ in range(count)]
        return repeat(lambda i: _raw_fetch(connection, wanted[i]), count)

    def compare(using: str, connection: psycopg.Connection[Any]) -> dict[str, Any]:
        return interleave(
            partial(ours, using=using),
            partial(raw_side, connection=connection),
            rounds=rounds,
            n=n,
            warmup=n,
        )

    compared = compare("default", raw)
    prepared = compare(PREPARED, raw)
    like_for_like = compare("default", unprepared)
    gin_plan = _explain(raw, _compiled(next(probes)))
    seq = [_compiled(next(probes)) for _ in range(seq_probes)]
    _set_seqscan(raw, True)
    try:
        seq_plan = _explain(raw, _compiled(next(probes)))
        seq_ns = repeat(lambda i: _raw_fetch(raw, seq[i], prepare=False), seq_probes)
    finally:
        _set_seqscan(raw, False)
    compile_ns = repeat(lambda i: _compiled(orders[i]), n)
    gin_p50 = compared["raw"]["latency_ms"]["p50"]
    seq_ms = [ns / 1e6 for ns in seq_ns]
    return {
        "rows": rows,
        "ours_vs_raw_gin": compared,
        "prepared": prepared,
        "unprepared": like_for_like,
        "seqscan_latency_ms": latency_ms(seq_ns),
        "orm_compile_ms": latency_ms(compile_ns),
        "seqscan_over_gin": spread([ms / gin_p50 for ms in seq_ms]),
        "plan_gin": plan_line(gin_plan),
        "plan_seqscan": plan_line(seq_plan),
        "explain_gin": gin_plan,
        "explain_seqscan": seq_plan,
        "sql": _compiled(0)[0],
    }
