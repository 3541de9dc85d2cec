"""Item 1: ``DjangoStorage`` put (insert and update path), get, delete, query of 100 rows.

Each operation is compared with raw psycopg 3 (default cursor, autocommit) executing the very
statement ``DjangoStorage`` executes (the SQL strings are imported from
:mod:`hephaestus_django.storage`), on the same table, interleaved. What each baseline includes is
in :data:`BASELINES`; the state is the same ~2.2 KB document on both sides.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

import psycopg
from django.db import connections
from django.test.utils import CaptureQueriesContext

from bench.data import completed_instance, insert_params, raw_write, unsaved
from bench.environment import PREPARED
from bench.measure import interleave, repeat
from hephaestus_django.core import engine
from hephaestus_django.postgres.sql import COLUMNS, DELETE, INSERT, SELECT_ONE, TABLE
from hephaestus_django.postgres.storage import DjangoStorage
from hephaestus_django.runtime.document import encoded_state

QUERY = f"SELECT {COLUMNS} FROM {TABLE} WHERE status = ANY(%s) ORDER BY inserted_at, id"

BASELINES = {
    "put_insert": "json.dumps of the same encoded state dict + the same INSERT ... ON CONFLICT "
    "... RETURNING with the same 10 parameters + fetchone",
    "put_update": "as put_insert, on an existing row whose revision it tracks from RETURNING",
    "get": "the same SELECT ... WHERE id = %s + fetchone + json.loads of the state text",
    "delete": "the same DELETE ... WHERE id = %s",
    "query_100": "the same SELECT ... WHERE status = ANY(%s) ORDER BY inserted_at, id "
    "+ fetchall + json.loads of each state (no Instance built)",
}
QUERY_STATUS = "running"  # rows whose state is a started instance, so they decode as running
QUERY_ROWS = 100


def _dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


class Sides:
    """The two sides' operations on one shared table."""

    def __init__(self, raw: psycopg.Connection[Any], using: str = "default") -> None:
        self.raw = raw
        self.storage = DjangoStorage(using=using)
        self.template = completed_instance(10_000_000)
        self.document = encoded_state(self.template)
        # A status must agree with the state it is stored with, or the row is corrupt.
        self.started_document = encoded_state(
            engine.start(engine.new_instance(self.template.workflow, self.template.context.initial))
        )
        self.workflow = self.template.workflow.path()

    def raw_put(self, key: UUID, document: Any, revision: int) -> int:
        with self.raw.cursor() as cursor:
            written = raw_write(cursor, key, self.workflow, "completed", _dumps(document), revision)
        assert written is not None
        return int(written[0])

    def seed(self, n: int, status: str = "completed") -> list[UUID]:
        """Insert ``n`` rows (outside any timing) and return their ids."""
        keys = [uuid4() for _ in range(n)]
        text = _dumps(self.started_document if status == "running" else self.document)
        with self.raw.cursor() as cursor:
            cursor.executemany(
                INSERT,
                [insert_params(k, self.workflow, status, text) for k in keys],
            )
        return keys

    # --- batches: prepare outside the timing, then time each operation -----------------------

    def ours_put_insert(self, n: int) -> list[int]:
        fresh = [unsaved(self.template) for _ in range(n)]
        return repeat(lambda i: self.storage.put(fresh[i]), n)

    def raw_put_insert(self, n: int) -> list[int]:
        keys = [uuid4() for _ in range(n)]
        return repeat(lambda i: self.raw_put(keys[i], self.document, 0), n)

    def ours_put_update(self, n: int) -> list[int]:
        stored = unsaved(self.template)
        self.storage.put(stored)
        base = stored.revision
        changed = [
            replace(stored, runtime_metadata={"tick": i}, revision=base + i) for i in range(n)
        ]
        return repeat(lambda i: self.storage.put(changed[i]), n)

    def raw_put_update(self, n: int) -> list[int]:
        key = uuid4()
        revision = [self.raw_put(key, self.document, 0)]
        changed = [{**self.document, "runtime_metadata": {"tick": i}} for i in range(n)]

        def put(i: int) -> None:
            revision[0] = self.raw_put(key, changed[i], revision[0])

        return repeat(put, n)

    def ours_get(self, keys: list[UUID]) -> Callable[[int], list[int]]:
        # Batches are short slices: each goes on through the keys where the last one stopped.
        following = itertools.cycle(keys)
        return lambda n: repeat(lambda i: self.storage.get(next(following)), n)

    def raw_get(self, keys: list[UUID]) -> Callable[[int], list[int]]:
        following = itertools.cycle(keys)

        def get(i: int) -> None:
            with self.raw.cursor() as cursor:
                cursor.execute(SELECT_ONE, [next(following)])
                found = cursor.fetchone()
            assert found is not None
            json.loads(found[4])

        return lambda n: repeat(get, n)

    def ours_delete(self, n: int) -> list[int]:
        keys = self.seed(n)
        return repeat(lambda i: self.storage.delete(keys[i]), n)

    def raw_delete(self, n: int) -> list[int]:
        keys = self.seed(n)

        def delete(i: int) -> None:
            with self.raw.cursor() as cursor:
                cursor.execute(DELETE, {"id": keys[i]})

        return repeat(delete, n)

    def ours_query(self, n: int) -> list[int]:
        return repeat(lambda i: self._check(self.storage.query(status=QUERY_STATUS)), n)

    def raw_query(self, n: int) -> list[int]:
        def query(i: int) -> None:
            with self.raw.cursor() as cursor:
                cursor.execute(QUERY, [[QUERY_STATUS]])
                rows = cursor.fetchall()
            self._check([json.loads(row[4]) for row in rows])

        return repeat(query, n)

    @staticmethod
    def _check(found: list[Any]) -> None:
        assert len(found) == QUERY_ROWS, len(found)


