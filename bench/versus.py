"""``python -m bench.versus OLD_REV [--rounds N] [--rows R] [--only GROUP ...]``: the same
measurements on an older revision's code and on this tree's, in alternating processes.

On a shared machine a figure from one run says little about another run's: the load moves. This
tool measures both codes in one run, turn and turn about, so that a burst of load hits both
alike, and quotes each measurement as *new ÷ old* per round (median and range).

It makes a detached worktree of ``OLD_REV`` (:data:`OLD_TREE` unless ``--old-tree``; the
virtualenv linked in, as in every worktree) and starts one process per side running a small
driver (:data:`SIDE`, the same text on both), with ``PYTHONPATH`` and the working directory set
to that side's tree (the driver checks that ``hephaestus_django`` and ``bench`` come from it),
each side on a database of its own (``$BENCH_DATABASE`` + ``_old`` / ``_new``, made and loaded
with ``R`` bulk rows by a setup process of that side's code). The two processes then take
turns: the old one runs a slice of operations (ours, then raw, or the other way round), then
the new one, then the new one again and the old one, and so on, as :func:`bench.measure.
interleave` alternates ours and raw within a process. Each side's process times its own
operations; only the latencies cross the pipe.

The driver uses only what both revisions' ``bench`` packages have: ``storage_ops.Sides``,
``end_to_end.recorded_run`` and the floor's write (``floor_workflow``, formerly
``_floor_workflow``), ``admin_pages._client``, ``measure.repeat``. So each side is measured by
its own bench code, against its own floor: where the floor changed between the revisions (the
raw put was one ``INSERT ... ON CONFLICT`` statement on 24 November, the storage's own
``INSERT`` or plain ``UPDATE`` since), the raw side's new ÷ old shows it, and *ours* new ÷ old
is the figure to read.

Measurements (groups for ``--only``):

- ``storage``: section 1's ``put_insert``, ``put_update`` and ``get``, ours against raw psycopg,
  both preparing statements (ours on the ``prepared`` alias) and neither preparing;
- ``e2e``: section 3's 3-step workflow (``Linear3``) against its floor, the same two ways;
- ``admin``: section 5's changelist page 50 (``?p=50``) through Django's test client, p50 of
  the requests, at ``R`` bulk rows.

"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import ops_per_second, percentile, spread

REPO = Path(__file__).resolve().parent.parent
GROUPS = ("storage", "e2e", "admin")
ORDER = [
    f"{name}, {config}"
    for name in ("put_insert", "put_update", "get", "linear_3")
    for config in ("prepared", "unprepared")
] + ["changelist page 50"]
"""The measurements, in the order measured and reported."""

SIDE = r"""
import json, sys
from pathlib import Path

tree = Path.cwd().resolve()
mode, database, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])

from psycopg.conninfo import make_conninfo

from bench import environment

environment.DATABASE = database  # the 24 November code reads no $BENCH_DATABASE
url, _ = environment.server_url()
if mode == "setup":
    conninfo = environment.recreate_database(url)
else:
    conninfo = make_conninfo(url, dbname=database)
environment.configure_django(conninfo)

import hephaestus_django
import bench

for module in (hephaestus_django, bench):
    assert Path(module.__file__).resolve().is_relative_to(tree), (module.__file__, tree)

raw = environment.raw_connection(conninfo)
unprepared = environment.raw_connection(conninfo, prepared=False)


def answer(found):
    print("VERSUS " + json.dumps(found), flush=True)


if mode == "setup":
    from bench import data

    data.bulk_load(raw, 1, rows)
    answer({"rows": data.row_count(raw)})
    sys.exit(0)

from functools import partial

from django.urls import reverse

from bench import admin_pages, end_to_end, storage_ops
from bench.environment import PREPARED
from bench.measure import repeat
from bench.workflows import Linear3, initial_context
from hephaestus_django.runtime import LocalRunner
from hephaestus_django.storage import DjangoStorage

batches = {}  # name -> (ours, raw or None); each batch(n) -> n latencies in ns
configs = (("prepared", raw, PREPARED), ("unprepared", unprepared, "default"))
for label, connection, using in configs:
    sides = storage_ops.Sides(connection, using)
    keys = sides.seed(2000)
    batches[f"put_insert, {label}"] = (sides.ours_put_insert, sides.raw_put_insert)
    batches[f"put_update, {label}"] = (sides.ours_put_update, sides.raw_put_update)
    batches[f"get, {label}"] = (sides.ours_get(keys), sides.raw_get(keys))

floor_write = getattr(end_to_end, "floor_workflow", None) or end_to_end._floor_workflow
floor = end_to_end.recorded_run(Linear3)["floor"]
runner = LocalRunner()
order_ids = iter(range(30_000_000, 40_000_000))


