"""The bare procrastinate baseline: three tasks, each deferring the next, and a marking task.

Registered on procrastinate's Django app by its autodiscovery (this app's ``tasks`` module).
Sync tasks, as ``hephaestus_django.step`` is; each defers the next the way a procrastinate
user writes it (``task.defer()``, through the worker's own connector).
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from bench.queued.marks import QUEUE, mark

CHAIN = ("bench.chain_1", "bench.chain_2", "bench.chain_3")
MARK = "bench.mark"


@app.task(name=CHAIN[2], queue=QUEUE)
def chain_3() -> None:
    pass


@app.task(name=CHAIN[1], queue=QUEUE)
def chain_2() -> None:
    chain_3.defer()


@app.task(name=CHAIN[0], queue=QUEUE)
def chain_1() -> None:
    chain_2.defer()


@app.task(name=MARK, queue=QUEUE)
def mark_start(key: str) -> None:
    mark(key)
