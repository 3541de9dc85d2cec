"""Item 7: housekeeping at scale. A prune of half the table, the worker's claim, their plans.

The table holds the bulk rows (every one ``completed``, ``updated_at`` one millisecond apart) and
whatever the sections before wrote. :class:`~hephaestus_django.postgres.retention.Pruner` deletes
the older half of the bulk rows, 1,000 a batch, as ``hephaestus_prune`` does, while a writer in a
process of its own (``bench.writer``) puts instances one after another: its latency is measured for
a while before the prune and during it. The prune's peak memory is traced (tracemalloc) in this
process, where nothing else runs meanwhile.

The prune is run in two halves, and between them the plans of a batch are taken with
``EXPLAIN (ANALYZE, BUFFERS)`` inside a transaction that is rolled back (deleting nothing): the
batch as the prune runs it, starting after the last row deleted, and the same batch without
that start, which walks again over the index entries of every row deleted before (the table's
dead entries stay in the index until a vacuum). The worker's claim is planned the same way, at
the full table, with the statements ``hephaestus_django.worker.run_once()`` executes (captured
with ``CaptureQueriesContext``, not copied, so the plan is the query as it is shipped).
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.data import _BULK_EPOCH as BULK_EPOCH
from bench.environment import REPO
from bench.measure import latency_ms
from hephaestus_django.postgres.retention import INDEX, Pruner, PruneReport, batch_sql
from hephaestus_django.worker import run_once

BATCH = 1000
_LAST_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def explain(raw: psycopg.Connection[Any], sql: str, params: Any = None) -> list[str]:
    """The ``EXPLAIN (ANALYZE, BUFFERS)`` lines of ``sql``, run and rolled back."""
    with raw.transaction(force_rollback=True):
        found = raw.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()
    return [row[0] for row in found]


def plan_summary(lines: list[str]) -> dict[str, Any]:
    """The time, the buffers of the whole statement and of its prune index scan, its scans."""
    time_ms = next(
        (float(m[1]) for line in lines if (m := re.search(r"Execution Time: ([\d.]+)", line))),
        None,
    )
    buffers = next((line.strip() for line in lines if line.strip().startswith("Buffers:")), "")
    # The buffers of the prune index's scan: the first Buffers line after that node's line.
    node = next((n for n, line in enumerate(lines) if f"using {INDEX}" in line), None)
    index_buffers = (
        next((line.strip() for line in lines[node:] if line.strip().startswith("Buffers:")), "")
        if node is not None
        else ""
    )
    scans = sorted(
        {
            m[0]
            for line in lines
            if (m := re.search(r"(Seq Scan|(Bitmap )?Index( Only)? Scan)( using| on) \w+", line))
        }
    )
    return {
        "execution_ms": time_ms,
        "buffers": buffers,
        "index_buffers": index_buffers,
        "scans": scans,
    }


def _prune_plans(raw: psycopg.Connection[Any], cutoff: datetime, deleted: int) -> dict[str, Any]:
    """Plans of the next batch once ``deleted`` rows are gone, with the keyset start and without.

    The prune deletes the bulk rows oldest first, and bulk row ``n`` was changed ``n`` ms after
    the epoch, so the next batch starts after ``epoch + deleted`` ms. That key is worked out
    rather than looked up: a lookup would walk the index over the deleted rows' entries and
    mark them dead, which is what the plan without the keyset is there to show. The keyset
    plan is taken first for the same reason.
    """
    params = {
        "cutoff": cutoff,
        "limit": BATCH,
        "after_at": BULK_EPOCH + timedelta(milliseconds=deleted),
        "after_id": _LAST_UUID,
    }
    keyset = explain(raw, batch_sql("completed", first=False), params)
    rewalk = explain(raw, batch_sql("completed", first=True), params)
    return {
        "deleted_before": deleted,
        "keyset": {"plan": keyset, **plan_summary(keyset)},
        "without_keyset": {"plan": rewalk, **plan_summary(rewalk)},
    }


def claim_plans(raw: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Plans of the statements one worker pass executes on the table."""
    with CaptureQueriesContext(connection) as captured:
        run_once()
    statements = [q["sql"] for q in captured.captured_queries if "workflow_instances" in q["sql"]]
    plans = []
    for sql in statements:
        lines = explain(raw, sql)
        plans.append({"sql": sql, "plan": lines, **plan_summary(lines)})
    return plans