def ours_linear(count, storage):
    contexts = [initial_context(next(order_ids)) for _ in range(count)]
    return repeat(lambda i: runner.start(Linear3, contexts[i], storage=storage), count)


def floor_linear(count, connection):
    return repeat(lambda i: floor_write(connection, Linear3.path(), floor), count)


for label, connection, using in configs:
    batches[f"linear_3, {label}"] = (
        partial(ours_linear, storage=DjangoStorage(using=using)),
        partial(floor_linear, connection=connection),
    )

client = admin_pages._client()
page = reverse("admin:hephaestus_django_workflowinstance_changelist") + "?p=50"
response = client.get(page)
assert response.status_code == 200, (page, response.status_code)
batches["changelist page 50"] = (lambda count: repeat(lambda i: client.get(page), count), None)

answer(sorted(batches))
for line in sys.stdin:
    asked = json.loads(line)
    if asked.get("quit"):
        break
    ours, baseline = batches[asked["name"]]
    found = {"ours": [], "raw": []}
    order = [("ours", ours), ("raw", baseline)]
    for side, batch in order if asked["ours_first"] else order[::-1]:
        if batch is not None:
            found[side] = batch(asked["n"])
    answer(found)
runner.close()
"""
"""The driver each side's process runs (``python -c``), with the same text on both codes."""


