"""Latency from a child's end to its parent's next step (LocalRunner, InMemoryStorage).

Run: ``.venv/bin/python -m bench.child_latency`` from the repository root. Each round starts a
parent whose child waits for an event, then resumes the child and times the call: the child's
end, the parent's wake-up in the same transaction, and the parent's next step (``Bill``).
"""

from __future__ import annotations

import statistics
import time

from hephaestus_django import Status
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, configure
from tests import childflows

ROUNDS = 500


def main() -> None:
    configure(storages={"default": InMemoryStorage()}, runner=LocalRunner())
    timings = []
    for order in range(ROUNDS):
        parent = childflows.SlowOrder.start({"order": order})
        child = childflows.SlowOrder.get(parent).children["ship_slowly"]
        began = time.perf_counter()
        childflows.SlowShipment.resume(child, "picked_up")
        timings.append(time.perf_counter() - began)
        assert childflows.SlowOrder.get(parent).status is Status.COMPLETED
    timings.sort()
    print(
        f"child end -> parent's next step, {ROUNDS} rounds: median "
        f"{statistics.median(timings) * 1e3:.3f} ms, p95 {timings[int(ROUNDS * 0.95)] * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()
