"""Timing, interleaving and spreads.

A *batch* runs one side's operation ``n`` times and returns each operation's latency in
nanoseconds. :func:`interleave` runs the two sides' batches alternately (ours, raw, then raw,
ours in the next round, and so on), so drift on a shared machine hits both, and turns each round
into a ratio ``ours ops/s / raw ops/s``. Ratios are quoted as the median of the rounds with their
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


def interleave(ours: Batch, raw: Batch, *, rounds: int, n: int, warmup: int = 0) -> dict[str, Any]:
    """Run both sides alternately for ``rounds`` rounds of ``n`` operations each.

    Returns the per-round ratios (ours/raw ops/s) and their spread, each side's ops/s spread
    and its pooled latencies.
    """
    if warmup:
        ours(warmup)
        raw(warmup)
    samples: dict[str, list[int]] = {"ours": [], "raw": []}
    rates: dict[str, list[float]] = {"ours": [], "raw": []}
    ratios = []
    for round_no in range(rounds):
        order = (("ours", ours), ("raw", raw))
        if round_no % 2:
            order = order[::-1]
        this_round = {}
        for side, batch in order:
            gc.collect()
            found = batch(n)
            samples[side].extend(found)
            this_round[side] = ops_per_second(found)
            rates[side].append(this_round[side])
        ratios.append(this_round["ours"] / this_round["raw"])
    return {
        "rounds": rounds,
        "ops_per_round": n,
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