def log(message: str) -> None:
    print(f"[versus {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


OLD_TREE = Path(tempfile.gettempdir()) / "hephaestus-bench-versus-old"
"""Where the old revision's worktree is made, unless ``--old-tree`` says: kept for the next run
(``git worktree remove`` it when done)."""


def old_tree(rev: str, where: Path) -> Path:
    """A detached worktree of ``rev`` at ``where`` (made, or checked to be at ``rev``), with
    this tree's virtualenv linked in."""
    wanted = _git("rev-parse", f"{rev}^{{commit}}")
    if where.exists():
        found = _git("rev-parse", "HEAD", cwd=where)
        if found != wanted:
            raise SystemExit(
                f"{where} holds {found[:10]}, not {rev} ({wanted[:10]}): remove it "
                f"(git worktree remove {where}) or pass --old-tree"
            )
    else:
        _git("worktree", "add", "--detach", str(where), wanted)
    venv = where / ".venv"
    if not venv.exists() and (REPO / ".venv").exists():
        venv.symlink_to((REPO / ".venv").resolve())
    return where


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def setup(tree: Path, database: str, rows: int) -> None:
    """A fresh ``database`` with ``rows`` bulk rows, migrated and loaded by ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_DATABASE": database}
    done = subprocess.run(
        [sys.executable, "-c", SIDE, "setup", database, str(rows)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or "VERSUS " not in done.stdout:
        raise SystemExit(
            f"the driver's setup failed on {tree} (database {database}), exit "
            f"{done.returncode}:\n{done.stderr[-3000:]}"
        )


class Side:
    """One side's driver process, serving batches of a measurement on request."""

    def __init__(self, tree: Path, database: str, rows: int) -> None:
        self.tree = tree
        env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_DATABASE": database}
        # Closed by close(): the process outlives this method.
        self.errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-c", SIDE, "measure", database, str(rows)],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        self.names: list[str] = self._answer()

    def _answer(self) -> Any:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("VERSUS "):
                return json.loads(line.removeprefix("VERSUS "))
        self.errors.seek(0)
        raise SystemExit(
            f"the driver on {self.tree} ended, exit {self.process.wait()}:\n"
            f"{self.errors.read()[-3000:]}"
        )

    def run(self, name: str, n: int, *, ours_first: bool) -> dict[str, list[int]]:
        """``n`` operations of ours and of raw (where the measurement has a raw side)."""
        assert self.process.stdin is not None
        asked = {"name": name, "n": n, "ours_first": ours_first}
        self.process.stdin.write(json.dumps(asked) + "\n")
        self.process.stdin.flush()
        found: dict[str, list[int]] = self._answer()
        return found

    def close(self) -> None:
        if self.process.stdin is not None and self.process.poll() is None:
            self.process.stdin.write(json.dumps({"quit": True}) + "\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.errors.close()


def group(name: str) -> str:
    if name.startswith("linear_3"):
        return "e2e"
    if name.startswith("changelist"):
        return "admin"
    return "storage"


def measure(
    sides: dict[str, Side], name: str, *, rounds: int, n: int, warmup: int, slice_: int
) -> list[dict[str, dict[str, float]]]:
    """``rounds`` rounds of ``n`` operations per side of ``name``, old and new alternating in
    slices of ``slice_`` (the side that goes first alternating too): per round and side, ours'
    and raw's ops/s and ours' p50 in ms."""
    for side in sides.values():
        side.run(name, warmup, ours_first=True)
    found = []
    for number in range(rounds):
        samples: dict[str, dict[str, list[int]]] = {s: {"ours": [], "raw": []} for s in sides}
        done, turn = 0, number
        while done < n:
            size = min(slice_, n - done)
            order = ("old", "new") if turn % 2 == 0 else ("new", "old")
            for side in order:
                got = sides[side].run(name, size, ours_first=turn % 2 == 0)
                for kind, latencies in got.items():
                    samples[side][kind].extend(latencies)
            done += size
            turn += 1
        found.append(
            {
                side: {
                    "ours": ops_per_second(kinds["ours"]),
                    "raw": ops_per_second(kinds["raw"]) if kinds["raw"] else math.nan,
                    "p50_ms": percentile(kinds["ours"], 0.5) / 1e6,
                }
                for side, kinds in samples.items()
            }
        )
    return found


def summary(measured: dict[str, list[dict[str, dict[str, float]]]]) -> list[str]:
    """The markdown table: per measurement, new ÷ old per round and each side's ours/raw."""
    lines = [
        "| measurement | ours new ÷ old, per round: median (min-max) | raw new ÷ old (the "
        "floor's control) | ours/raw, old | ours/raw, new | ours old / new (medians) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rounds in measured.items():
        if group(name) == "admin":
            ratios = [r["new"]["p50_ms"] / r["old"]["p50_ms"] for r in rounds]
            times = {s: spread([r[s]["p50_ms"] for r in rounds])["median"] for s in ("old", "new")}
            lines.append(
                f"| {name}, p50 time (lower is better) | **{_quoted(ratios)}** | | | | "
                f"{times['old']:.1f} / {times['new']:.1f} ms |"
            )
            continue
        ours = [r["new"]["ours"] / r["old"]["ours"] for r in rounds]
        raw = [r["new"]["raw"] / r["old"]["raw"] for r in rounds]
        sides = {s: [r[s]["ours"] / r[s]["raw"] for r in rounds] for s in ("old", "new")}
        rates = {s: spread([r[s]["ours"] for r in rounds])["median"] for s in ("old", "new")}
        lines.append(
            f"| {name}, ops/s (higher is better) | **{_quoted(ours)}** | {_quoted(raw)} | "
            f"{_quoted(sides['old'])} | {_quoted(sides['new'])} | "
            f"{rates['old']:.0f} / {rates['new']:.0f} ops/s |"
        )
    return lines


def _quoted(values: list[float]) -> str:
    found = spread(values)
    return f"{found['median']:.2f}x ({found['min']:.2f}-{found['max']:.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("old_rev", help="the older revision, e.g. e0d5ca2")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement")
    parser.add_argument("--rows", type=int, default=100_000, help="bulk rows in each database")
    parser.add_argument("--ops", type=int, default=200, help="storage operations per round")
    parser.add_argument("--requests", type=int, default=20, help="page requests per round")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument(
        "--old-tree", type=Path, default=OLD_TREE, help="the old revision's worktree"
    )
    parser.add_argument("--json", type=Path, help="write every round's figures there")
    args = parser.parse_args(argv)
    base = os.environ.get("BENCH_DATABASE", "").strip() or "hephaestus_bench"
    trees = {"old": old_tree(args.old_rev, args.old_tree), "new": REPO}
    databases = {name: f"{base}_{name}" for name in trees}
    started = os.getloadavg()
    for name, tree in trees.items():
        log(f"setup: {name} ({tree}), database {databases[name]}, {args.rows:,} rows")
        setup(tree, databases[name], args.rows)
    sides = {name: Side(tree, databases[name], args.rows) for name, tree in trees.items()}
    plans = {  # operations per round and side, warm-up, slice
        "storage": (args.ops, 50, 10),
        "e2e": (max(args.ops // 4, 20), 20, 5),
        "admin": (args.requests, 3, 2),
    }
    measured: dict[str, list[dict[str, dict[str, float]]]] = {}
    try:
        for name in sorted(sides["new"].names, key=ORDER.index):
            if group(name) not in args.only or name not in sides["old"].names:
                continue
            n, warmup, slice_ = plans[group(name)]
            log(f"{name}: {args.rounds} rounds of {n} per side, slices of {slice_}")
            measured[name] = measure(
                sides, name, rounds=args.rounds, n=n, warmup=warmup, slice_=slice_
            )
    finally:
        for side in sides.values():
            side.close()
    if args.json:
        args.json.write_text(json.dumps(measured, indent=1))
    dirty = ", with changes not committed" if _git("status", "--porcelain", "-uno") else ""
    print(
        f"Old: {args.old_rev} ({_git('rev-parse', '--short', 'HEAD', cwd=trees['old'])}); "
        f"new: {_git('rev-parse', '--short', 'HEAD')} (this tree{dirty}). {args.rounds} rounds "
        f"per measurement, {args.rows:,} bulk rows; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in started)}, at the end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    )
    print("\n".join(summary(measured)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
