"""The concurrency slots table (``hephaestus_slots``): what ``DjangoStorage`` runs for
:class:`~hephaestus_django.runtime.contract.SlotKeeping`.

Each operation on one limit and key is a transaction of two statements, sent in one query
string (one round trip): the limit's transaction-scoped advisory lock
(:data:`~hephaestus_django.postgres.sql.SLOT_LOCK_NAMED`), then the operation, whose snapshot is
taken after the lock and so sees every earlier operation on that limit committed. Admissions
of different limits or keys never wait for each other. Inside the caller's transaction (the
runner's, recording a step's result) the lock is held until it commits, so the freed slot, the
admitted waiters and the result commit together.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import DatabaseError, connections, transaction

from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.postgres.cursors import fetch_all, fetch_last
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import (
    ADMIT,
    FREE,
    LIMIT_LINES,
    LIMIT_USE,
    PLACES,
    PURGE_SLOTS,
    RELEASE,
    SET_LOCAL_TIMEOUT,
    SLOT_LOCK,
    SLOT_LOCK_NAMED,
    SLOTS_OF_INSTANCE,
    SPEND_ENDED_SLOTS,
    WAITING_LIMITS,
)
from hephaestus_django.runtime.slots import LimitLine, LimitUse, Place, slot_lease, waited

MAX_LIMITS_REPORTED = 1_000
"""At most this many limits and keys in ``limits()`` (the status report stays small)."""

LINES_SHOWN = 25
"""At most this many limits and keys on the dashboard's card (the first, by name and key)."""
LINE_COUNT_CAP = 10_000
"""The dashboard counts each limit's holders and waiters up to this many rows."""


def _locked(using: str, name: str, key: str, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run ``sql`` after the lock of limit ``name`` and ``key``, in one transaction; again on
    a new connection if the old one was lost (nothing was committed then).

    Sent as one query string, the lock then ``sql`` (one round trip; outside the caller's
    transaction, their own implicit one); where the connection binds parameters on the server,
    which takes one statement at a time, as two statements in a transaction."""

    def run(_db: Any) -> list[Any]:
        connection = connections[using]
        together = fetch_last(connection, f"{SLOT_LOCK_NAMED};\n{sql}", params)
        if together is not None:
            return together
        # Inside the caller's transaction, no savepoint: an error there rolls it all back.
        with transaction.atomic(using=using, savepoint=False):
            with connection.cursor() as cursor:
                cursor.execute(SLOT_LOCK, [name, key])
            return fetch_all(connection, sql, params)

    try:
        return run(None)
    except DatabaseError as error:
        return again(using, error, run)


def admit(
    using: str,
    instance_id: UUID,
    step: str,
    request: SlotRequest,
    *,
    priority: int,
    lease: timedelta,
) -> bool:
    params = {
        "name": request.name,
        "key": request.key,
        "id": instance_id,
        "step": step,
        "priority": priority,
        "limit": request.limit,
        "lease": lease,
        "per": request.per,
    }
    rows = _locked(using, request.name, request.key, ADMIT, params)
    return bool(rows and rows[0][0])


def release(
    using: str,
    instance_id: UUID | None,
    step: str | None,
    request: SlotRequest,
    *,
    lease: timedelta,
) -> list[tuple[UUID, str]]:
    params = {
        "name": request.name,
        "key": request.key,
        "id": instance_id,
        "step": step,
        "limit": request.limit,
        "lease": lease,
        "per": request.per,
    }
    rows = _locked(using, request.name, request.key, RELEASE, params)
    waited(request.name, [row[2] for row in rows])
    return [(row[0], row[1]) for row in rows]


def free(using: str, instance_id: UUID, *, lease: timedelta) -> list[tuple[UUID, str]]:
    """Give back every slot and place in line of the instance (cancelled, deleted or ended; a
    rate limit's holding slot is spent for its window, not freed), admitting the next waiters
    of each limit, inside the caller's transaction (its own, else): the limits' locks in the
    order every transaction takes them, one limit after another."""
    admitted: list[tuple[UUID, str]] = []
    with transaction.atomic(using=using, savepoint=False):
        for name, key, limit in fetch_all(connections[using], SLOTS_OF_INSTANCE, [instance_id]):
            params = {"name": name, "key": key, "id": instance_id, "limit": limit, "lease": lease}
            rows = _locked(using, name, key, FREE, params)
            waited(name, [row[2] for row in rows])
            admitted.extend((row[0], row[1]) for row in rows)
    return admitted


def lock_slots(using: str, instance_id: UUID) -> None:
    """The locks of every limit the instance is in, in the caller's transaction (held until
    it ends; taken again by ``free`` later in it, at no cost)."""
    connection = connections[using]
    with transaction.atomic(using=using, savepoint=False):
        for name, key, _limit in fetch_all(connection, SLOTS_OF_INSTANCE, [instance_id]):
            with connection.cursor() as cursor:
                cursor.execute(SLOT_LOCK, [name, key])


def admit_waiting(using: str, *, lease: timedelta) -> list[tuple[UUID, str]]:
    """Spend the rate limits' slots of instances that no longer run, forget lapsed holders and
    the other rows of those instances, then admit waiters of each limit someone waits for."""
    connection = connections[using]
    try:
        with connection.cursor() as cursor:
            cursor.execute(SPEND_ENDED_SLOTS)
            cursor.execute(PURGE_SLOTS)
        waiting = fetch_all(connection, WAITING_LIMITS, [])
    except DatabaseError as error:
        waiting = again(using, error, lambda db: fetch_all(db, WAITING_LIMITS, []))
    admitted = []
    for name, key, limit in waiting:
        request = SlotRequest(name, key, limit)
        admitted.extend(release(using, None, None, request, lease=slot_lease(name, lease)))
    return admitted


def limits(using: str) -> list[LimitUse]:
    rows = fetch_all(connections[using], LIMIT_USE, [MAX_LIMITS_REPORTED])
    return [LimitUse(*row) for row in rows]


def places(using: str, instance_id: UUID) -> list[Place]:
    rows = fetch_all(connections[using], PLACES, [instance_id])
    return [Place(*row) for row in rows]


def lines(
    using: str, *, shown: int | None = None, cap: int | None = None, timeout_ms: int = 2_000
) -> list[LimitLine]:
    """The dashboard's card: the first ``shown`` limits and keys (by name, then key), each with
    its holders and waiters counted up to ``cap`` (by default :data:`LINES_SHOWN` and
    :data:`LINE_COUNT_CAP`), its number and its oldest waiter
    (:data:`~hephaestus_django.postgres.sql.LIMIT_LINES`: index reads, bounded however long the
    lines). Raises :class:`django.db.DatabaseError` past ``timeout_ms``."""
    shown = LINES_SHOWN if shown is None else shown
    cap = LINE_COUNT_CAP if cap is None else cap
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(SET_LOCAL_TIMEOUT, [f"{timeout_ms}ms"])
        cursor.execute(LIMIT_LINES, {"shown": shown, "cap": cap})
        rows = cursor.fetchall()
    return [
        LimitLine(name, key, int(holding), int(waiting), int(limit or 0), oldest, now, cap)
        for name, key, holding, waiting, limit, oldest, now in rows
    ]
