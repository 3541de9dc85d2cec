"""Item 3: workflows per second with ``LocalRunner`` + ``DjangoStorage`` against a floor.

*Ours*: ``LocalRunner().start(workflow, context, storage=DjangoStorage())``, which runs the
workflow to completion (every step completes at once).

*The floor* is what a hand-written runner must at least do to make the same workflow durable:
one upsert when the instance starts and one after each step completes (the terminal ``Done``
folded into the last step's write, as ``LocalRunner`` does too), each the same
``INSERT ... ON CONFLICT ... WHERE revision`` statement through raw psycopg with the revision
tracked from ``RETURNING``, autocommit, and ``json.dumps`` of the same state document ours
writes at that point. No engine, no codec: the
documents are computed in advance. For the 3-step workflow that is 4 upserts, for the 10-step
one 11 (each branch of the fan-out writes its own result).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from uuid import uuid4

import psycopg
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.data import raw_write
from bench.environment import PREPARED
from bench.measure import interleave, repeat
from bench.workflows import Fanout10, Linear3, initial_context
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, codec
from hephaestus_django.runtime.document import to_row
from hephaestus_django.runtime.workflow_pauses import holds
from hephaestus_django.storage import DjangoStorage

WORKFLOWS: dict[str, type[WorkflowDefinition]] = {"linear_3": Linear3, "fanout_10": Fanout10}


class _Recorder(InMemoryStorage):
    """Keeps every instance put, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[Instance] = []

    def put(self, instance: Instance) -> None:
        super().put(instance)
        self.written.append(instance)


class _CountingRunner(LocalRunner):
    waves = 0

    def _execute_wave(self, instance: Instance, activations: Any, storage: Any) -> Any:
        self.waves += 1
        return super()._execute_wave(instance, activations, storage)


def recorded_run(workflow: type[WorkflowDefinition]) -> dict[str, Any]:
    """Run once in memory: our writes, the engine's waves, and the floor's documents."""
    storage = _Recorder()
    runner = _CountingRunner()
    try:
        runner.start(workflow, initial_context(20_000_000), storage=storage)
    finally:
        runner.close()
    documents = [to_row(instance).state for instance in storage.written]
    floor = [(documents[0], "running")]
    done: set[Any] = set()
    for instance, document in zip(storage.written[1:], documents[1:], strict=True):
        new = [s for s in instance.completed_steps if s not in done and not s.terminal]
        done |= instance.completed_steps
        floor.extend((document, "running") for _ in new)
    floor[-1] = (documents[-1], storage.written[-1].status.value)
    return {
        "writes": len(storage.written),
        "waves": runner.waves,
        "state_bytes": sum(len(codec.dumps(document)) for document in documents),
        "floor": floor,
        "floor_state_bytes": sum(len(json.dumps(d, separators=(",", ":"))) for d, _ in floor),
    }


def floor_workflow(raw: psycopg.Connection[Any], name: str, floor: list[tuple[Any, str]]) -> None:
    """One workflow as the hand-written floor writes it: ``floor``'s documents, one
    autocommitted write each (what the durability needs, no engine)."""
    key = uuid4()
    revision = 0
    for document, status in floor:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        with raw.cursor() as cursor:
            written = raw_write(cursor, key, name, status, text, revision)
        assert written is not None
        revision = written[0]


def _wal_bytes(raw: psycopg.Connection[Any], action: Any) -> int:
    before = raw.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    action()
    sql = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)"
    after = raw.execute(sql, before).fetchone()
    return int(after[0]) if after else 0


def run(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    """Ours against the floor: on the ``default`` alias, on ``prepared``, and on ``default``
    against a floor whose connection does not prepare statements either."""
    runner = LocalRunner()
    order_ids = iter(range(30_000_000, 40_000_000))
    results: dict[str, Any] = {}

    def ours(count: int, workflow: Any, storage: DjangoStorage, runner: LocalRunner) -> list[int]:
        contexts = [initial_context(next(order_ids)) for _ in range(count)]
        return repeat(lambda i: runner.start(workflow, contexts[i], storage=storage), count)

    def floor_side(
        count: int, name: str, floor: Any, connection: psycopg.Connection[Any] = raw
    ) -> list[int]:
        return repeat(lambda i: floor_workflow(connection, name, floor), count)

    def versus_floor(
        workflow: Any, using: str, floor: Any, connection: psycopg.Connection[Any] = raw
    ) -> Any:
        return interleave(
            partial(ours, workflow=workflow, storage=DjangoStorage(using=using), runner=runner),
            partial(floor_side, name=workflow.path(), floor=floor, connection=connection),
            rounds=rounds,
            n=n,
            warmup=min(n, 20),
        )

    try:
        for label, workflow in WORKFLOWS.items():
            recorded = recorded_run(workflow)
            floor = recorded.pop("floor")
            storage = DjangoStorage()
            compared = versus_floor(workflow, "default", floor)
            prepared = versus_floor(workflow, PREPARED, floor)
            like_for_like = versus_floor(workflow, "default", floor, unprepared)
            # Read before, as the clock is: the workflows held by pause_all, read at most once a
            # second per process and storage, are no cost of one workflow.
            holds(storage)
            with CaptureQueriesContext(connection) as captured:
                runner.start(workflow, initial_context(1), storage=storage)
            statements = captured.captured_queries
            # WAL per workflow: the median of three alternating batches of 20 per side, since
            # a batch that first touches a page after a checkpoint also logs the whole page.
            batch = 20
            wal: dict[str, list[int]] = {"ours": [], "floor": []}
            sides = {
                "ours": partial(ours, batch, workflow, storage, runner),
                "floor": partial(floor_side, batch, workflow.path(), floor),
            }
            for _ in range(3):
                for side, action in sides.items():
                    wal[side].append(_wal_bytes(raw, action))
            ours_wal, floor_wal = (sorted(wal[side])[1] for side in ("ours", "floor"))
            results[label] = {
                **compared,
                "prepared": prepared,
                "unprepared": like_for_like,
                "ours_statements": len(statements),
                "ours_statement_bytes": sum(len(q["sql"]) for q in statements),
                "floor_statements": len(floor),
                "ours_writes": recorded["writes"],
                "engine_waves": recorded["waves"],
                "writes_per_wave": (recorded["writes"] - 1) / recorded["waves"],
                "ours_state_bytes": recorded["state_bytes"],
                "floor_state_bytes": recorded["floor_state_bytes"],
                "ours_wal_bytes": ours_wal / batch,
                "floor_wal_bytes": floor_wal / batch,
            }
    finally:
        runner.close()
    return results
