"""The results: all raw figures as JSON, and the markdown summary (tables and the budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.bulk import lines as bulk_lines
from bench.child_latency import lines as children_lines
from bench.flow_control import lines as cost_lines
from bench.maps import budget as maps_budget
from bench.maps import lines as maps_lines
from bench.measure import SLICE
from bench.peers import TARGET as PEERS_TARGET

CLAIM_SHOWN = 6
"""The worker pass's statements shown with their plans (the JSON has every one): a pass that
finds instances to take over adds two per instance, of one shape."""

DASHBOARD_STATEMENTS = 22
"""The dashboard's statements, bounded whatever the rows: its cards' reads (19 on a quiet day,
20 on a busy one, 2026-12-07, with the concurrency limits' card) and a little room."""

RESULTS_DIR = Path(__file__).resolve().parent / "results"
OPERATIONS = ("put_insert", "put_update", "get", "delete", "query_100")


def _ratio(found: dict[str, float]) -> str:
    return (
        f"**{found['median']:.2f}x** ({found['p25']:.2f}-{found['p75']:.2f}; "
        f"{found['min']:.2f}-{found['max']:.2f})"
    )


def _lat(found: dict[str, float]) -> str:
    return f"{found['p50']:.2f} / {found['p99']:.2f} / {found['max']:.2f}"


def _mb(count: float) -> str:
    return f"{count / 1e6:.1f} MB"


def storage_table(ops: dict[str, Any]) -> list[str]:
    lines = [
        "| operation | ours/raw ops/s: median (p25-p75; min-max) | ours ops/s | raw ops/s "
        "| ours ms p50 / p99 / max | raw ms p50 / p99 / max | statements "
        "| ours/raw, `prepared` alias | ours/raw, neither prepares |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in OPERATIONS:
        op, prepared, unprepared = ops[name], ops["prepared"][name], ops["unprepared"][name]
        lines.append(
            f"| {name} | {_ratio(op['ratio'])} | {op['ours']['ops_per_s']['median']:.0f} "
            f"| {op['raw']['ops_per_s']['median']:.0f} | {_lat(op['ours']['latency_ms'])} "
            f"| {_lat(op['raw']['latency_ms'])} | {op['statements']} "
            f"| {_ratio(prepared['ratio'])} | {_ratio(unprepared['ratio'])} |"
        )
    return lines


def containment_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| rows | ours/raw GIN (ops/s) | ours ms p50 / p99 / max | raw GIN ms p50 / p99 / max "
        "| raw seq scan ms p50 / max | seq scan / GIN | plan (GIN) | plan (forced seq scan) "
        "| ours/raw GIN, `prepared` alias | ours/raw GIN, neither prepares |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for found in runs:
        compared = found["ours_vs_raw_gin"]
        seq = found["seqscan_latency_ms"]
        lines.append(
            f"| {found['rows']:,} | {_ratio(compared['ratio'])} "
            f"| {_lat(compared['ours']['latency_ms'])} | {_lat(compared['raw']['latency_ms'])} "
            f"| {seq['p50']:.1f} / {seq['max']:.1f} | {found['seqscan_over_gin']['median']:.0f}x "
            f"| `{found['plan_gin']}` | `{found['plan_seqscan']}` "
            f"| {_ratio(found['prepared']['ratio'])} | {_ratio(found['unprepared']['ratio'])} |"
        )
    return lines


def keys_table(runs: list[dict[str, Any]]) -> list[str]:
    """Item 10: lookups by business key against lookups by id, per table size."""
    lines = [
        "| rows | by key / by id (ops/s) | by key ms p50 / p99 / max | by id ms p50 / p99 / max "
        "| plan of the key lookup |",
        "|---|---|---|---|---|",
    ]
    for found in runs:
        compared = found["key_vs_id"]
        lines.append(
            f"| {found['rows']:,} | {_ratio(compared['ratio'])} "
            f"| {_lat(compared['ours']['latency_ms'])} | {_lat(compared['raw']['latency_ms'])} "
            f"| `{found['plan']}` |"
        )
    return lines


def end_to_end_table(runs: dict[str, Any]) -> list[str]:
    lines = [
        "| workflow | ours/floor workflows/s | ours wf/s | floor wf/s | statements ours / floor "
        "| engine waves (+ start) | state bytes written ours / floor | WAL bytes ours / floor "
        "| ours/floor, `prepared` alias | ours/floor, neither prepares |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, found in runs.items():
        lines.append(
            f"| {name} | {_ratio(found['ratio'])} | {found['ours']['ops_per_s']['median']:.0f} "
            f"| {found['raw']['ops_per_s']['median']:.0f} "
            f"| {found['ours_statements']} / {found['floor_statements']} "
            f"| {found['engine_waves']} (+1) "
            f"| {found['ours_state_bytes']:,} / {found['floor_state_bytes']:,} "
            f"| {found['ours_wal_bytes']:,.0f} / {found['floor_wal_bytes']:,.0f} "
            f"| {_ratio(found['prepared']['ratio'])} "
            f"| {_ratio(found['unprepared']['ratio'])} |"
        )
    return lines


def hot_paths_table(runs: dict[str, Any]) -> list[str]:
    """Issue 25's scenarios: start then wait, resume to the next wait (see bench.hot_paths)."""
    lines = [
        "| scenario | ours/floor, both prepare | ours/floor, neither prepares "
        "| ours/floor, Django's defaults (reported) | ours ops/s (neither) | floor ops/s (neither) "
        "| statements ours / floor | commits ours / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, found in runs.items():
        neither = found["unprepared"]
        lines.append(
            f"| {name} | {_ratio(found['prepared']['ratio'])} | {_ratio(neither['ratio'])} "
            f"| {_ratio(found['defaults']['ratio'])} "
            f"| {neither['ours']['ops_per_s']['median']:.0f} "
            f"| {neither['raw']['ops_per_s']['median']:.0f} "
            f"| {found['ours_statements']} / {found['floor_statements']} "
            f"| {found['ours_commits']} / {found['floor_commits']} |"
        )
    return lines


def peers_table(runs: dict[str, Any]) -> list[str]:
    """Section 13: ours against DBOS, the same workflows (see bench.peers)."""
    lines = [
        "| workflow | ours/DBOS ops/s | ours ops/s | DBOS ops/s | ours ms p50 / p99 "
        "| DBOS ms p50 / p99 | the floor/DBOS ops/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, found in runs.items():
        if name == "dbos":
            continue
        ours, theirs = found["ours"], found["raw"]
        floor = _ratio(found["floor"]["ratio"]) if "floor" in found else "-"
        lines.append(
            f"| {name} | {_ratio(found['ratio'])} | {ours['ops_per_s']['median']:.0f} "
            f"| {theirs['ops_per_s']['median']:.0f} "
            f"| {ours['latency_ms']['p50']:.2f} / {ours['latency_ms']['p99']:.2f} "
            f"| {theirs['latency_ms']['p50']:.2f} / {theirs['latency_ms']['p99']:.2f} | {floor} |"
        )
    return lines


def peers_budget(runs: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Each workflow against the target, with the floor's own lead beside it where measured:
    a target above the floor's is a wall, not a gap."""
    checks = []
    for name, found in runs.items():
        if name == "dbos":
            continue
        got = found["ratio"]["median"]
        measured = f"{got:.2f}x"
        if "floor" in found:
            measured += f" (the floor: {found['floor']['ratio']['median']:.2f}x)"
        checks.append((f"{name} ≥ {PEERS_TARGET:.0f}x DBOS", measured, got >= PEERS_TARGET))
    return checks


def peers_lines(runs: dict[str, Any]) -> list[str]:
    return [
        f"LocalRunner + DjangoStorage against DBOS {runs['dbos']} (its system database on the "
        "same server), one operation at a time, interleaved; the hand-written floor of section 3 "
        "against DBOS the same way, where it has one (the most an engine keeping our promises "
        "could have); `bench/peers.py` says what each workflow does on every side.",
        "",
        *peers_table(runs),
    ]


def tail_table(tail: dict[str, Any]) -> list[str]:
    lines = [
        f"{tail['writes_per_config']:,} puts of ours and as many raw per configuration, "
        f"alternating; {tail['rounds']} turns each ({tail['checkpoints_during']} checkpoints "
        f"meanwhile). As shipped: {tail['shipped_name']}.",
        "",
        "| GIN index | ours ms p50 / p99 / p99.9 / max | max ÷ p50 | puts > 10 / > 50 ms "
        "| raw ms p50 / p99 / max | mean ms ours / raw "
        "| raw inserts in a row: > 20 ms; the 4 slowest, ms @ write # |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sides in tail["configs"].items():
        ours, raw, row = sides["ours"], sides["raw"], sides["inserts_in_a_row"]
        slowest = ", ".join(f"{ms:.0f} @ {index:,}" for index, ms in row["slowest"])
        lines.append(
            f"| {name} | {ours['p50']:.2f} / {ours['p99']:.2f} / {ours.get('p99.9', 0):.2f} / "
            f"{ours['max']:.1f} | {ours['max_over_p50']:.0f}x "
            f"| {ours['over_10ms']} / {ours['over_50ms']} "
            f"| {_lat(raw)} | {ours['mean']:.2f} / {raw['mean']:.2f} "
            f"| {row['over_20ms']} of {row['writes']:,}; {slowest} |"
        )
    return lines


def admin_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| rows | page | ms p50 / p99 / max | statements | full-table count | database share "
        "| slowest statement ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for found in runs:
        for name, page in found.items():
            if not isinstance(page, dict) or "latency_ms" not in page:
                continue
            cancelled = " (timed out)" if page.get("timed_out") else ""
            lines.append(
                f"| {found['rows']:,} | {name}{cancelled} | {_lat(page['latency_ms'])} "
                f"| {page['statements']} | {'yes' if page['full_table_count'] else 'no'} "
                f"| {page['db_share']:.0%} | {page['slowest_statement_ms'] or 0:.1f} |"
            )
        worst = found.get("worst_search_ms")
        if worst:
            lines.append("")
            lines.append(
                f"Worst single search request at {found['rows']:,} rows: {worst['max_ms']:.1f} ms "
                f"({worst['search']}); worst median {worst['worst_p50_ms']:.1f} ms; each "
                f"statement of a search may run {worst['statement_timeout_ms']} ms; timed out: "
                f"{', '.join(worst['timed_out']) or 'none'}."
            )
    return lines


def memory_lines(found: dict[str, Any]) -> list[str]:
    return [
        f"`query()` returning {found['instances']:,} instances: peak "
        f"{_mb(found['ours_peak_bytes'])} (retained {_mb(found['ours_retained_bytes'])}); raw "
        f"psycopg + `json.loads` of the same rows: peak {_mb(found['raw_peak_bytes'])} (retained "
        f"{_mb(found['raw_retained_bytes'])}), so {found['peak_ratio']:.1f}x the raw peak. Time: "
        f"ours {found['ours_ms']['median']:.0f} ms, raw {found['raw_ms']['median']:.0f} ms, ours/"
        f"raw speed {_ratio(found['speed_ratio'])}. Streaming the same rows with "
        f"`WorkflowInstance.objects.completed().iterator(chunk_size={found['streamed_chunk']})` "
        f"and `row.to_instance()`, keeping none: peak {_mb(found['streamed_peak_bytes'])}, "
        f"{found['streamed_ms']:.0f} ms.",
    ]


def _plan_row(name: str, found: dict[str, Any]) -> str:
    scans = ", ".join(f"`{scan}`" for scan in found["scans"]) or "none"
    index = found.get("index_buffers") or "-"
    return f"| {name} | {found['execution_ms']:.1f} | {found['buffers']} | {index} | {scans} |"


def housekeeping_lines(found: dict[str, Any]) -> list[str]:
    before, during = found["writer"]["before"], found["writer"]["during"]
    plans = found["plans"]
    halfway = plans["halfway"]
    lines = [
        f"`Pruner` (what `hephaestus_prune` runs) deleted {found['deleted']:,} of the "
        f"{found['rows_in_table']:,} rows ({found['matched']:,} matched) in "
        f"{found['batches']:,} batches of {found['batch_size']:,}: "
        f"**{found['rows_per_s']:,.0f} rows/s** over the batches, "
        f"{found['rows_per_s_with_counts']:,.0f} rows/s counting its two `count(*)`s "
        f"({found['wall_s']:.1f} s in all). Peak memory (tracemalloc): "
        f"{found['peak_bytes'] / 1e3:.1f} kB. The prune index: "
        f"{found['index_bytes'] / 1e6:.1f} MB.",
        "",
        "A writer in a process of its own, putting instances one after another:",
        "",
        "| writer's `put` | ms p50 / p99 / max | puts | puts/s |",
        "|---|---|---|---|",
        f"| before the prune | {_lat(before)} | {before['n']:,} | {before['puts_per_s']:.0f} |",
        f"| during the prune | {_lat(during)} | {during['n']:,} | {during['puts_per_s']:.0f} |",
        "",
        "`EXPLAIN (ANALYZE, BUFFERS)`, each rolled back (full plans in the JSON):",
        "",
        "| statement | ms | buffers | of which the prune index's scan | scans |",
        "|---|---|---|---|---|",
        _plan_row("prune: first batch", plans["first_batch"]),
        _plan_row(
            f"prune: next batch after {halfway['deleted_before']:,} deleted (as shipped)",
            halfway["keyset"],
        ),
        _plan_row(
            f"prune: the same batch without the keyset start (re-walks the "
            f"{halfway['deleted_before']:,} deleted)",
            halfway["without_keyset"],
        ),
        *[
            _plan_row(f"worker pass, statement {n}", claim)
            for n, claim in enumerate(plans["claim"][:CLAIM_SHOWN], 1)
        ],
        *(
            [f"| … and {len(plans['claim']) - CLAIM_SHOWN:,} more statements of the pass | | | | |"]
            if len(plans["claim"]) > CLAIM_SHOWN
            else []
        ),
        "",
        "Plan of a prune batch, as shipped:",
        "",
        "```",
        *halfway["keyset"]["plan"],
        "```",
        "",
    ]
    for n, claim in enumerate(plans["claim"][:CLAIM_SHOWN], 1):
        lines += [f"Plan of the worker pass, statement {n}:", "", "```", *claim["plan"], "```", ""]
    return lines


def _configurations(found: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The figures of one comparison in each configuration the budget is reported for."""
    return [
        ("Django's defaults (no prepared statements) vs psycopg's", found),
        ("prepared statements on (`prepared` alias) vs psycopg's defaults", found["prepared"]),
        ("neither side prepares", found["unprepared"]),
    ]


def queued_budget(found: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Issue 15's benchmark targets."""
    ratio = found["scaling"]["ratio_4_vs_1"]["median"]
    pickup = found["pickup"]["ours_ms"]["p50"]
    overhead = found["overhead"]["ratio"]["median"]
    recovery = found["recovery"]
    took = recovery["seconds"]["max"]
    return [
        ("queued: 4 workers ≥ 3.5x the jobs/s of 1 (50 ms steps)", f"{ratio:.2f}x", ratio >= 3.5),
        ("queued: pickup latency p50 ≤ 50 ms (procrastinate)", f"{pickup:.1f} ms", pickup <= 50),
        (
            "queued: no-op steps ≥ 0.8x a bare procrastinate chain",
            f"{overhead:.2f}x",
            overhead >= 0.8,
        ),
        (
            f"queued: recovery after kill -9 ≤ lease + sweep interval ({recovery['target_s']:g} s),"
            " worst round",
            f"{took:.2f} s",
            took <= recovery["target_s"],
        ),
    ]


def _budget_lines(checks: list[tuple[str, str, bool]]) -> list[str]:
    return [
        "## Budget",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in checks],
        "",
    ]


LINEAR_TARGET = 0.85
"""A sequential 3-step workflow against the floor with the same commits (issue 25; 0.8 before)."""


def budget(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every budget line that this run measured."""
    mapped = maps_budget(results["maps"]) if "maps" in results else []
    mapped += peers_budget(results["peers"]) if "peers" in results else []
    if "storage_ops" not in results:
        return mapped + (queued_budget(results["queued"]) if "queued" in results else [])
    ops = results["storage_ops"]
    checks = []
    for name, floor in (("put_insert", 0.9), ("put_update", 0.9), ("get", 0.8)):
        for label, found in _configurations(ops):
            got = found[name]["ratio"]["median"]
            checks.append((f"{name} ≥ {floor}x raw ops/s, {label}", f"{got:.3f}x", got >= floor))
    counts = {name: ops[name]["statements"] for name in OPERATIONS}
    checks.append(
        ("one statement per storage op", str(counts), all(c == 1 for c in counts.values()))
    )
    for label, linear in _configurations(results["end_to_end"]["linear_3"]):
        got = linear["ratio"]["median"]
        checks.append(
            (
                f"3-step workflow ≥ {LINEAR_TARGET}x floor, {label}",
                f"{got:.3f}x",
                got >= LINEAR_TARGET,
            )
        )
    for name, found in results.get("hot_paths", {}).items():
        for label, key in (("both prepare", "prepared"), ("neither prepares", "unprepared")):
            got = found[key]["ratio"]["median"]
            checks.append((f"{name} ≥ 0.7x floor, {label}", f"{got:.3f}x", got >= 0.7))
        counts = (found["ours_commits"], found["floor_commits"])
        checks.append(
            (f"{name}: commits ≤ the floor's", f"{counts[0]} / {counts[1]}", counts[0] <= counts[1])
        )
    worst = max(found["writes_per_wave"] for found in results["end_to_end"].values())
    checks.append(("≤ 1 write per engine wave", f"{worst:.2f}", worst <= 1))
    if results.get("keys"):
        found = results["keys"][-1]
        checks.append(
            (
                f"key lookup through idx_workflow_instances_key at {found['rows']:,} rows",
                found["plan"],
                bool(found["uses_index"]),
            )
        )
    if results.get("containment"):  # not in --only hot
        checks += _later_budget(results)
    if "queued" in results:
        checks += queued_budget(results["queued"])
    checks += mapped
    return checks


def _later_budget(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The budget lines of sections 2, 4, 5 and 7, which ``--only hot`` does not run."""
    checks = []
    largest = results["containment"][-1]
    for label, found in _configurations({**largest, **largest["ours_vs_raw_gin"]}):
        got = 1 / found["ratio"]["median"]
        checks.append(
            (
                f"state__contains at {largest['rows']:,} rows ≤ 2x raw GIN time, {label}",
                f"{got:.3f}x",
                got <= 2,
            )
        )
    tail = results["tail"]
    got = tail["configs"][tail["shipped_name"]]["ours"]["max_over_p50"]
    checks.append(("worst put ≤ 100x median put (as shipped)", f"{got:.0f}x", got <= 100))
    pages = results["admin"][-1]
    changelist = pages["changelist"]
    checks.append(
        (
            f"changelist at {pages['rows']:,} rows: bounded queries, no full count",
            f"{changelist['statements']} statements, full count: "
            f"{'yes' if changelist['full_table_count'] else 'no'}",
            not changelist["full_table_count"],
        )
    )
    for name in ("dashboard", "dashboard_busy_day"):
        board = pages.get(name)
        if board:
            checks.append(
                (
                    f"{name.replace('_', ' ')} ≤ {board['budget_ms']:.0f} ms (p99) at "
                    f"{pages['rows']:,} rows, bounded queries",
                    f"p50 {board['latency_ms']['p50']:.1f} ms, p99 "
                    f"{board['latency_ms']['p99']:.1f} ms, {board['statements']} statements",
                    board["latency_ms"]["p99"] <= board["budget_ms"]
                    and board["statements"] <= DASHBOARD_STATEMENTS
                    and not board["full_table_count"],
                )
            )
    worst = pages.get("worst_search_ms")
    if worst:
        checks.append(
            (
                f"worst admin search request ≤ 100 ms at {pages['rows']:,} rows",
                f"{worst['max_ms']:.1f} ms ({worst['search']})",
                worst["max_ms"] <= 100,
            )
        )
    house = results.get("housekeeping")
    if house:
        rows = house["rows_in_table"]
        checks.append(
            (
                f"prune ≥ 10,000 rows/s at {rows:,} rows",
                f"{house['rows_per_s']:,.0f} rows/s",
                house["rows_per_s"] >= 10_000,
            )
        )
        plans = house["plans"]
        statements = [plans["first_batch"], plans["halfway"]["keyset"], *plans["claim"]]
        # Of the instances' table: the limits' slots (hephaestus_slots) hold a row per holder
        # and waiter, which PostgreSQL rightly reads whole.
        seq = [
            scan
            for found in statements
            for scan in found["scans"]
            if "Seq Scan" in scan and "workflow_instances" in scan
        ]
        checks.append(
            (
                f"prune batches and the worker's claim are index scans of the instances at "
                f"{rows:,} rows",
                ", ".join(seq) or "no Seq Scan",
                not seq,
            )
        )
    return checks


def _spread(found: dict[str, float], unit: str = "", digits: int = 1) -> str:
    return (
        f"**{found['median']:.{digits}f}{unit}** ({found['p25']:.{digits}f}-"
        f"{found['p75']:.{digits}f}; {found['min']:.{digits}f}-{found['max']:.{digits}f})"
    )


def _pickup(found: dict[str, float]) -> str:
    return (
        f"**{found['p50']:.1f}** / {found['p99']:.1f} ({found['p25']:.1f}-{found['p75']:.1f}; "
        f"{found['min']:.1f}-{found['max']:.1f}; n={found['n']})"
    )


def queued_lines(found: dict[str, Any]) -> list[str]:
    """Item 8: the queued runner on procrastinate's worker processes."""
    scaling, pickup, overhead = found["scaling"], found["pickup"], found["overhead"]
    recovery, counts = found["recovery"], found["counts"]
    lines = [
        "`QueuedRunner` + `ProcrastinateDispatcher` on `DjangoStorage`; workers are "
        "`manage.py procrastinate worker --concurrency 1` processes started by the bench. "
        "Figures: **median** (p25-p75; min-max) over rounds, unless said.",
        "",
        f"**Scaling** ({scaling['workflow']}; {scaling['instances_per_worker']} instances per "
        f"worker, all started in one transaction; {scaling['rounds']} rounds, the order of "
        "worker counts reversed every other round):",
        "",
        "| workers | jobs/s | ideal (no overhead) | workers' CPU ms per job | machine CPU busy |",
        "|---|---|---|---|---|",
        *[
            f"| {n} | {_spread(rate)} | {scaling['ideal_jobs_per_s'][n]:.0f} "
            f"| {_spread(scaling['worker_cpu_ms_per_job'][n])} "
            f"| {scaling['machine_busy'][n]['median']:.0%} "
            f"({scaling['machine_busy'][n]['min']:.0%}-{scaling['machine_busy'][n]['max']:.0%}) |"
            for n, rate in scaling["jobs_per_s"].items()
        ],
        "",
        f"4 workers vs 1: {_spread(scaling['ratio_4_vs_1'], 'x', 2)} (target ≥ 3.5x).",
        "",
        "**Pickup latency**, from the commit of a `start` (ours) or a `defer` (bare "
        "procrastinate task), each in a transaction (its first `on_commit` callback), to the "
        "step's (task's) first line, one idle worker, alternating; ms p50 / p99 (p25-p75; "
        "min-max; n):",
        "",
        "| | ms |",
        "|---|---|",
        f"| QueuedRunner `start` | {_pickup(pickup['ours_ms'])} |",
        f"| bare procrastinate `defer` | {_pickup(pickup['bare_ms'])} |",
        "",
        f"Target: p50 ≤ 50 ms on procrastinate. Ours - bare at p50: "
        f"{pickup['ours_minus_bare_p50_ms']:+.1f} ms.",
        "",
        f"**Overhead**: 3 no-op steps on QueuedRunner against a bare procrastinate chain of 3 "
        f"tasks, each deferring the next; {overhead['chains_per_batch']} chains per batch started "
        f"in one transaction, {overhead['workers']} worker(s), {overhead['rounds']} rounds "
        f"alternating the sides:",
        "",
        "| | steps/s | statements per step | commits per step |",
        "|---|---|---|---|",
    ]
    per_step = counts.get("per_step", {})
    for side, label in (("ours", "QueuedRunner"), ("bare", "bare procrastinate chain")):
        counted = per_step.get(side)
        lines.append(
            f"| {label} | {_spread(overhead[f'{side}_steps_per_s'], '', 0)} "
            + (
                f"| {_spread(counted['statements'], '', 2)} "
                f"| {_spread(counted['commits'], '', 2)} |"
                if counted
                else f"| {counts.get('skipped', '-')} | |"
            )
        )
    lines += [
        "",
        f"Ours ÷ bare steps/s: {_spread(overhead['ratio'], 'x', 2)} (target ≥ 0.8x).",
        "",
    ]
    if per_step:
        lines += [
            f"Statements: every `execute` of a psycopg cursor in the process that starts the "
            f"chains and runs procrastinate's worker (`BEGIN`/`COMMIT` not included); commits: "
            f"`pg_stat_database.xact_commit` of the bench database. Both counted for "
            f"{counts['chains'][0]} and {counts['chains'][1]} chains in processes of their own, "
            f"the difference divided by the {3 * counts['chains'][0]} steps between them; "
            f"{counts['rounds']} round(s). Per step, by kind:",
            "",
            "| statement | ours | bare |",
            "|---|---|---|",
            *[
                f"| `{kind}` | {counts['by_kind_per_step'].get('ours', {}).get(kind, 0):.2f} "
                f"| {counts['by_kind_per_step'].get('bare', {}).get(kind, 0):.2f} |"
                for kind in sorted(
                    {
                        *counts["by_kind_per_step"].get("ours", {}),
                        *counts["by_kind_per_step"].get("bare", {}),
                    }
                )
            ],
            "",
        ]
    if per_step:
        lines += [
            "Where a step's time goes, in the same counting processes (procrastinate's worker in "
            f"the process, {counts['chains'][1]} chains, no other worker; ms per step, median "
            "over rounds): ours "
            f"{per_step['ours']['wall_ms']['median']:.2f} wall / "
            f"{per_step['ours']['cpu_ms']['median']:.2f} CPU, bare "
            f"{per_step['bare']['wall_ms']['median']:.2f} wall / "
            f"{per_step['bare']['cpu_ms']['median']:.2f} CPU. Ours, per call:",
            "",
            "| part of a job | calls | ms CPU (this thread) | ms wall |",
            "|---|---|---|---|",
            *[
                f"| `{label}` | {spent['calls']} | {spent['cpu']:.3f} | {spent['wall']:.3f} |"
                for label, spent in counts["anatomy_ms_per_call"].items()
            ],
            "",
        ]
    lines += flow_lines(found)
    lines += [
        f"**Recovery after `kill -9`**: two workers and `hephaestus_worker --interval "
        f"{recovery['sweep_interval_s']:g}`, lease {recovery['lease_s']:g} s; the worker "
        f"running a long step is killed a second into it. From the kill to the step starting "
        f"again on the other worker: {_spread(recovery['seconds'], ' s', 2)} over "
        f"{recovery['rounds']} rounds (target ≤ lease + one sweep interval = "
        f"{recovery['target_s']:g} s).",
        "",
    ]
    return lines


def flow_lines(found: dict[str, Any]) -> list[str]:
    """Item 8f: the throughput at a concurrency limit against its ideal (if it was measured)."""
    flow = found.get("flow_throughput")
    if not flow:
        return []
    return [
        f"**Flow control, throughput at a limit**: {flow['instances']} one-step instances, "
        f"the step a {flow['step_sleep_s'] * 1000:g} ms sleep under `Concurrency("
        f"{flow['limit']})`, {flow['workers']} workers; ideal {flow['ideal_steps_per_s']:g} "
        f"steps/s (every slot always busy). Achieved "
        f"{_spread(flow['steps_per_s'], ' steps/s', 1)}, a ratio to the ideal of "
        f"{_spread(flow['ratio'], '', 2)} over {flow['rounds']} rounds. The same step "
        f"without a limit on {flow['limit']} workers (the same ideal), interleaved: "
        f"{_spread(flow['unlimited_steps_per_s'], ' steps/s', 1)}; limited ÷ unlimited "
        f"{_spread(flow['ratio_to_unlimited'], '', 2)}.",
        "",
    ]


def policies_lines(found: dict[str, Any]) -> list[str]:
    """Item 9: statements and microseconds of each case, and per failed attempt / compensation."""
    names = {
        "plain": "one-step workflow, started and run to its end",
        "timeout": "the same step with a `timeout` (bounded on a thread of its own)",
        "failed_attempt": "the same, first attempt failed and retried by a worker pass",
        "cancel": "`cancel` of an instance waiting for an event",
        "compensation": "`cancel(compensate=True)` after three compensable steps",
        "signal_receiver": "one-step workflow with a receiver on every signal",
        "tracing_api": "one-step workflow traced, `opentelemetry-api` without an SDK",
        "tracing_sdk": "one-step workflow traced, the SDK with in-memory exporters",
    }
    lines = ["| case | statements | µs: **median** (p25-p75) |", "|---|---:|---:|"]
    for key, label in names.items():
        if key not in found:  # a run from before the case existed, or without opentelemetry
            continue
        case = found[key]
        timing = case["us"]
        lines.append(
            f"| {label} | {case['statements']} | **{timing['median']:.0f}** "
            f"({timing['p25']:.0f}-{timing['p75']:.0f}) |"
        )
    attempt, compensated = found["per_failed_attempt"], found["per_compensated_step"]
    timed = found["per_timed_step"]
    lines += [
        "",
        f"A `timeout` costs {timed['statements']} statements and {timed['us']:.0f} µs per "
        f"step; a failed attempt costs {attempt['statements']} statements and "
        f"{attempt['us']:.0f} µs more than a step that succeeds at once (its record and retry "
        f"timer, the worker's claim and the second attempt's write); a compensated step costs "
        f"{compensated['statements']:.1f} statements and {compensated['us']:.0f} µs.",
    ]
    extras = {
        "per_step_signal_receiver": "receivers on every signal",
        "per_step_tracing_api": "tracing through the API without an SDK",
        "per_step_tracing_sdk": "tracing with the SDK (two spans, the metrics)",
    }
    costs = [
        f"{label} {found[key]['statements']} statements and {found[key]['us']:.0f} µs"
        for key, label in extras.items()
        if key in found
    ]
    if costs:
        lines += [
            "",
            "Per one-step run (a start, its step and `Done`), over the plain case: "
            + "; ".join(costs)
            + ".",
        ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    header = [
        f"# Benchmark results: {results['started']} ({results['mode']} mode)",
        "",
        f"{info['cpus']} CPUs · {info['postgresql'].split(' on ')[0]} ({info['server']}; fsync "
        f"{info['server_settings']['fsync']}, synchronous_commit "
        f"{info['server_settings']['synchronous_commit']}, autovacuum "
        f"{info['server_settings']['autovacuum']}) · Python {info['python']} · Django "
        f"{info['django']} · psycopg {info['psycopg']} ({info['psycopg_impl']}) · "
        f"{results['elapsed_s'] / 60:.1f} min",
        "",
        *(
            [
                "Load average (1, 5, 15 min) at the start: "
                + ", ".join(f"{x:.2f}" for x in info["load_at_start"])
                + "; at the end: "
                + ", ".join(f"{x:.2f}" for x in info.get("load_at_end", ()))
                + ".",
                "",
            ]
            if "load_at_start" in info
            else []
        ),
    ]
    queued = (
        ["## 8. Queued runner", "", *queued_lines(results["queued"])] if "queued" in results else []
    )
    mapped = ["## 11. Map steps", "", *maps_lines(results["maps"]), ""] if "maps" in results else []
    if "children" in results:
        mapped += ["## 12. Child workflows", "", *children_lines(results["children"]), ""]
    if "peers" in results:
        mapped += ["## 13. Peers: DBOS", "", *peers_lines(results["peers"]), ""]
    flow = results.get("flow_control")
    if flow is not None:
        mapped += ["## 14. Flow control", "", *cost_lines(flow["kinds"], flow["n"]), ""]
    if "bulk" in results:
        mapped += ["## 15. Bulk operations", "", *bulk_lines(results["bulk"]), ""]
    if "queued_flow" in results:  # python -m bench --only flow
        queued = ["## 8f. Flow control", "", *flow_lines(results["queued_flow"])]
    if "storage_ops" not in results:  # python -m bench --only queued (or another section)
        return "\n".join([*header, *mapped, *queued, *_budget_lines(budget(results))])
    lines = [
        *header,
        "Ratios are ours ÷ raw psycopg (higher is better for ours), per round (each round "
        f"alternates the two sides in slices of {SLICE} operations): **median** (p25-p75; "
        "min-max). Latencies in ms.",
        "",
        "## 1. Storage operations (~2.2 KB state)",
        "",
        *storage_table(results["storage_ops"]),
        "",
        *(
            [
                "## 2. `state__contains` on `context.initial`",
                "",
                *containment_table(results["containment"]),
                "",
            ]
            if results.get("containment")  # not in --only hot
            else []
        ),
        "## 3. End to end: LocalRunner + DjangoStorage vs the hand-written floor",
        "",
        *end_to_end_table(results["end_to_end"]),
        "",
        *(
            [
                "Start then wait, resume to the next wait (`bench/hot_paths.py`: what each floor "
                "does is in its docstring):",
                "",
                *hot_paths_table(results["hot_paths"]),
                "",
            ]
            if results.get("hot_paths")
            else []
        ),
        *(
            [
                "## 4. Tail latency of put by GIN `fastupdate` setting",
                "",
                *tail_table(results["tail"]),
                "",
                "## 5. Admin pages (test client, superuser)",
                "",
                *admin_table(results["admin"]),
                "",
                "## 6. Memory",
                "",
                *memory_lines(results["memory"]),
                "",
            ]
            if "tail" in results  # not in --only hot
            else []
        ),
        *(
            ["## 7. Housekeeping", "", *housekeeping_lines(results["housekeeping"]), ""]
            if "housekeeping" in results
            else []
        ),
        *(
            ["## 9. Step policies", "", *policies_lines(results["policies"]), ""]
            if "policies" in results
            else []
        ),
        *(
            [
                "## 10. Lookup by business key (`storage.query(key=...)`) against by id (`get`)",
                "",
                *keys_table(results["keys"]),
                "",
            ]
            if results.get("keys")
            else []
        ),
        *mapped,
        *queued,
        *_budget_lines(budget(results)),
    ]
    return "\n".join(lines)


def write(results: dict[str, Any], stamp: str, *, latest: bool) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(exist_ok=True)
    json_path = RESULTS_DIR / f"{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path = RESULTS_DIR / f"{stamp}.md"
    text = markdown(results)
    md_path.write_text(text)
    if latest:
        (RESULTS_DIR / "LATEST.md").write_text(text)
    return json_path, md_path
