"""Item 6: peak memory (tracemalloc) of ``query()`` returning 10,000 instances, and of streaming.

``query()`` returns a list, so its peak is the whole result plus the rows it was decoded from.
That is measured, with the time it takes, next to raw psycopg fetching the same rows with the
same SQL and ``json.loads``-ing every state (no engine objects). The streaming way the README
documents, ``WorkflowInstance.objects....iterator(chunk_size=...)`` with ``row.to_instance()``
(a server-side cursor), is measured for its peak while keeping nothing.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import psycopg

from bench.measure import spread
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.sql import COLUMNS, TABLE
from hephaestus_django.postgres.storage import DjangoStorage

SQL = f"SELECT {COLUMNS} FROM {TABLE} WHERE status = ANY(%s) ORDER BY inserted_at, id LIMIT %s"
CHUNK = 500


def _peak(action: Callable[[], Any]) -> tuple[int, int]:
    """(peak, retained) bytes allocated by ``action``; the result is kept until measured."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = action()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return peak, retained


def run(raw: psycopg.Connection[Any], *, instances: int, rounds: int) -> dict[str, Any]:
    storage = DjangoStorage()

    def ours() -> Any:
        found = storage.query(status="completed", limit=instances)
        assert len(found) == instances, len(found)
        return found

    def baseline() -> Any:
        with raw.cursor() as cursor:
            cursor.execute(SQL, [["completed"], instances])
            rows = cursor.fetchall()
        return [(*row[:4], json.loads(row[4]), *row[5:]) for row in rows]

    def streamed() -> None:
        rows = WorkflowInstance.objects.completed().order_by("inserted_at", "id")[:instances]
        seen = 0
        for row in rows.iterator(chunk_size=CHUNK):
            row.to_instance()
            seen += 1
        assert seen == instances, seen

    ours()  # warm the caches
    ours_peak, ours_kept = _peak(ours)
    raw_peak, raw_kept = _peak(baseline)
    streamed_peak, _ = _peak(streamed)
    start = time.perf_counter()
    streamed()
    streamed_ms = (time.perf_counter() - start) * 1e3
    timings: dict[str, list[float]] = {"ours": [], "raw": []}
    for round_no in range(rounds):
        order = [("ours", ours), ("raw", baseline)]
        for side, action in order[:: -1 if round_no % 2 else 1]:
            gc.collect()
            start = time.perf_counter()
            action()
            timings[side].append((time.perf_counter() - start) * 1e3)
    ratios = [r / o for o, r in zip(timings["ours"], timings["raw"], strict=True)]
    return {
        "instances": instances,
        "streamed_peak_bytes": streamed_peak,
        "streamed_ms": streamed_ms,
        "streamed_chunk": CHUNK,
        "ours_peak_bytes": ours_peak,
        "ours_retained_bytes": ours_kept,
        "raw_peak_bytes": raw_peak,
        "raw_retained_bytes": raw_kept,
        "peak_ratio": ours_peak / raw_peak,
        "ours_ms": spread(timings["ours"]),
        "raw_ms": spread(timings["raw"]),
        "speed_ratio": spread(ratios),
    }
