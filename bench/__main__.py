"""``python -m bench [--quick] [--only SECTION]``: run every measurement, write the JSON and
the markdown.

Full mode (``make bench``) measures at 100,000 and 1,000,000 rows with at least 5 interleaved
rounds; ``--quick`` (CI) measures at 100,000 rows only, with fewer rounds and writes. The queued
runner's section (worker processes, :mod:`bench.queued.run`) comes last, in both modes, where
procrastinate is installed; ``--only queued`` runs it alone. The map steps' section
(:mod:`bench.maps`: bytes and statements per item at 10, 1,000 and 10,000 items) runs before it;
``--only maps`` runs it alone. The child workflows' latency (:mod:`bench.child_latency`: from a
child's end to its parent's next step) runs after it; ``--only children`` runs it alone. The peers'
section (:mod:`bench.peers`: the same workflows on DBOS, where the ``bench`` extra installed it)
runs with the end-to-end ones; ``--only peers`` runs it alone. The bulk
operations' section (:mod:`bench.bulk`: instances/s of a bulk retry at 100,000 failed rows,
2,000 in quick mode) follows the children's; ``--only bulk`` runs it alone. ``--only hot`` runs
what the engine's Python costs per transition shows in (section 1, the storage operations; section
3, end to end; section 3b, start then wait and resume to the next wait, local and queued): the
sections to compare alternately when changing the hot path, in a few minutes rather than an hour.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import environment

FULL: dict[str, Any] = {
    "rounds": 7,
    "ops": 400,
    "containment": [(100_000, 5, 40, 5), (1_000_000, 5, 40, 3)],
    "workflows": 60,
    "flow_n": 1000,
    "tail_rounds": 4,
    "tail_writes": 20_000,
    "anatomy_writes": 10_000,
    "admin_rows": 1_000_000,
    "admin_requests": 20,
    "writer_baseline_s": 10,
    "policies_n": 200,
    "peers": 40,
    "children": {"rounds": 7, "per_round": 100},
    "child_samples": 200,
    "bulk": {"rows": 100_000, "rounds": 1},
    "queued": {
        "rounds": 4,
        "per_worker": 15,
        "pickup_samples": 100,
        "overhead_rounds": 5,
        "overhead_n": 60,
        "overhead_workers": 1,
        "recovery_rounds": 4,
        "lease": 3.0,
        "sweep_interval": 0.5,
        "count_rounds": 2,
        "count_n": 15,
        "flow_rounds": 3,
        "flow_n": 160,
    },
}
QUICK: dict[str, Any] = {
    "rounds": 3,
    "ops": 150,
    "containment": [(100_000, 3, 20, 3)],
    "workflows": 20,
    "flow_n": 200,
    "tail_rounds": 2,
    "tail_writes": 2_000,
    "anatomy_writes": 3_500,
    "admin_rows": 100_000,
    "admin_requests": 5,
    "writer_baseline_s": 3,
    "policies_n": 40,
    "peers": 10,
    "children": {"rounds": 3, "per_round": 50},
    "child_samples": 50,
    "bulk": {"rows": 2_000, "rounds": 2},
    "queued": {
        "rounds": 2,
        "per_worker": 8,
        "pickup_samples": 40,
        "overhead_rounds": 3,
        "overhead_n": 40,
        "overhead_workers": 1,
        "recovery_rounds": 2,
        "lease": 3.0,
        "sweep_interval": 0.5,
        "count_rounds": 1,
        "count_n": 10,
        "flow_rounds": 2,
        "flow_n": 80,
    },
}
SEED_ROWS = 10_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short CI run (100,000 rows)")
    parser.add_argument(
        "--only",
        choices=["queued", "maps", "children", "peers", "flow", "bulk", "hot"],
        help="run one section alone: 'queued', the queued runner's worker processes; 'maps', "
        "what map steps write per item at 10, 1,000 and 10,000 items; 'children', the latency "
        "from a child workflow's end to its parent's next step; 'peers', the same workflows on "
        "DBOS; 'flow', what a concurrency or rate limit costs a step, and the throughput at a "
        "concurrency limit of 4 with 8 worker processes; 'bulk', a bulk retry's instances/s; "
        "'hot', the storage operations, end to end and the hot paths against their floors",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = datetime.now(UTC)
    clock = time.perf_counter()

    url, source = environment.server_url()
    conninfo = environment.recreate_database(url)
    environment.configure_django(conninfo)
    # Imported after django.setup(): they import the model and the storage.
    from bench import report

    raw = environment.raw_connection(conninfo)
    unprepared = environment.raw_connection(conninfo, prepared=False)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": ("quick" if args.quick else "full") + (f", {args.only} only" if args.only else ""),
        "machine": environment.machine(raw, source),
        "loads": {},
        "containment": [],
        "admin": [],
        "keys": [],
    }
    log(f"database {environment.DATABASE} on {source}; {results['machine']['postgresql']}")
    if args.only is None:
        run_storage_sections(results, plan, raw, unprepared, conninfo)
    if args.only == "hot":
        run_hot_sections(results, plan, raw, unprepared)
    if args.only == "peers":
        run_peers(results, plan, conninfo)
    if args.only in (None, "maps"):
        from bench import maps

        log("11. map steps: bytes and statements per item at 10, 1,000 and 10,000 items")
        results["maps"] = maps.run()
    if args.only in (None, "children"):
        from bench import child_latency

        log("12. child workflows: latency from a child's end to the parent's next step")
        results["children"] = child_latency.run(**plan["children"])
        if environment.QUEUED_APPS:
            from bench.queued import run as queued

            log("12b. the same on QueuedRunner, one procrastinate worker process")
            results["children"]["queued"] = queued.run_children(conninfo, plan["child_samples"])
    if args.only in (None, "flow"):
        from bench import flow_control

        log("14. flow control: a step with a concurrency or a rate limit against one without")
        results["flow_control"] = flow_control.run(plan["flow_n"])
    if args.only in (None, "bulk"):
        from bench import bulk

        rows = plan["bulk"]["rows"]
        log(f"15. bulk operations: a bulk retry of {rows:,} failed instances")
        results["bulk"] = bulk.run(**plan["bulk"])
    if args.only == "flow" and environment.QUEUED_APPS:
        from bench.queued import run as queued

        results["queued_flow"] = queued.run_flow(conninfo, plan["queued"])
    elif args.only in ("maps", "children", "peers", "flow", "bulk", "hot"):
        log(f"8. QueuedRunner: not run (--only {args.only})")
    elif environment.QUEUED_APPS:
        # Last: it empties the table, and its worker processes share the machine's CPUs.
        from bench.queued import run as queued

        log("8. QueuedRunner + procrastinate, worker processes")
        results["queued"] = queued.run(conninfo, plan["queued"])
    else:
        log("8. QueuedRunner: skipped, procrastinate is not installed")

    results["elapsed_s"] = time.perf_counter() - clock
    results["machine"]["load_at_end"] = os.getloadavg()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_path, md_path = report.write(results, stamp, latest=not args.quick and not args.only)
    print(md_path.read_text())
    log(f"wrote {json_path} and {md_path} in {results['elapsed_s'] / 60:.1f} min")
    raw.close()
    unprepared.close()
    return 0


def run_storage_sections(
    results: dict[str, Any], plan: dict[str, Any], raw: Any, unprepared: Any, conninfo: str
) -> None:
    """Items 1 to 7, 9 and 10: the storage, end to end, containment, tail, admin, memory,
    housekeeping, step policies, lookups by business key."""
    from bench import (
        admin_pages,
        containment,
        data,
        end_to_end,
        hot_paths,
        housekeeping,
        keys,
        memory,
        policies,
        storage_ops,
        tail,
    )

    results["loads"][SEED_ROWS] = data.bulk_load(raw, 1, SEED_ROWS)
    rounds, ops = plan["rounds"], plan["ops"]

    log("1. storage operations")
    results["storage_ops"] = storage_ops.run(raw, unprepared, rounds=rounds, n=ops)
    log("6. memory of query() returning 10,000 instances")
    results["memory"] = memory.run(raw, instances=10_000, rounds=max(rounds // 2, 2))
    log("3. end to end")
    results["end_to_end"] = end_to_end.run(raw, unprepared, rounds=rounds, n=plan["workflows"])
    log("3b. start then wait, resume to the next wait")
    results["hot_paths"] = hot_paths.run(raw, unprepared, rounds=rounds, n=plan["workflows"])
    run_peers(results, plan, conninfo)
    log("9. step policies: statements and time per step")
    results["policies"] = policies.run(raw, n=plan["policies_n"])

    loaded = SEED_ROWS
    for rows, c_rounds, probes, seq_probes in plan["containment"]:
        log(f"loading bulk rows {loaded + 1:,}..{rows:,}")
        results["loads"][rows] = data.bulk_load(raw, loaded + 1, rows)
        results["loads"][rows].update(data.table_size(raw), rows_in_table=data.row_count(raw))
        loaded = rows
        log(f"2. state__contains at {rows:,} rows")
        results["containment"].append(
            containment.run(
                raw, unprepared, rows=rows, rounds=c_rounds, n=probes, seq_probes=seq_probes
            )
        )
        log(f"10. lookup by business key at {rows:,} rows")
        results["keys"].append(keys.run(raw, rows=rows, rounds=c_rounds, n=probes))
        if rows == plan["admin_rows"]:
            log(f"5. admin pages at {rows:,} rows")
            results["admin"].append(admin_pages.run(raw, rows=rows, n=plan["admin_requests"]))
    log(f"4. tail latency of put, {plan['tail_writes']:,} writes per configuration and side")
    results["tail"] = tail.run(
        raw,
        rounds=plan["tail_rounds"],
        writes=plan["tail_writes"],
        anatomy_writes=plan["anatomy_writes"],
    )
    # Last: it deletes half the bulk rows.
    log(f"7. housekeeping: prune half of {loaded:,} bulk rows, a writer alongside")
    results["housekeeping"] = housekeeping.run(
        raw, conninfo, bulk_rows=loaded, baseline_s=plan["writer_baseline_s"]
    )


def run_hot_sections(
    results: dict[str, Any], plan: dict[str, Any], raw: Any, unprepared: Any
) -> None:
    """Items 1, 3 and 3b alone (``--only hot``): where the Python cost of a transition shows
    against a floor issuing the same statements, called as :func:`run_storage_sections` calls
    them (on the same seeded table), so their ratios compare with a full run's."""
    from bench import data, end_to_end, hot_paths, storage_ops

    results["loads"][SEED_ROWS] = data.bulk_load(raw, 1, SEED_ROWS)
    rounds, ops = plan["rounds"], plan["ops"]
    log("1. storage operations")
    results["storage_ops"] = storage_ops.run(raw, unprepared, rounds=rounds, n=ops)
    log("3. end to end")
    results["end_to_end"] = end_to_end.run(raw, unprepared, rounds=rounds, n=plan["workflows"])
    log("3b. start then wait, resume to the next wait")
    results["hot_paths"] = hot_paths.run(raw, unprepared, rounds=rounds, n=plan["workflows"])


def run_peers(results: dict[str, Any], plan: dict[str, Any], conninfo: str) -> None:
    """Item 13: the same workflows on DBOS, when the bench extra installed it."""
    from bench import peers

    if not peers.available():
        log("13. peers: skipped, dbos is not installed (the bench extra)")
        return
    log("13. peers: the same workflows on DBOS")
    system = environment.recreate_database(conninfo, f"{environment.DATABASE}_dbos")
    raw = environment.raw_connection(conninfo)
    try:
        results["peers"] = peers.run(system, raw, rounds=plan["rounds"], n=plan["peers"])
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
