"""Statements counted by the table they write, for section 11 (:mod:`bench.maps`).

Apart from the map's workflows, so that it can be imported (and tested) without registering
them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any


class Tally:
    """Statements and the bytes of their parameters, by the table they write; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.writes: dict[str, dict[str, int]] = {}

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        size = _size(params)
        kind = table_written(sql)
        with self._lock:
            self.statements += 1
            if kind is not None:
                found = self.writes.setdefault(kind, {"count": 0, "bytes": 0, "largest": 0})
                found["count"] += 1
                found["bytes"] += size
                found["largest"] = max(found["largest"], size)
        return execute(sql, params, many, context)


def table_written(sql: str) -> str | None:
    """What ``sql`` writes: ``items``, ``renewals``, ``instance`` or ``other``; None for a read."""
    head = sql.lstrip()[:6].upper()
    if head not in ("INSERT", "UPDATE", "WITH X", "WITH W") and not head.startswith("WITH"):
        return None
    if "workflow_map_items" in sql:
        return "items"
    if "hephaestus_slots SET expires_at" in " ".join(sql.split()):
        # The queue lease renewed (RENEW: the instance's lease_expires_at and its slots, no
        # state written), by the heartbeat of a running item or by an item job that finds the
        # lease short: a run longer than half a lease has them, however long the list. The
        # statement's text breaks its line inside that phrase, hence the spaces made single.
        return "renewals"
    if "workflow_instances" in sql:
        return "instance"
    return "other"


def _size(params: Any) -> int:
    values = params.values() if isinstance(params, Mapping) else (params or ())
    return sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in values)
