"""Issue 27: how fast a backlog waiting on a rate limit drains, with ``LocalRunner`` workers.

``python -m bench.rate_backlog [N] [WORKERS]`` (uses ``$DATABASE_URL``'s server and the database
``$BENCH_DATABASE``, dropped and created afresh) starts N one-step instances of a workflow whose
starts are limited to :data:`LIMIT` a second (all at once, from one process: the first
:data:`LIMIT` run, the others park in line), then runs WORKERS worker threads, each doing
``LocalRunner(lease=10s).work()`` passes 50 ms apart (as ``hephaestus_worker --interval
0.05``), until every instance has completed. It reports the drain rate over the limit (1.0:
the limit's ideal, every window full) and the statements the workers sent per instance they
ran (Django's query log, transaction control included).
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from typing import Any

from hephaestus_django import Done, RateLimit, Step, Workflow

LIMIT = 20
LEASE = timedelta(seconds=10)
PASS_INTERVAL_S = 0.05


class Tick(Step):
    events = ("ok",)
    rate_limit = RateLimit(LIMIT, per=timedelta(seconds=1), name="bench-backlog")

    def execute(self, instance: Any, config: Any, context: Any) -> str:
        return "ok"


class Backlog(Workflow):
    start_step = Tick
    transitions = {Tick: {"ok": Done}}


def measure(n: int, workers: int) -> dict[str, float]:
    from django.db import connection

    from hephaestus_django import Status
    from hephaestus_django.runtime import LocalRunner
    from hephaestus_django.storage import DjangoStorage

    storage = DjangoStorage()
    runner = LocalRunner(lease=LEASE)
    t0 = time.monotonic()
    ids = [runner.start(Backlog, {"n": i}, storage=storage).id for i in range(n)]
    print(f"started {n} in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    started_done = len(storage.query(status=Status.COMPLETED))
    statements = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with lock:
            statements[0] += 1
        return execute(sql, params, many, context)

    def loop() -> None:
        from django.db import connection as own

        with own.execute_wrapper(count):
            while not stop.is_set():
                runner.work(storage=storage, limit=100)
                time.sleep(PASS_INTERVAL_S)
        own.close()

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    done = started_done
    while done < n:
        time.sleep(0.25)
        done = len(storage.query(status=Status.COMPLETED))
        print(
            f"{time.monotonic() - began:6.1f} s: {done} done, {statements[0]} statements",
            file=sys.stderr,
            flush=True,
        )
        if time.monotonic() - began > n / LIMIT * 20 + 60:
            break
    elapsed = time.monotonic() - began
    stop.set()
    for thread in threads:
        thread.join()
    connection.close()
    ran = done - started_done
    rate = ran / elapsed if elapsed else 0.0
    return {
        "instances": n,
        "completed": done,
        "backlog_run_by_workers": ran,
        "seconds": round(elapsed, 2),
        "rate_per_s": round(rate, 2),
        "rate_over_limit": round(rate / LIMIT, 3),
        "statements_per_instance": round(statements[0] / max(ran, 1), 1),
        "ids": len(ids),
    }


def main(argv: list[str]) -> int:
    from bench import environment

    n = int(argv[0]) if argv else 200
    workers = int(argv[1]) if len(argv) > 1 else 2
    url, _source = environment.server_url()
    environment.configure_django(environment.recreate_database(url))
    found = measure(n, workers)
    print(
        f"rate backlog: {found['backlog_run_by_workers']} waiting instances drained in "
        f"{found['seconds']} s at {found['rate_per_s']}/s = {found['rate_over_limit']} of the "
        f"limit {LIMIT}/s; {found['statements_per_instance']} worker statements per instance"
    )
    return 0


if __name__ == "__main__":
    # The workflow must live in an importable module, not __main__.
    from bench import rate_backlog

    sys.exit(rate_backlog.main(sys.argv[1:]))
