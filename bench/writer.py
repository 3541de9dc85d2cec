"""``python -m bench.writer CONNINFO STOP_FILE``: a writer of its own, timing every ``put``.

The housekeeping section runs it next to a prune, in a process of its own, so that its latency
is what an application would see (its own connection, its own interpreter) and so that the
prune's memory is measured without it. It puts a finished :class:`~bench.workflows.Linear3`
instance, then updates it, again and again, until ``STOP_FILE`` exists. It prints ``ready``
once warmed up, and at the end one JSON line: ``[[start, latency], ...]`` in nanoseconds, the
start on ``time.monotonic_ns()``, the clock the parent reads too.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench import environment

WARMUP = 200


def main(conninfo: str, stop_file: str) -> int:
    environment.configure_django(conninfo)  # the table is migrated: a no-op
    from bench.data import completed_instance, unsaved
    from hephaestus_django.storage import DjangoStorage

    storage = DjangoStorage()
    template = completed_instance(60_000_000)
    stop = Path(stop_file)
    samples: list[tuple[int, int]] = []
    clock = time.monotonic_ns
    tick = 0
    while not stop.exists():
        instance = unsaved(template)
        for _ in range(2):  # insert, then update
            start = clock()
            storage.put(instance)
            samples.append((start, clock() - start))
            tick += 1
            instance = replace(instance, runtime_metadata={"tick": tick})
        if len(samples) == WARMUP:
            print("ready", flush=True)
    print(json.dumps(samples[WARMUP:]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
