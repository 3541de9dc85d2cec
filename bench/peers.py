"""Section 13 (issue 25): the same workflows on DBOS Transact, the strongest in-process peer.

DBOS runs a Python function as a durable workflow: every step's output and every message is
checkpointed in its system database (PostgreSQL here: the bench's server, database
``<bench database>_dbos``), so a crashed process resumes where it stopped. That is the durability
``LocalRunner`` + ``DjangoStorage`` promises, which makes it the fair peer for in-process runs.
Both sides run in this process against the same server, one operation at a time, interleaved in
slices (:func:`bench.measure.interleave`); the ratio is our operations per second over DBOS's.

- *linear_3*: three no-op steps in a row (ours: :class:`~bench.workflows.Linear3`).
- *wait_and_resume*: a start that waits for an event, the event runs one step to a second wait,
  a second event ends it (ours: :class:`~bench.workflows.Approval`, started then resumed twice;
  DBOS: ``start_workflow``, two ``send``s to its ``recv``s, ``get_result``).
- *fanout_10*: ten steps, the third wave four branches that join (ours:
  :class:`~bench.workflows.Fanout10`; DBOS has no graph, so the branches are four child
  workflows started together and awaited, its documented way to run work in parallel).

The hand-written floor of each (sections 3 and 3b: the commits our durability needs, through
raw psycopg, no engine) runs against DBOS too, interleaved the same way: its lead is the most
that any engine keeping our promises could have over DBOS on that workflow.

Each step returns the same small result on both sides. DBOS is an optional bench dependency
(the ``bench`` extra); without it the section says it was skipped.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import partial
from importlib import metadata
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.measure import interleave, repeat
from bench.workflows import Approval, Fanout10, Linear3, initial_context
from hephaestus_django.runtime import LocalRunner
from hephaestus_django.storage import DjangoStorage

TARGET = 5.0
"""Each scenario's ops/s against DBOS's (issue 25)."""

SCENARIOS = ("linear_3", "wait_and_resume", "fanout_10")


def available() -> bool:
    return importlib.util.find_spec("dbos") is not None


def _dbos_workflows() -> dict[str, Callable[[dict[str, Any]], Any]]:
    """The three scenarios as DBOS workflows, one operation each (registered on first call)."""
    from dbos import DBOS

    @DBOS.step()
    def step(name: str, order_id: int) -> dict[str, Any]:
        return {"by": name, "order_id": order_id}

    @DBOS.workflow()
    def linear_3(context: dict[str, Any]) -> Any:
        for name in ("validate", "reserve", "ship"):
            result = step(name, context["order_id"])
        return result

    @DBOS.workflow()
    def approval(context: dict[str, Any]) -> Any:
        DBOS.recv("approved", timeout_seconds=60)
        result = step("reserve", context["order_id"])
        DBOS.recv("shipped", timeout_seconds=60)
        return result

    @DBOS.workflow()
    def branch(name: str, order_id: int) -> Any:
        return step(name, order_id)

    @DBOS.workflow()
    def fanout_10(context: dict[str, Any]) -> Any:
        order_id = context["order_id"]
        step("receive", order_id)
        step("score", order_id)
        handles = [
            DBOS.start_workflow(branch, name, order_id)
            for name in ("pack", "charge", "notify", "audit")
        ]
        [handle.get_result() for handle in handles]
        for name in ("join", "invoice", "dispatch", "close"):
            result = step(name, order_id)
        return result

    def wait_and_resume(context: dict[str, Any]) -> Any:
        handle = DBOS.start_workflow(approval, context)
        DBOS.send(handle.workflow_id, "yes", "approved")
        DBOS.send(handle.workflow_id, "yes", "shipped")
        return handle.get_result()

    return {"linear_3": linear_3, "wait_and_resume": wait_and_resume, "fanout_10": fanout_10}


def _url(conninfo: str) -> str:
    """``conninfo`` as the URL DBOS (SQLAlchemy) takes."""
    params = conninfo_to_dict(conninfo)
    password = f":{quote(str(params['password']))}" if params.get("password") else ""
    user = f"{quote(str(params.get('user', '')))}{password}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params['dbname']}"


FLOORED = {"linear_3": Linear3, "fanout_10": Fanout10}
"""The scenarios whose hand-written floor is section 3's; wait-and-resume's is section 3b's
(:func:`bench.hot_paths.floor_approval`). Each floor makes the commits our durability needs and
nothing else, so its lead over DBOS is the most any engine making our promises could have."""


def run(
    system_conninfo: str, raw: psycopg.Connection[Any], *, rounds: int, n: int
) -> dict[str, Any]:
    """Each scenario, ours against DBOS's, then the floor against DBOS's where there is one;
    DBOS launched with its system database at ``system_conninfo`` (a database of its own,
    emptied beforehand), the floor writing on ``raw``."""
    from dbos import DBOS

    from bench.end_to_end import floor_workflow, recorded_run
    from bench.hot_paths import floor_approval, recorded

    logging.getLogger("dbos").setLevel(logging.WARNING)
    workflows = _dbos_workflows()
    DBOS(config={"name": "hephaestus-bench", "system_database_url": _url(system_conninfo)})
    DBOS.launch()
    runner = LocalRunner()
    storage = DjangoStorage()
    order_ids = iter(range(70_000_000, 80_000_000))

    def approval(context: dict[str, Any]) -> None:
        started = runner.start(Approval, context, storage=storage)
        runner.resume(started.id, "approved", storage=storage)
        runner.resume(started.id, "shipped", storage=storage)

    ours: dict[str, Callable[[dict[str, Any]], Any]] = {
        "linear_3": lambda context: runner.start(Linear3, context, storage=storage),
        "wait_and_resume": approval,
        "fanout_10": lambda context: runner.start(Fanout10, context, storage=storage),
    }

    def batch(operation: Callable[[dict[str, Any]], Any]) -> Callable[[int], list[int]]:
        def timed(count: int) -> list[int]:
            contexts = [initial_context(next(order_ids)) for _ in range(count)]
            return repeat(lambda i: operation(contexts[i]), count)

        return timed

    results: dict[str, Any] = {"dbos": metadata.version("dbos")}
    try:
        for label in SCENARIOS:
            results[label] = interleave(
                batch(ours[label]), batch(workflows[label]), rounds=rounds, n=n, warmup=min(n, 5)
            )
        floors = {
            label: partial(floor_workflow, raw, workflow.path(), recorded_run(workflow)["floor"])
            for label, workflow in FLOORED.items()
        }
        floors["wait_and_resume"] = partial(floor_approval, raw, Approval.path(), recorded())
        for label, floor in floors.items():
            results[label]["floor"] = interleave(
                batch(lambda _, write=floor: write()),
                batch(workflows[label]),
                rounds=rounds,
                n=n,
                warmup=min(n, 5),
            )
    finally:
        runner.close()
        DBOS.destroy()
    return results
