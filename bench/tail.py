"""Item 4: the tail latency of ``put`` under the GIN index's ``fastupdate`` settings.

With ``fastupdate = on`` (PostgreSQL's default) new GIN entries go to a *pending list*; the
insert that finds the list over ``gin_pending_list_limit`` merges it into the index, inline, and
stalls while doing so. With ``fastupdate = off`` every insert updates the index directly.

Each configuration gets ``writes`` puts of ours and as many raw ones, alternating one by one in
the same stream, so both see the same merges: half are inserts of a new ~2.2 KB instance, half
updates of the instance just inserted (with a changed state, so the index is written). The
configurations take turns in every round, and the pending list is emptied
(``gin_clean_pending_list``) before each turn, so each starts alike.

A single maximum says little on a shared machine (a checkpoint or a busy neighbour stalls a
write too), so :func:`anatomy` also runs raw inserts one after another under each configuration
and reports where the slowest fall: merges show as stalls of one size at regular spacing.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from uuid import uuid4

import psycopg

from bench.data import STATE_INDEX, completed_instance, insert_params, raw_write, unsaved
from bench.measure import latency_ms, percentile
from hephaestus_django.postgres.sql import INSERT
from hephaestus_django.postgres.storage import DjangoStorage
from hephaestus_django.runtime.document import encoded_state

# name -> storage parameters of the GIN index (None: PostgreSQL's default)
CONFIGS: dict[str, dict[str, str | None]] = {
    "fastupdate=on, pending 4MB (PostgreSQL default)": {
        "fastupdate": "on",
        "gin_pending_list_limit": None,
    },
    "fastupdate=on, pending 1MB": {"fastupdate": "on", "gin_pending_list_limit": "1024"},
    "fastupdate=on, pending 256kB": {"fastupdate": "on", "gin_pending_list_limit": "256"},
    "fastupdate=on, pending 64kB (minimum)": {"fastupdate": "on", "gin_pending_list_limit": "64"},
    "fastupdate=off": {"fastupdate": "off", "gin_pending_list_limit": None},
}


def apply_config(raw: psycopg.Connection[Any], params: dict[str, str | None]) -> None:
    raw.execute(f"ALTER INDEX {STATE_INDEX} RESET (fastupdate, gin_pending_list_limit)")
    chosen = ", ".join(f"{key} = {value}" for key, value in params.items() if value is not None)
    if chosen:
        raw.execute(f"ALTER INDEX {STATE_INDEX} SET ({chosen})")


def shipped_config() -> dict[str, str | None]:
    """The GIN index's parameters as the model ships them."""
    from hephaestus_django.models import WorkflowInstance

    (index,) = [i for i in WorkflowInstance._meta.indexes if i.name == STATE_INDEX]
    fastupdate = getattr(index, "fastupdate", None)
    limit = getattr(index, "gin_pending_list_limit", None)
    return {
        "fastupdate": None if fastupdate is None else ("on" if fastupdate else "off"),
        "gin_pending_list_limit": None if limit is None else str(limit),
    }


