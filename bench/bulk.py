"""Item 15: bulk operations: instances/s of a bulk retry of N failed instances.

``LocalRunner`` + ``DjangoStorage``; a workflow whose one step fails until it is retried, so a
retry is the real thing (a locked write of the instance, the step run, its result written). N
failed rows are one real failed instance copied by PostgreSQL (``INSERT ... SELECT
generate_series``). Each round measures, interleaved on fresh rows, the bulk retry
(``runtime.bulk.run_all``, batches of 500: each instance's retry and its outcome row in one
transaction, a batch's cursor after it) and the floor an operator's script would be: a loop of
``runner.retry(id)`` over the same number of ids read up front, no outcome, no cursor. The
ratio bulk ÷ loop (instances/s) is what the bookkeeping that makes it resumable costs.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from django.db import connection

from hephaestus_django import Done, Event, Step, Workflow
from hephaestus_django.runtime import LocalRunner, bulk, configure
from hephaestus_django.storage import DjangoStorage

LOOP_SHARE = 10
"""The loop's rounds take 1/LOOP_SHARE of the bulk's rows (its rate is per instance)."""


class BenchHealed(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        if not any(entry.error is not None for entry in instance.execution_history):
            raise RuntimeError("broken until retried")
        return Event("ok")


class BenchBulk(Workflow):
    start_step = BenchHealed
    transitions = {BenchHealed: {"ok": Done}}


_COPIES = """
INSERT INTO workflow_instances
    (id, workflow, status, workflow_version, state, revision, inserted_at, updated_at)
SELECT gen_random_uuid(), t.workflow, t.status, t.workflow_version, t.state, 1,
       clock_timestamp(), clock_timestamp()
FROM workflow_instances t, generate_series(1, %(n)s)
WHERE t.id = %(id)s
"""


def failed_rows(storage: DjangoStorage, n: int) -> None:
    """Exactly ``n`` failed ``BenchBulk`` instances in the table (the others removed)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM workflow_instances WHERE workflow = %s", [BenchBulk.path()])
        cursor.execute("DELETE FROM hephaestus_bulk_outcomes")
        cursor.execute("DELETE FROM hephaestus_bulk_operations")
    first = BenchBulk.start()
    with connection.cursor() as cursor:
        cursor.execute(_COPIES, {"id": first, "n": n - 1})
        cursor.execute("VACUUM ANALYZE workflow_instances")


def bulk_round(storage: DjangoStorage, runner: LocalRunner, n: int) -> float:
    failed_rows(storage, n)
    made = bulk.create(storage, bulk.spec("retry", BenchBulk, batch_size=500))
    start = time.perf_counter()
    state = bulk.run_all(storage, runner, made.id, owner="bench", lease=timedelta(minutes=5))
    seconds = time.perf_counter() - start
    assert (state.done, state.refused) == (n, 0), state
    return n / seconds


def loop_round(storage: DjangoStorage, runner: LocalRunner, n: int) -> float:
    failed_rows(storage, n)
    ids = [instance.id for instance in storage.query(workflow=BenchBulk, status="failed")]
    start = time.perf_counter()
    for instance_id in ids:
        runner.retry(instance_id, storage=storage)
    return n / (time.perf_counter() - start)


def run(*, rows: int, rounds: int) -> dict[str, Any]:
    """``rounds`` interleaved rounds of the bulk retry of ``rows`` and the loop's."""
    storage = DjangoStorage()
    runner = LocalRunner()
    configure(storages={"default": storage}, runner=runner)
    bulk_rates: list[float] = []
    loop_rates: list[float] = []
    try:
        for number in range(1, rounds + 1):
            bulk_rates.append(bulk_round(storage, runner, rows))
            loop_rates.append(loop_round(storage, runner, max(rows // LOOP_SHARE, 1)))
            print(
                f"[bench] bulk round {number}: bulk {bulk_rates[-1]:.0f}/s, "
                f"loop {loop_rates[-1]:.0f}/s",
                flush=True,
            )
    finally:
        runner.close()
        configure()
    ratios = [b / loop for b, loop in zip(bulk_rates, loop_rates, strict=True)]
    return {
        "rows": rows,
        "rounds": rounds,
        "bulk_per_s": bulk_rates,
        "loop_per_s": loop_rates,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def lines(found: dict[str, Any]) -> list[str]:
    """The markdown of item 12."""
    bulk_rates, loop_rates = found["bulk_per_s"], found["loop_per_s"]
    return [
        f"Bulk retry of {found['rows']:,} failed instances (LocalRunner + DjangoStorage, batches "
        f"of 500, the step run by each retry), against a loop of `runner.retry(id)` over "
        f"{max(found['rows'] // LOOP_SHARE, 1):,} of them; {found['rounds']} interleaved rounds.",
        "",
        "| | instances/s median | min-max |",
        "|---|---:|---:|",
        f"| bulk retry | {statistics.median(bulk_rates):.0f} | {min(bulk_rates):.0f}-"
        f"{max(bulk_rates):.0f} |",
        f"| loop of retry | {statistics.median(loop_rates):.0f} | {min(loop_rates):.0f}-"
        f"{max(loop_rates):.0f} |",
        "",
        f"Bulk ÷ loop: **{found['ratio']:.2f}x** ({found['ratio_min']:.2f}-"
        f"{found['ratio_max']:.2f}).",
        "",
    ]
