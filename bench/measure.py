"""Timing, interleaving and spreads.

A *batch* runs one side's operation ``n`` times and returns each operation's latency in
nanoseconds. :func:`interleave` runs each round's ``n`` operations per side in short slices that
alternate between the sides (ours, raw, raw, ours, ours, raw, ...), so a burst of load on a
shared machine, which lasts longer than a slice, hits both sides alike, and turns each round into
a ratio ``ours ops/s / raw ops/s``. Ratios are quoted as the median of the rounds with their
p25-p75 and min-max; latencies as p50/p99/max over every operation of every round.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

Batch = Callable[[int], list[int]]
"""Runs ``n`` operations; returns each one's latency in nanoseconds."""


def timed(operation: Callable[[], Any]) -> int:
    """The latency of one call, in nanoseconds."""
    start = time.perf_counter_ns()
    operation()
    return time.perf_counter_ns() - start


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with p25-p75 and min-max."""
    return {
        "median": percentile(values, 0.5),
        "p25": percentile(values, 0.25),
        "p75": percentile(values, 0.75),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def latency_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p99/max (and p99.9 when there are enough samples) in milliseconds."""
    found = {
        "p50": percentile(samples_ns, 0.5) / 1e6,
        "p99": percentile(samples_ns, 0.99) / 1e6,
        "max": max(samples_ns) / 1e6,
        "n": len(samples_ns),
    }
    if len(samples_ns) >= 2000:
        found["p99.9"] = percentile(samples_ns, 0.999) / 1e6
    return found


def ops_per_second(samples_ns: Sequence[int]) -> float:
    return len(samples_ns) / (sum(samples_ns) / 1e9)


SLICE = 10
"""Operations per side in one slice of a round."""


def interleave(ours: Batch, raw: Batch, *, rounds: int, n: int, warmup: int = 0) -> dict[str, Any]:
    """Run ``rounds`` rounds of ``n`` operations per side, alternating slices of :data:`SLICE`.

    The side that goes first alternates from slice to slice, so neither always runs on the
    other's warm caches. Returns the per-round ratios (ours/raw ops/s) and their spread, each
    side's ops/s spread and its pooled latencies.
    """
    if warmup:
        ours(warmup)
        raw(warmup)
    samples: dict[str, list[int]] = {"ours": [], "raw": []}
    rates: dict[str, list[float]] = {"ours": [], "raw": []}
    ratios = []
    sides = (("ours", ours), ("raw", raw))
    for round_no in range(rounds):
        gc.collect()
        this_round: dict[str, list[int]] = {"ours": [], "raw": []}
        done = 0
        while done < n:
            size = min(SLICE, n - done)
            order = sides if (round_no + done // SLICE) % 2 == 0 else sides[::-1]
            for side, batch in order:
                this_round[side].extend(batch(size))
            done += size
        for side, found in this_round.items():
            samples[side].extend(found)
            rates[side].append(ops_per_second(found))
        ratios.append(rates["ours"][-1] / rates["raw"][-1])
    return {
        "rounds": rounds,
        "ops_per_round": n,
        "slice": SLICE,
        "ratio": spread(ratios),
        "ratios": ratios,
        "ours": {"ops_per_s": spread(rates["ours"]), "latency_ms": latency_ms(samples["ours"])},
        "raw": {"ops_per_s": spread(rates["raw"]), "latency_ms": latency_ms(samples["raw"])},
    }


def repeat(operation: Callable[[int], Any], n: int) -> list[int]:
    """Latencies of ``operation(i)`` for i in range(n)."""
    found = []
    for index in range(n):
        start = time.perf_counter_ns()
        operation(index)
        found.append(time.perf_counter_ns() - start)
    return found
