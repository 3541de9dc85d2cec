"""The schedules' shared state, ``hephaestus_schedules``: what ``DjangoStorage`` runs for
:class:`~hephaestus_django.runtime.contract.ScheduleTable`.

One row per schedule name, in the database of the storage the schedule starts its instances
in, so that a tick's instance and the record that it ran live side by side. Each operation is
one statement, tried again once on a fresh connection when the connection was lost (each is
safe to repeat: making a row, moving the last tick forward, setting paused, deleting the rows
of schedules configured no more).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections

from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import (
    ADVANCE_SCHEDULE,
    FORGET_SCHEDULES,
    PAUSE_SCHEDULE,
    SCHEDULE_STATES,
)
from hephaestus_django.runtime.contract import ScheduleState


def schedule_states(using: str, names: Sequence[str]) -> dict[str, ScheduleState]:
    """Each named schedule's state, its row made where missing (one statement)."""
    rows = _rows(using, SCHEDULE_STATES, {"names": list(names)})
    return {row[0]: ScheduleState(*row) for row in rows}


def advance_schedule(using: str, name: str, tick: datetime, next_due: datetime | None) -> bool:
    """Record ``tick`` as ``name``'s last, unless a later one is (one statement)."""
    return bool(_rows(using, ADVANCE_SCHEDULE, {"name": name, "tick": tick, "next_due": next_due}))


def pause_schedule(using: str, name: str, paused: bool, next_due: datetime | None) -> bool:
    """Pause or resume ``name``; whether that changed it (one statement)."""
    return bool(
        _rows(using, PAUSE_SCHEDULE, {"name": name, "paused": paused, "next_due": next_due})
    )


def forget_schedules(using: str, keep: Sequence[str]) -> list[str]:
    """Delete the rows of schedules not named in ``keep``; their names (one statement)."""
    return [row[0] for row in _rows(using, FORGET_SCHEDULES, {"keep": list(keep)})]


def _rows(using: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    try:
        return fetch_all(connections[using], sql, params)
    except DatabaseError as error:
        return again(using, error, lambda db: fetch_all(db, sql, params))