def statements(db: Any, operation: Callable[[], Any]) -> int:
    """How many SQL statements one call executes on Django's connection ``db``."""
    with CaptureQueriesContext(db) as captured:
        operation()
    return len(captured.captured_queries)


def run(
    raw: psycopg.Connection[Any],
    unprepared: psycopg.Connection[Any],
    *,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    """Each operation against raw: on the ``default`` alias, on the ``prepared`` one, and on
    ``default`` against a raw connection that does not prepare either (``unprepared``)."""
    seeder = Sides(raw)
    # Running rows, never leased: deleted at the end, or a later section's worker pass would
    # take them over as stalled (bench/leftovers.py).
    running = seeder.seed(QUERY_ROWS, status=QUERY_STATUS)
    keys = seeder.seed(2000)
    results: dict[str, Any] = {
        "prepared": {},
        "unprepared": {},
        "state_bytes": len(_dumps(seeder.document)),
    }
    try:
        for connection, using, into in (
            (raw, "default", results),
            (raw, PREPARED, results["prepared"]),
            (unprepared, "default", results["unprepared"]),
        ):
            into.update(_compare(Sides(connection, using), keys, rounds=rounds, n=n))
    finally:
        raw.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", [running])
    return results


def _compare(sides: Sides, keys: list[UUID], *, rounds: int, n: int) -> dict[str, Any]:
    query_n = max(n // 10, 20)
    results: dict[str, Any] = {}
    plan: dict[str, tuple[Callable[[int], list[int]], Callable[[int], list[int]], int]] = {
        "put_insert": (sides.ours_put_insert, sides.raw_put_insert, n),
        "put_update": (sides.ours_put_update, sides.raw_put_update, n),
        "get": (sides.ours_get(keys), sides.raw_get(keys), n),
        "delete": (sides.ours_delete, sides.raw_delete, n),
        "query_100": (sides.ours_query, sides.raw_query, query_n),
    }
    for name, (ours, raw_side, count) in plan.items():
        results[name] = interleave(ours, raw_side, rounds=rounds, n=count, warmup=min(count, 50))
        results[name]["baseline"] = BASELINES[name]
    db = connections[sides.storage.using]
    probe = unsaved(sides.template)
    results["put_insert"]["statements"] = statements(db, lambda: sides.storage.put(probe))
    results["put_update"]["statements"] = statements(db, lambda: sides.storage.put(probe))
    results["get"]["statements"] = statements(db, lambda: sides.storage.get(probe.id))
    results["delete"]["statements"] = statements(db, lambda: sides.storage.delete(probe.id))
    results["query_100"]["statements"] = statements(
        db, lambda: sides.storage.query(status=QUERY_STATUS)
    )
    return results
