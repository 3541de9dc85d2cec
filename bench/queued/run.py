"""Item 8: ``QueuedRunner`` + ``ProcrastinateDispatcher`` with real worker processes.

Every worker is ``python -m django procrastinate worker --concurrency 1`` (or, for the sweep,
``hephaestus_worker``) on the bench database (:mod:`bench.queued.processes`), started and stopped
here. Instances are started from this process through ``QueuedRunner`` on ``DjangoStorage``,
exactly as a web process would; the bare baseline defers procrastinate tasks from this process
through procrastinate's Django app (:mod:`bench.queued.tasks`). Four figures, each with its
spread:

1. **Scaling**: ``Sleep3`` (three steps of a 50 ms sleep in a row) over ``per_worker x n``
   instances, all started in one transaction, with n = 1, 2, 4 worker processes (a fresh set
   for each, the order reversed every other round): jobs (steps) per second from the commit
   to the last instance completed (polled every 20 ms), and per round the ratio 4 vs 1.
2. **Pickup latency**: one idle worker; a ``Pickup1`` instance started (its step marks the time
   it starts, :mod:`bench.queued.marks`), against a bare procrastinate task deferred (it marks
   too), alternating, each in a transaction: from its commit (an ``on_commit`` callback) to
   the mark.
3. **Overhead**: ``Noop3`` (three no-op steps) on ``QueuedRunner`` against the bare chain of
   three procrastinate tasks, each deferring the next, on the same worker(s), in alternating
   batches of ``overhead_n`` each started in one transaction: steps per second and their ratio
   per round. Statements and commits per step are counted in processes of their own
   (:mod:`bench.queued.counting`): ``N`` and ``2N`` chains per side, the difference divided by
   ``3N`` steps, so the worker's start-up and shut-down cancel out.
4. **Recovery**: two workers and ``hephaestus_worker --interval`` with a short lease; the worker
   running a long step is ``kill -9``-ed a second into it: the time from the kill to the step
   starting again on the other worker.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections, transaction

from bench import flow_control
from bench.environment import REPO
from bench.measure import percentile, spread
from bench.queued import marks
from bench.queued.processes import Fleet, die_with_parent
from bench.queued.workflows import Noop3, Pickup1, Sleep3, Stall1
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher
from hephaestus_django.runtime import QueuedRunner
from hephaestus_django.runtime.config import backends

WORKER_COUNTS = (1, 2, 4)
STEP_SLEEP_S = 0.05
POLL_S = 0.02
STATS_IDLE_S = 10.5
"""PostgreSQL (15+) flushes an idle backend's pending statistics within 10 s."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]    {message}", flush=True)


def _database() -> dict[str, Any]:
    default = settings.DATABASES["default"]
    keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE")
    return {key: default[key] for key in keys if key in default}