class _Stream:
    """Alternating puts, ours and raw: insert a new instance, then update it."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.storage = DjangoStorage()
        self.template = completed_instance(50_000_000)
        self.document = encoded_state(self.template)
        self.workflow = self.template.workflow.path()

    def run(self, writes: int) -> tuple[list[int], list[int]]:
        ours: list[int] = []
        raw: list[int] = []
        fresh = [unsaved(self.template) for _ in range((writes + 1) // 2)]
        documents = [{**self.document, "runtime_metadata": {"tick": i}} for i in range(writes)]
        clock = time.perf_counter_ns
        stored = fresh[0]
        key, revision = uuid4(), 0
        for i in range(writes):
            if i % 2 == 0:
                stored = fresh[i // 2]
                key, revision = uuid4(), 0
            else:
                stored = replace(stored, runtime_metadata={"tick": i})
            start = clock()
            self.storage.put(stored)
            ours.append(clock() - start)
            start = clock()
            text = json.dumps(documents[i], ensure_ascii=False, separators=(",", ":"))
            with self.raw.cursor() as cursor:
                written = raw_write(cursor, key, self.workflow, "completed", text, revision)
            raw.append(clock() - start)
            assert written is not None
            revision = written[0]
        return ours, raw


def anatomy(raw: psycopg.Connection[Any], params: dict[str, str | None], writes: int) -> Any:
    """Raw inserts one after another under one configuration: where the slowest ones fall.

    A merge of the pending list stalls one insert, once per so many inserts: the slowest
    writes of a run show it by their size and their regular spacing.
    """
    stream = _Stream(raw)
    raw.execute(f"SELECT gin_clean_pending_list('{STATE_INDEX}')")
    apply_config(raw, params)
    latencies = []
    for i in range(writes):
        text = json.dumps({**stream.document, "runtime_metadata": {"tick": i}})
        params_ = insert_params(uuid4(), stream.workflow, "completed", text)
        start = time.perf_counter_ns()
        with raw.cursor() as cursor:
            cursor.execute(INSERT, params_)
            cursor.fetchone()
        latencies.append(time.perf_counter_ns() - start)
    slowest = sorted(range(writes), key=latencies.__getitem__)[-4:]
    return {
        "writes": writes,
        "p50_ms": percentile(latencies, 0.5) / 1e6,
        "over_20ms": sum(1 for ns in latencies if ns > 20e6),
        "slowest": [(index, latencies[index] / 1e6) for index in sorted(slowest)],
    }


def _checkpoints(raw: psycopg.Connection[Any]) -> int:
    """Checkpoints so far (``pg_stat_checkpointer`` from PostgreSQL 17, before in bgwriter)."""
    for sql in (
        "SELECT num_timed + num_requested FROM pg_stat_checkpointer",
        "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
    ):
        try:
            found = raw.execute(sql).fetchone()
        except psycopg.Error:
            continue
        return int(found[0]) if found else 0
    return 0


def _summary(samples: list[int]) -> dict[str, Any]:
    found: dict[str, Any] = dict(latency_ms(samples))
    found["max_over_p50"] = found["max"] / found["p50"]
    found["worst_ms"] = [ns / 1e6 for ns in sorted(samples)[-5:]]
    found["over_10ms"] = sum(1 for ns in samples if ns > 10e6)
    found["over_50ms"] = sum(1 for ns in samples if ns > 50e6)
    found["over_100x_p50"] = sum(1 for ns in samples if ns > 100 * found["p50"] * 1e6)
    found["mean"] = sum(samples) / len(samples) / 1e6
    return found


def run(
    raw: psycopg.Connection[Any], *, rounds: int, writes: int, anatomy_writes: int
) -> dict[str, Any]:
    """``writes`` puts of each side per configuration, split over ``rounds`` turns."""
    stream = _Stream(raw)
    per_turn = max(writes // rounds, 2)
    samples: dict[str, dict[str, list[int]]] = {name: {"ours": [], "raw": []} for name in CONFIGS}
    stream.run(200)  # warm up
    checkpoints = _checkpoints(raw)
    for _ in range(rounds):
        for name, params in CONFIGS.items():
            raw.execute(f"SELECT gin_clean_pending_list('{STATE_INDEX}')")
            apply_config(raw, params)
            ours, baseline = stream.run(per_turn)
            samples[name]["ours"].extend(ours)
            samples[name]["raw"].extend(baseline)
    checkpoints = _checkpoints(raw) - checkpoints
    stalls = {name: anatomy(raw, params, anatomy_writes) for name, params in CONFIGS.items()}
    apply_config(raw, shipped_config())
    raw.execute(f"SELECT gin_clean_pending_list('{STATE_INDEX}')")
    shipped = shipped_config()
    shipped = {
        "fastupdate": shipped["fastupdate"] or "on",
        **{k: v for k, v in shipped.items() if k != "fastupdate"},
    }
    return {
        "writes_per_config": per_turn * rounds,
        "checkpoints_during": checkpoints,
        "rounds": rounds,
        "shipped": shipped,
        "shipped_name": next((n for n, p in CONFIGS.items() if p == shipped), None),
        "configs": {
            name: {
                "ours": _summary(sides["ours"]),
                "raw": _summary(sides["raw"]),
                "inserts_in_a_row": stalls[name],
            }
            for name, sides in samples.items()
        },
    }
