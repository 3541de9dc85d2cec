"""``python -m bench.queued.counting {ours,bare} N``: one counted phase, in a process of its own.

Starts ``N`` 3-step no-op workflows on ``QueuedRunner`` (each ``start`` its own transaction, as
N requests would), or defers ``N`` bare chains (each ``defer`` its own autocommit statement), then
runs procrastinate's worker in this process until no job is left (``run_worker(wait=False)``:
the worker of ``manage.py procrastinate worker``, with neither LISTEN/NOTIFY nor idle polls),
and prints, as JSON, the SQL statements this process sent: every ``execute`` of a psycopg
cursor, sync or async (Django's, procrastinate's pool's), ``executemany`` counting one per
parameter set; ``BEGIN``/``COMMIT``/``ROLLBACK``, which psycopg and Django send themselves,
are not in it. Also the worker's wall and CPU time per step and, for ours, where a job's time
goes (the thread CPU and wall time of the runner's parts). The bench counts the commits on the
server (``pg_stat_database``), which sees them once this process has exited and its backends
with it.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from typing import Any

import psycopg

_lock = threading.Lock()
STATEMENTS: Counter[str] = Counter()


def _label(query: Any) -> str:
    """A statement's kind: its verb and what it reads or writes (a procrastinate function,
    a table), e.g. ``SELECT procrastinate_fetch_job_v2`` or ``UPDATE workflow_instances``."""
    if isinstance(query, bytes):
        query = query.decode(errors="replace")
    if not isinstance(query, str):
        return type(query).__name__
    words = query.split()
    if not words:
        return "(empty: the pool's connection check)"
    head = words[0].upper()
    function = re.search(r"\b(procrastinate_\w+)\s*\(", query)
    if function:
        return f"{head} {function.group(1)}"
    if head == "SELECT" and "set_config" in query:
        return "SELECT set_config (a new connection)"
    target = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", query, re.IGNORECASE)
    return f"{head} {target.group(1)}" if target else head


SAMPLES: dict[str, str] = {}


def _count(query: Any, times: int = 1) -> None:
    label = _label(query)
    with _lock:
        STATEMENTS[label] += times
        SAMPLES.setdefault(label, str(query)[:300])


def _instrument() -> None:
    """Count every statement psycopg's cursors execute in this process."""
    for cls in (psycopg.Cursor,):  # ClientCursor and Django's cursor inherit these
        execute, executemany = cls.execute, cls.executemany

        def counted(self: Any, query: Any, *a: Any, _execute: Any = execute, **k: Any) -> Any:
            _count(query)
            return _execute(self, query, *a, **k)

        def counted_many(
            self: Any, query: Any, params: Any, *a: Any, _many: Any = executemany, **k: Any
        ) -> Any:
            params = list(params)
            _count(query, len(params))
            return _many(self, query, params, *a, **k)

        cls.execute = counted  # type: ignore[method-assign]
        cls.executemany = counted_many  # type: ignore[method-assign,assignment]
    for acls in (psycopg.AsyncCursor,):
        aexecute, aexecutemany = acls.execute, acls.executemany

        async def acounted(
            self: Any, query: Any, *a: Any, _execute: Any = aexecute, **k: Any
        ) -> Any:
            _count(query)
            return await _execute(self, query, *a, **k)

        async def acounted_many(
            self: Any, query: Any, params: Any, *a: Any, _many: Any = aexecutemany, **k: Any
        ) -> Any:
            params = list(params)
            _count(query, len(params))
            return await _many(self, query, params, *a, **k)

        acls.execute = acounted  # type: ignore[method-assign]
        acls.executemany = acounted_many  # type: ignore[method-assign,assignment]


TIMES: dict[str, list[float]] = {}
"""Where a step's time goes: label -> [calls, thread CPU seconds, wall seconds]."""


def _timed(owner: Any, name: str, label: str) -> None:
    """Accumulate the thread CPU and wall time of every call of ``owner.name``."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent = TIMES.setdefault(label, [0, 0.0, 0.0])
            spent[0] += 1
            spent[1] += time.thread_time() - cpu
            spent[2] += time.perf_counter() - wall

    setattr(owner, name, wrapper)


def _time_ours() -> None:
    from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher
    from hephaestus_django.runtime import queued
    from hephaestus_django.storage import DjangoStorage

    _timed(queued.QueuedRunner, "handle", "QueuedRunner.handle (the whole job)")
    _timed(DjangoStorage, "get", "DjangoStorage.get (is the step runnable?)")
    _timed(queued, "execute", "execute (the no-op step)")
    _timed(queued.QueuedRunner, "_transition", "QueuedRunner._transition (its transaction)")
    _timed(DjangoStorage, "update", "DjangoStorage.update (locked read + write)")
    _timed(ProcrastinateDispatcher, "enqueue_steps", "ProcrastinateDispatcher.enqueue_steps")
    _timed(DjangoStorage, "mark_running", "DjangoStorage.mark_running (mark + read)")
    _timed(DjangoStorage, "put_with_jobs", "DjangoStorage.put_with_jobs (result + next job)")


def main(side: str, n: int) -> dict[str, Any]:
    _instrument()
    import django

    django.setup()
    from procrastinate.contrib.django import app

    from bench.queued.marks import QUEUE
    from bench.queued.tasks import chain_1
    from bench.queued.workflows import Noop3
    from hephaestus_django.runtime.config import backends

    runner = backends.runner()
    storage = backends.storage("default")
    counted: dict[str, Any] = {}
    if side == "ours":
        for _ in range(n):
            runner.start(Noop3, {}, storage=storage)
    elif side == "bare":
        for _ in range(n):
            chain_1.defer()
    else:
        raise SystemExit(f"unknown side {side!r}")
    counted["enqueue"] = dict(STATEMENTS)
    if side == "ours":
        _time_ours()
    cpu, wall = time.process_time(), time.perf_counter()
    with app.replace_connector(app.connector.get_worker_connector()):  # type: ignore[attr-defined]
        app.run_worker(
            queues=[QUEUE],
            wait=False,
            listen_notify=False,
            install_signal_handlers=False,
            concurrency=1,
        )
    steps = 3 * n
    counted["worker_ms_per_step"] = {
        "wall": (time.perf_counter() - wall) * 1000 / steps,
        "cpu": (time.process_time() - cpu) * 1000 / steps,
    }
    counted["anatomy_ms_per_call"] = {
        label: {"calls": calls, "cpu": spent_cpu * 1000 / calls, "wall": spent * 1000 / calls}
        for label, (calls, spent_cpu, spent) in TIMES.items()
    }
    runner.close()  # type: ignore[attr-defined]
    counted["all"] = dict(STATEMENTS)
    counted["statements"] = sum(STATEMENTS.values())
    counted["samples"] = SAMPLES
    return counted


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