class _Marks:
    """Reads the marks file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: dict[str, list[tuple[int, float]]] = {}
        self._offset = 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode().splitlines():
            key, pid, at = line.split()
            self.found.setdefault(key, []).append((int(pid), float(at)))

    def wait(self, key: str, count: int = 1, *, timeout: float, fleet: Fleet) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if len(self.found.get(key, ())) >= count:
                return self.found[key]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no mark {key!r} (x{count}) within {timeout} s")
            fleet.check_alive()
            time.sleep(0.001)


class Queued:
    def __init__(self, conninfo: str, workdir: Path) -> None:
        self.conninfo = conninfo
        self.monitor = psycopg.connect(conninfo, autocommit=True)
        self.marks = _Marks(workdir / "marks")
        self.fleet = Fleet(_database(), self.marks.path, workdir)
        self.runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue=marks.QUEUE))
        self.storage = backends.storage("default")

    def close(self) -> None:
        try:
            self.fleet.close()
        finally:
            self.runner.close()
            self.monitor.close()

    # --- helpers --------------------------------------------------------------------------

    def scalar(self, sql: str, params: Any = None) -> Any:
        row = self.monitor.execute(sql, params).fetchone()
        return row[0] if row else None

    def reset(self) -> None:
        """Empty the instances and procrastinate's tables (between measurements, workers idle)."""
        self.monitor.execute(
            "TRUNCATE workflow_instances, procrastinate_jobs, procrastinate_periodic_defers,"
            " procrastinate_events CASCADE"
        )

    def wait_for(
        self, predicate: Callable[[], bool], *, timeout: float, what: str, poll: float = POLL_S
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            self.fleet.check_alive()
            time.sleep(poll)

    def start_workers(self, n: int, *, lease: float = 60.0) -> list[subprocess.Popen[bytes]]:
        """``n`` workers, returned once each has registered with procrastinate (and a bit)."""
        after = self.scalar("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
        started = [self.fleet.worker(lease=lease) for _ in range(n)]
        self.wait_for(
            lambda: (
                self.scalar("SELECT count(*) FROM procrastinate_workers WHERE id > %s", [after])
                >= n
            ),
            timeout=120,
            what=f"{n} procrastinate workers registered",
            poll=0.05,
        )
        time.sleep(0.3)  # from registering to listening
        return started

    def stop_workers(self) -> None:
        self.fleet.stop_all()
        self.monitor.execute("DELETE FROM procrastinate_workers")

    def completed(self) -> int:
        return int(
            self.scalar("SELECT count(*) FROM workflow_instances WHERE status = 'completed'")
        )

    def chains_done(self) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE task_name = 'bench.chain_3' AND status = 'succeeded'"
            )
        )

    def batch(
        self,
        side: str,
        n: int,
        workflow: type[WorkflowDefinition] = Noop3,
        context: dict[str, Any] | None = None,
    ) -> float:
        """Start ``n`` workflows (or bare chains) in one transaction; seconds until all done."""
        from bench.queued.tasks import chain_1

        with transaction.atomic():
            for _ in range(n):
                if side == "ours":
                    self.runner.start(workflow, context or {}, storage=self.storage)
                else:
                    chain_1.defer()
        begun = time.perf_counter()
        done = self.completed if side == "ours" else self.chains_done
        self.wait_for(lambda: done() >= n, timeout=120 + n, what=f"{n} {side} chains done")
        return time.perf_counter() - begun

    # --- 1. scaling -----------------------------------------------------------------------

    def scaling(self, *, rounds: int, per_worker: int) -> dict[str, Any]:
        rates: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
        worker_cpu: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
        busy: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
        ratios = []
        for round_no in range(rounds):
            order = WORKER_COUNTS if round_no % 2 == 0 else WORKER_COUNTS[::-1]
            for n in order:
                self.reset()
                workers = self.start_workers(n)
                try:
                    instances = per_worker * n
                    cpu, machine = _cpu_seconds(workers), _machine_busy()
                    elapsed = self.batch("ours", instances, Sleep3, {"sleep": STEP_SLEEP_S})
                    cpu, machine = _cpu_seconds(workers) - cpu, _machine_busy(machine)
                finally:
                    self.stop_workers()
                rates[n].append(3 * instances / elapsed)
                worker_cpu[n].append(cpu * 1000 / (3 * instances))
                busy[n].append(machine)
                log(
                    f"scaling round {round_no + 1}: {n} worker(s), {rates[n][-1]:.1f} jobs/s; "
                    f"{worker_cpu[n][-1]:.1f} ms worker CPU per job; machine {machine:.0%} busy"
                )
            ratios.append(rates[WORKER_COUNTS[-1]][-1] / rates[1][-1])
        return {
            "workflow": "Sleep3: 3 steps in a row, each a 50 ms sleep",
            "step_sleep_s": STEP_SLEEP_S,
            "instances_per_worker": per_worker,
            "rounds": rounds,
            "jobs_per_s": {str(n): spread(found) for n, found in rates.items()},
            "ideal_jobs_per_s": {str(n): n / STEP_SLEEP_S for n in WORKER_COUNTS},
            "worker_cpu_ms_per_job": {str(n): spread(found) for n, found in worker_cpu.items()},
            "machine_busy": {str(n): spread(found) for n, found in busy.items()},
            "ratio_4_vs_1": spread(ratios),
            "ratios": ratios,
        }

    # --- 2. pickup latency ----------------------------------------------------------------

    def _pickup_once(self, side: str, index: int) -> float:
        from bench.queued.tasks import mark_start

        # Both sides in a transaction of this process, timed by its first on_commit callback:
        # the moment COMMIT returned, before either side's own return path (procrastinate's
        # `defer` builds its Job after the insert, and a worker may be faster than that).
        committed: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.time()))
            if side == "ours":
                key = str(self.runner.start(Pickup1, {}, storage=self.storage).id)
            else:
                key = f"bare-{index}"
                mark_start.defer(key=key)
        (_, started), *_ = self.marks.wait(key, timeout=30, fleet=self.fleet)
        return (started - committed[0]) * 1000

    def pickup(self, *, samples: int, warmup: int = 5) -> dict[str, Any]:
        self.reset()
        self.start_workers(1)
        found: dict[str, list[float]] = {"ours": [], "bare": []}
        try:
            for index in range(warmup + samples):
                sides = ("ours", "bare") if index % 2 == 0 else ("bare", "ours")
                for side in sides:
                    latency = self._pickup_once(side, index)
                    if index >= warmup:
                        found[side].append(latency)
                    # let the worker record the step's result and go idle again
                    time.sleep(random.uniform(0.06, 0.12))
        finally:
            self.stop_workers()
        return {
            "samples": samples,
            "ours_ms": _latencies(found["ours"]),
            "bare_ms": _latencies(found["bare"]),
            "ours_minus_bare_p50_ms": percentile(found["ours"], 0.5)
            - percentile(found["bare"], 0.5),
        }

    # --- 12. a child's end to its parent's next step ---------------------------------------

    def _child_once(self) -> float:
        from bench.queued.workflows import ParentOfChild

        parent = self.runner.start(ParentOfChild, {}, storage=self.storage).id
        self.wait_for(
            lambda: bool(self.storage.get(parent).children),
            timeout=30,
            what="the parent starting its child",
            poll=0.005,
        )
        child = self.storage.get(parent).children["start_child_waiting"]
        # Timed from the commit of the child's end (which wakes the parent and enqueues its
        # next step in the same transaction) to that step's first line on the worker.
        committed: list[float] = []
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.time()))
            self.runner.resume(child, "picked_up", storage=self.storage)
        (_, started), *_ = self.marks.wait(str(parent), timeout=30, fleet=self.fleet)
        return (started - committed[0]) * 1000

    def children(self, *, samples: int, warmup: int = 3) -> dict[str, Any]:
        self.reset()
        self.start_workers(1)
        found: list[float] = []
        try:
            for index in range(warmup + samples):
                latency = self._child_once()
                if index >= warmup:
                    found.append(latency)
                time.sleep(random.uniform(0.06, 0.12))  # the worker goes idle again
        finally:
            self.stop_workers()
        return {"samples": samples, "ms": {**_latencies(found), "p95": percentile(found, 0.95)}}

    # --- 3. overhead ----------------------------------------------------------------------

    def overhead(self, *, rounds: int, n: int, workers: int) -> dict[str, Any]:
        self.reset()
        self.start_workers(workers)
        rates: dict[str, list[float]] = {"ours": [], "bare": []}
        ratios = []
        try:
            for side in ("ours", "bare"):  # warm-up
                self.batch(side, max(n // 5, 2))
            for round_no in range(rounds):
                sides = ("ours", "bare") if round_no % 2 == 0 else ("bare", "ours")
                for side in sides:
                    self.reset()
                    rates[side].append(3 * n / self.batch(side, n))
                ratios.append(rates["ours"][-1] / rates["bare"][-1])
                log(
                    f"overhead round {round_no + 1}: ours {rates['ours'][-1]:.0f}, bare "
                    f"{rates['bare'][-1]:.0f} steps/s"
                )
        finally:
            self.stop_workers()
        return {
            "workers": workers,
            "chains_per_batch": n,
            "rounds": rounds,
            "ours_steps_per_s": spread(rates["ours"]),
            "bare_steps_per_s": spread(rates["bare"]),
            "ratio": spread(ratios),
            "ratios": ratios,
        }

    def _stats(self) -> tuple[int, int]:
        """This database's commits and rollbacks; the statement's own commit is flushed at once."""
        row = self.monitor.execute(
            "SELECT xact_commit, xact_rollback, pg_stat_force_next_flush()::text"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def _backends(self) -> set[int]:
        rows = self.monitor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return {row[0] for row in rows}

    def _counted_phase(self, side: str, n: int) -> dict[str, Any]:
        self.reset()
        before = self._backends()
        commits0, rollbacks0 = self._stats()
        process = subprocess.run(
            [sys.executable, "-m", "bench.queued.counting", side, str(n)],
            cwd=REPO,
            env=self.fleet.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            preexec_fn=die_with_parent,
        )
        if process.returncode != 0:
            raise RuntimeError(f"bench.queued.counting {side} {n} failed:\n{process.stderr}")
        counted = __import__("json").loads(process.stdout.strip().splitlines()[-1])
        self.wait_for(
            lambda: self._backends() <= before,
            timeout=30,
            what="the counting process's backends gone",
        )
        commits1, rollbacks1 = self._stats()
        done = self.completed() if side == "ours" else self.chains_done()
        if done != n:
            raise RuntimeError(f"counting {side} {n}: {done} chains done")
        return {
            "worker_ms_per_step": counted["worker_ms_per_step"],
            "anatomy_ms_per_call": counted["anatomy_ms_per_call"],
            "statements": counted["statements"],
            "by_kind": counted["all"],
            "commits": commits1 - commits0 - 1,  # less the first snapshot's own
            "rollbacks": rollbacks1 - rollbacks0,
        }

    def counts(self, *, rounds: int, n: int) -> dict[str, Any]:
        """Statements and commits per step, each side: (phase of 2n) - (phase of n), / 3n."""
        if self.monitor.info.server_version < 150000:
            return {"skipped": "needs PostgreSQL 15+ (pg_stat_force_next_flush)"}
        connections.close_all()
        self._stats()  # flushes the monitor's own pending statistics
        self.wait_for(
            lambda: (
                not self.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state_change > now() - %s * interval '1 s'",
                    [STATS_IDLE_S],
                )
            ),
            timeout=60,
            what="every other connection idle for 10 s (its statistics flushed)",
            poll=0.5,
        )
        per_step: dict[str, dict[str, list[float]]] = {
            side: {"statements": [], "commits": [], "rollbacks": [], "wall_ms": [], "cpu_ms": []}
            for side in ("ours", "bare")
        }
        phases: list[dict[str, Any]] = []
        for round_no in range(rounds):
            sides = ("ours", "bare") if round_no % 2 == 0 else ("bare", "ours")
            for side in sides:
                small = self._counted_phase(side, n)
                large = self._counted_phase(side, 2 * n)
                phases.append({"side": side, "n": n, "small": small, "large": large})
                for key in ("statements", "commits", "rollbacks"):
                    per_step[side][key].append((large[key] - small[key]) / (3 * n))
                for key in ("wall", "cpu"):
                    per_step[side][f"{key}_ms"].append(large["worker_ms_per_step"][key])
        last = {p["side"]: p for p in phases[-2:]}
        return {
            "chains": [n, 2 * n],
            "rounds": rounds,
            "per_step": {
                side: {key: spread(values) for key, values in found.items()}
                for side, found in per_step.items()
            },
            "by_kind_per_step": {
                side: {
                    kind: (last[side]["large"]["by_kind"].get(kind, 0) - count) / (3 * n)
                    for kind, count in last[side]["small"]["by_kind"].items()
                }
                for side in last
            },
            "anatomy_ms_per_call": last["ours"]["large"]["anatomy_ms_per_call"],
            "phases": phases,
        }

    # --- 4. recovery ----------------------------------------------------------------------

    def recovery(self, *, rounds: int, lease: float, interval: float) -> dict[str, Any]:
        # The starting process has the workers' lease too, as a deployment's settings would.
        runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue=marks.QUEUE), lease=lease)
        self.reset()
        self.fleet.sweep(lease=lease, interval=interval)
        workers = self.start_workers(2, lease=lease)
        times = []
        try:
            for round_no in range(rounds):
                instance = runner.start(Stall1, {"sleep": 120}, storage=self.storage)
                key = str(instance.id)
                ((pid, _),) = self.marks.wait(key, timeout=30, fleet=self.fleet)
                time.sleep(1.0)  # in the middle of the step; the lease was renewed meanwhile
                victim = next(w for w in workers if w.pid == pid)
                victim.kill()
                killed = time.time()
                victim.wait()
                self.fleet.children.remove(victim)
                workers.remove(victim)
                found = self.marks.wait(key, 2, timeout=lease + interval + 60, fleet=self.fleet)
                (again_pid, again_at) = found[1]
                times.append(again_at - killed)
                self.wait_for(
                    lambda key=key: (
                        self.scalar(  # type: ignore[misc]
                            "SELECT status FROM workflow_instances WHERE id = %s", [key]
                        )
                        == "completed"
                    ),
                    timeout=60,
                    what="the recovered instance completed",
                )
                log(
                    f"recovery round {round_no + 1}: pid {pid} killed, step again in pid "
                    f"{again_pid} after {times[-1]:.2f} s"
                )
                if round_no + 1 < rounds:
                    workers += self.start_workers(1, lease=lease)
        finally:
            self.stop_workers()
            runner.close()
        return {
            "lease_s": lease,
            "sweep_interval_s": interval,
            "target_s": lease + interval,
            "rounds": rounds,
            "seconds": spread(times),
            "times": times,
        }