class Writer:
    """``bench.writer`` in a process of its own, until :meth:`stop`."""

    def __init__(self, conninfo: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-writer-")
        self.stop_file = Path(self._dir.name) / "stop"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.writer", conninfo, str(self.stop_file)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        assert ready == "ready", ready

    def stop(self) -> list[tuple[int, int]]:
        self.stop_file.touch()
        out, _ = self.process.communicate(timeout=120)
        self._dir.cleanup()
        assert self.process.returncode == 0, self.process.returncode
        return [(start, ns) for start, ns in json.loads(out.strip().splitlines()[-1])]


def _window(samples: list[tuple[int, int]], start: int, end: int) -> dict[str, Any]:
    inside = [ns for at, ns in samples if start <= at < end]
    return {**latency_ms(inside), "puts_per_s": len(inside) / ((end - start) / 1e9)}


def _index_bytes(raw: psycopg.Connection[Any]) -> int:
    found = raw.execute("SELECT pg_relation_size(%s)", [INDEX]).fetchone()
    return int(found[0]) if found else 0


class _Half:
    """One half of the prune: its report, its wall-clock span and its peak memory."""

    def __init__(self, pruner: Pruner, stop_at: int | None) -> None:
        self.deleted = 0
        gc.collect()
        tracemalloc.start()
        try:
            self.began = time.monotonic_ns()
            self.report = pruner.run(progress=self._seen, stop=self._stop(stop_at))
            self.ended = time.monotonic_ns()
            self.peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def _seen(self, report: PruneReport) -> None:
        self.deleted = report.deleted

    def _stop(self, stop_at: int | None) -> Callable[[], bool]:
        return lambda: stop_at is not None and self.deleted >= stop_at

    @property
    def wall_s(self) -> float:
        return (self.ended - self.began) / 1e9


def run(
    raw: psycopg.Connection[Any], conninfo: str, *, bulk_rows: int, baseline_s: float
) -> dict[str, Any]:
    """Prune the older half of ``bulk_rows`` bulk rows, with a writer running alongside."""
    rows = int(raw.execute("SELECT count(*) FROM workflow_instances").fetchone()[0])  # type: ignore[index]
    claims = claim_plans(raw)
    cutoff = BULK_EPOCH + timedelta(milliseconds=bulk_rows // 2)
    first = explain(raw, batch_sql("completed", first=True), {"cutoff": cutoff, "limit": BATCH})

    def pruner() -> Pruner:
        return Pruner(statuses=["completed"], older_than=timedelta(0), now=cutoff, batch_size=BATCH)

    matched = pruner().count()
    index_before = _index_bytes(raw)
    writer = Writer(conninfo)
    try:
        ready = time.monotonic_ns()
        time.sleep(baseline_s)
        halves = [_Half(pruner(), stop_at=matched // 2)]
        halfway = _prune_plans(raw, cutoff, halves[0].report.deleted)
        halves.append(_Half(pruner(), stop_at=None))
    finally:
        samples = writer.stop()
    deleted = sum(half.report.deleted for half in halves)
    batches_s = sum(half.report.elapsed_s for half in halves)
    wall_s = sum(half.wall_s for half in halves)
    during = [ns for at, ns in samples if any(h.began <= at < h.ended for h in halves)]
    return {
        "rows_in_table": rows,
        "matched": matched,
        "deleted": deleted,
        "batches": sum(half.report.batches for half in halves),
        "batch_size": BATCH,
        "rows_per_s": deleted / batches_s,
        "rows_per_s_with_counts": deleted / wall_s,
        "batches_s": batches_s,
        "wall_s": wall_s,
        "peak_bytes": max(half.peak for half in halves),
        "index_bytes": index_before,
        "writer": {
            "before": _window(samples, ready, halves[0].began),
            "during": {**latency_ms(during), "puts_per_s": len(during) / wall_s},
        },
        "plans": {
            "first_batch": {"plan": first, **plan_summary(first)},
            "halfway": halfway,
            "claim": claims,
        },
    }
