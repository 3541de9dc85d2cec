"""The pending debounced starts, ``hephaestus_pending_starts``: what ``DjangoStorage`` runs for
:class:`~hephaestus_django.runtime.debounce.DebounceTable`.

Each operation is one statement (see :mod:`~hephaestus_django.postgres.sql`). A push or a read
lost with its connection is tried again once on a fresh one (a push repeated pushes the same
key twice, which is what a debounce absorbs); a take is not, since it must run in the caller's
transaction with the instance's write.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connections

from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import DUE_STARTS, PUSH_START, TAKE_START
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.debounce import Debounced, PendingStart


def push_start(
    using: str, pending: PendingStart, window: timedelta, max_wait: timedelta | None
) -> Debounced:
    """Make or push back the pending start of its workflow and key (one statement)."""
    params = {
        "workflow": pending.workflow,
        "key": pending.key,
        "instance_id": pending.instance_id,
        "version": pending.version,
        "context": codec.dumps_encoded(pending.context),
        "metadata": codec.dumps_encoded(pending.metadata),
        "window": window,
        "max_wait": max_wait,
    }
    try:
        rows = fetch_all(connections[using], PUSH_START, params)
    except DatabaseError as error:
        rows = again(using, error, lambda db: fetch_all(db, PUSH_START, params))
    instance_id, due_at = rows[0]
    return Debounced(instance_id, due_at)


def due_starts(using: str, limit: int) -> list[PendingStart]:
    """The pending starts due now, the earliest first (one statement)."""
    params = {"limit": limit}
    try:
        rows = fetch_all(connections[using], DUE_STARTS, params)
    except DatabaseError as error:
        rows = again(using, error, lambda db: fetch_all(db, DUE_STARTS, params))
    return [_pending(row) for row in rows]


def take_start(using: str, workflow: str, key: str, instance_id: uuid.UUID) -> PendingStart | None:
    """Delete the pending start if still due and still ``instance_id``'s (one statement, in
    the caller's transaction)."""
    params = {"workflow": workflow, "key": key, "instance_id": instance_id}
    rows = fetch_all(connections[using], TAKE_START, params)
    return _pending(rows[0]) if rows else None


def _pending(row: tuple[Any, ...]) -> PendingStart:
    workflow, key, instance_id, version, context, metadata = row
    return PendingStart(
        workflow, key, instance_id, version, codec.loads(context), codec.loads(metadata)
    )
