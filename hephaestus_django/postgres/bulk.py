"""Bulk operations' rows, ``hephaestus_bulk_operations`` and ``hephaestus_bulk_outcomes``: what
``DjangoStorage`` runs for :class:`~hephaestus_django.runtime.contract.BulkTable`.

Each operation is one statement. The batch selection is a keyset on the instances' primary
key (``id > cursor ORDER BY id LIMIT n``) with the filters of ``query()``, leaving out the
instances that have an outcome already (the unique index on ``(bulk_id, instance_id)``): so a
batch costs the same at the start and at the end of a large table, and an instance a killed
runner already operated is never selected again.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import DatabaseError, connections

from hephaestus_django.core.errors import BulkOperationError
from hephaestus_django.core.instance import instance_key
from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import (
    BULK_NOT_DONE,
    BULK_REFUSALS,
    BULK_STATE,
    CLAIM_BULK,
    CREATE_BULK,
    FINISH_BULK_BATCH,
    RECORD_BULK_OUTCOME,
    TABLE,
)
from hephaestus_django.runtime.contract import BulkSpec, BulkState
from hephaestus_django.runtime.filters import parse_filters


def create(using: str, spec: BulkSpec) -> BulkState:
    """Store ``spec`` as a new pending operation (one statement)."""
    params = {
        "id": uuid.uuid4(),
        "operation": spec.operation,
        "workflow": spec.workflow,
        "filters": json.dumps(spec.filters),
        "options": json.dumps(spec.options),
        "batch_size": spec.batch_size,
    }
    return _state(_rows(using, CREATE_BULK, params)[0])


def state(using: str, bulk_id: UUID | str) -> BulkState:
    """The stored operation; ``BulkOperationError`` when there is none."""
    key = instance_key(bulk_id)
    rows = [] if key is None else _rows(using, BULK_STATE, {"id": key})
    if not rows:
        raise BulkOperationError(
            f"no bulk operation {bulk_id}; hephaestus_bulk prints the id of the one it makes"
        )
    return _state(rows[0])


def claim(using: str, owner: str, lease: timedelta, bulk_id: UUID | None) -> BulkState | None:
    """Lease an unfinished operation to ``owner`` (one statement, :data:`CLAIM_BULK`)."""
    rows = _rows(using, CLAIM_BULK, {"owner": owner, "lease": lease, "id": bulk_id})
    return _state(rows[0]) if rows else None


def count(using: str, spec: BulkSpec) -> int:
    """How many instances the filters of ``spec`` select now; for a stored operation, those
    past its cursor without an outcome (what remains)."""
    if isinstance(spec, BulkState):
        where, params = _where(spec, spec.cursor)
        where += f" AND {BULK_NOT_DONE}"
        params.append(spec.id)
    else:
        where, params = _where(spec, None)
    return int(_rows(using, f"SELECT count(*) FROM {TABLE} i WHERE {where}", params)[0][0])


def batch(using: str, bulk: BulkState) -> list[UUID]:
    """The next ``batch_size`` ids past the cursor, not operated yet (one statement)."""
    where, params = _where(bulk, bulk.cursor)
    where += f" AND {BULK_NOT_DONE}"
    params.append(bulk.id)
    sql = f"SELECT i.id FROM {TABLE} i WHERE {where} ORDER BY i.id LIMIT %s"
    params.append(bulk.batch_size)
    return [row[0] for row in _rows(using, sql, params)]


def record(using: str, bulk_id: UUID, instance_id: UUID, done: bool, reason: str | None) -> None:
    """One outcome, in the caller's transaction (no retry on a lost connection: the caller's
    transaction, if any, is lost with it)."""
    params = {"bulk": bulk_id, "instance": instance_id, "done": done, "reason": reason}
    with connections[using].cursor() as cursor:
        cursor.execute(RECORD_BULK_OUTCOME, params)


def finish(using: str, bulk_id: UUID, owner: str, last: UUID | None) -> BulkState:
    """Advance the cursor and counters (one statement); the state after, as stored (unchanged
    when ``owner`` no longer holds the operation)."""
    params = {"id": bulk_id, "owner": owner, "last": last}
    rows = _rows(using, FINISH_BULK_BATCH, params)
    return _state(rows[0]) if rows else state(using, bulk_id)


def refusals(using: str, bulk_id: UUID, limit: int) -> list[tuple[UUID, str]]:
    """The refused instances with their reasons, in id order."""
    return [
        (row[0], row[1]) for row in _rows(using, BULK_REFUSALS, {"id": bulk_id, "limit": limit})
    ]


def _where(bulk: BulkSpec, after: UUID | None) -> tuple[str, list[Any]]:
    filters = {k: v for k, v in bulk.filters.items() if k not in ("since", "until", "ids")}
    if bulk.workflow:
        filters["workflow"] = bulk.workflow
    parsed = parse_filters(filters)
    if parsed.matches_nothing or bulk.filters.get("ids") == []:
        return "false", []
    from hephaestus_django.postgres.storage import where_clause  # storage imports this module

    clause, params = where_clause(parsed)
    conditions = [clause.removeprefix(" WHERE ")] if clause else []
    if "ids" in bulk.filters:
        conditions.append("i.id = ANY(%s::uuid[])")
        params.append(bulk.filters["ids"])
    if after is not None:
        conditions.append("i.id > %s")
        params.append(after)
    for name, operator in (("since", ">="), ("until", "<")):
        if bulk.filters.get(name) is not None:
            conditions.append(f"i.inserted_at {operator} %s")
            params.append(datetime.fromisoformat(bulk.filters[name]))
    return " AND ".join(conditions) or "true", params


def _state(row: tuple[Any, ...]) -> BulkState:
    values = list(row)
    for index in (2, 3):  # filters, options: jsonb, decoded by the driver or as text
        if isinstance(values[index], str):
            values[index] = json.loads(values[index])
    return BulkState(*values)


def _rows(using: str, sql: str, params: Any) -> list[tuple[Any, ...]]:
    try:
        return fetch_all(connections[using], sql, params)
    except DatabaseError as error:
        return again(using, error, lambda db: fetch_all(db, sql, params))