def _cpu_seconds(children: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds of ``children`` so far (Linux's /proc; 0 elsewhere)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for child in children:
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _machine_busy(since: Any = None) -> Any:
    """The machine's CPU counters (Linux's /proc/stat); with ``since``, the busy share since."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan") if since is not None else None
    idle = values[3] + values[4]  # idle, iowait
    if since is None:
        return (sum(values), idle)
    if not since:
        return float("nan")
    total, was_idle = sum(values) - since[0], idle - since[1]
    return 1 - was_idle / total if total else float("nan")


def _latencies(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "p25": percentile(values, 0.25),
        "p75": percentile(values, 0.75),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_children(conninfo: str, samples: int) -> dict[str, Any]:
    """Item 12 on ``QueuedRunner`` with one procrastinate worker process."""
    workdir = Path(tempfile.mkdtemp(prefix="hx-bench-children-"))
    queued = Queued(conninfo, workdir)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return queued.children(samples=samples)
    finally:
        queued.close()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def run(conninfo: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Every queued-runner figure; the workers are stopped whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="hx-bench-queued-"))
    queued = Queued(conninfo, workdir)
    ok = False
    # SIGTERM too goes through the `finally` that stops the workers (Ctrl-C does already);
    # should the bench die regardless, its children get SIGKILL (processes.die_with_parent).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        results: dict[str, Any] = {}
        log("8a. scaling: 1, 2, 4 workers, 50 ms steps")
        results["scaling"] = queued.scaling(rounds=plan["rounds"], per_worker=plan["per_worker"])
        log("8b. pickup latency, one idle worker")
        results["pickup"] = queued.pickup(samples=plan["pickup_samples"])
        log("8c. overhead against a bare procrastinate chain")
        results["overhead"] = queued.overhead(
            rounds=plan["overhead_rounds"], n=plan["overhead_n"], workers=plan["overhead_workers"]
        )
        log("8d. recovery after kill -9")
        results["recovery"] = queued.recovery(
            rounds=plan["recovery_rounds"], lease=plan["lease"], interval=plan["sweep_interval"]
        )
        log("8e. statements and commits per step")
        results["counts"] = queued.counts(rounds=plan["count_rounds"], n=plan["count_n"])
        log("8f. flow control: throughput at a limit of 4 with 8 workers, 50 ms steps")
        results["flow_throughput"] = flow_control.throughput(
            queued, rounds=plan.get("flow_rounds", 3), n=plan.get("flow_n", 160)
        )
        ok = True
        return results
    finally:
        queued.close()
        signal.signal(signal.SIGTERM, previous)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"queued-runner bench: worker logs kept in {workdir}", file=sys.stderr)


def run_flow(conninfo: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Item 8f alone (``python -m bench --only flow``): the throughput at a limit."""
    workdir = Path(tempfile.mkdtemp(prefix="hx-bench-flow-"))
    queued = Queued(conninfo, workdir)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        log("8f. flow control: throughput at a limit of 4 with 8 workers, 50 ms steps")
        found = flow_control.throughput(
            queued, rounds=plan.get("flow_rounds", 3), n=plan.get("flow_n", 160)
        )
        shutil.rmtree(workdir, ignore_errors=True)
        return {"flow_throughput": found}
    finally:
        queued.close()
        signal.signal(signal.SIGTERM, previous)
