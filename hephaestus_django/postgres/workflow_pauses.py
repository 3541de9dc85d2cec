"""The workflows held, ``hephaestus_workflow_pauses``: what ``DjangoStorage`` runs for
:class:`~hephaestus_django.runtime.contract.WorkflowPausing`.

A handful of rows (one per workflow or version an operator paused). Each operation is one
statement, tried again once on a fresh connection when the connection was lost (each is safe
to repeat: holding what is held, releasing what is not, reading).
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connections

from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import PAUSE_WORKFLOW, UNPAUSE_WORKFLOW, WORKFLOW_PAUSES
from hephaestus_django.runtime.contract import WorkflowPause


def pause_workflow(using: str, workflow: str, version: int, reason: str | None) -> bool:
    """Hold ``workflow`` at ``version`` (0: all); whether it was not held yet."""
    params = {"workflow": workflow, "version": version, "reason": reason}
    return bool(_rows(using, PAUSE_WORKFLOW, params))


def unpause_workflow(using: str, workflow: str, version: int) -> bool:
    """Release the hold; whether there was one."""
    return bool(_rows(using, UNPAUSE_WORKFLOW, {"workflow": workflow, "version": version}))


def workflow_pauses(using: str) -> list[WorkflowPause]:
    """Every hold (one statement)."""
    return [WorkflowPause(*row) for row in _rows(using, WORKFLOW_PAUSES, {})]


def _rows(using: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    try:
        return fetch_all(connections[using], sql, params)
    except DatabaseError as error:
        return again(using, error, lambda db: fetch_all(db, sql, params))
