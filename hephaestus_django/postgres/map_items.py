"""The items of map steps in the ``workflow_map_items`` table: ``DjangoStorage``'s
:class:`~hephaestus_django.runtime.contract.MapItems`.

One row per item, keyed by (instance, step, index). Recording an item is one upsert of that
row (:data:`~hephaestus_django.postgres.sql.MAP_ITEM_RECORD`), whose size is the item's result,
whatever the length of the list; the instance's row is not written. Each statement survives a
dropped connection outside a transaction: an upsert or a read is safe to run again.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import DatabaseError, IntegrityError, connections

from hephaestus_django.core.errors import InstanceNotFound
from hephaestus_django.core.instance import instance_key
from hephaestus_django.postgres.cursors import fetch_all, fetch_one
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import (
    MAP_ITEM_COUNTS,
    MAP_ITEM_FAILURE,
    MAP_ITEM_MARK,
    MAP_ITEM_ONE,
    MAP_ITEM_PROGRESS,
    MAP_ITEM_RECORD,
    MAP_ITEM_RESTART,
    MAP_ITEM_RESULTS,
    MAP_ITEM_TROUBLE,
    MAP_ITEMS_FORGET,
)
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.contract import MapCounts, MapItemState


def progress(using: str, instance_id: UUID | str, step: str) -> dict[int, MapItemState]:
    key = instance_key(instance_id)
    if key is None:
        return {}
    params = [key, step]
    try:
        rows = fetch_all(connections[using], MAP_ITEM_PROGRESS, params)
    except DatabaseError as error:
        rows = again(using, error, lambda db: fetch_all(db, MAP_ITEM_PROGRESS, params))
    return {
        index: MapItemState(done=done, attempts=attempts, failed=failed, running=running)
        for index, done, attempts, failed, running in rows
    }


def record(
    using: str,
    instance_id: UUID | str,
    step: str,
    index: int,
    *,
    attempts: int,
    done: bool,
    result: Any = None,
    failed: bool = False,
) -> None:
    key = instance_key(instance_id)
    if key is None:
        raise InstanceNotFound(instance_id)
    kept = done or failed
    text = codec.dumps(codec.encode(result, path=f"item {index} of {step}")) if kept else None
    params = [key, step, index, done, attempts, failed and not done, text]
    try:
        _execute(connections[using], MAP_ITEM_RECORD, params)
    except IntegrityError as error:  # the foreign key: the instance is gone
        raise InstanceNotFound(key, "it was deleted while its map ran") from error
    except DatabaseError as error:
        again(using, error, lambda db: _execute(db, MAP_ITEM_RECORD, params))


def results(using: str, instance_id: UUID | str, step: str) -> list[Any]:
    key = instance_key(instance_id)
    if key is None:
        return []
    params = [key, step]
    try:
        rows = fetch_all(connections[using], MAP_ITEM_RESULTS, params)
    except DatabaseError as error:
        rows = again(using, error, lambda db: fetch_all(db, MAP_ITEM_RESULTS, params))
    path = f"the results of {step}"
    return [codec.decode(codec.loads(text), path=path, instance_id=key) for (text,) in rows]


def one(using: str, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
    key = instance_key(instance_id)
    if key is None:
        return None
    params = [key, step, index]
    try:
        row = fetch_one(connections[using], MAP_ITEM_ONE, params)
    except DatabaseError as error:
        row = again(using, error, lambda db: fetch_one(db, MAP_ITEM_ONE, params))
    if row is None:
        return None
    done, attempts, failed, running = row
    return MapItemState(done=done, attempts=attempts, failed=failed, running=running)


def mark(using: str, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
    key = instance_key(instance_id)
    if key is None:
        raise InstanceNotFound(instance_id)
    params = [key, step, index]
    try:
        row = fetch_one(connections[using], MAP_ITEM_MARK, params)
    except IntegrityError as error:  # the foreign key: the instance is gone
        raise InstanceNotFound(key, "it was deleted while its map ran") from error
    except DatabaseError as error:
        # Made again after a lost connection: a mark that landed reads as "runs already", and
        # the job does nothing; the sweep's restart of the map clears the mark.
        row = again(using, error, lambda db: fetch_one(db, MAP_ITEM_MARK, params))
    if row is None:
        return None
    attempts, failed = row
    return MapItemState(done=False, attempts=attempts, failed=failed, running=True)


def counts(using: str, instance_id: UUID | str, step: str) -> MapCounts:
    key = instance_key(instance_id)
    if key is None:
        return MapCounts(0, 0, 0, None)
    params = [key, step]
    try:
        row = fetch_one(connections[using], MAP_ITEM_COUNTS, params)
    except DatabaseError as error:
        row = again(using, error, lambda db: fetch_one(db, MAP_ITEM_COUNTS, params))
    assert row is not None  # an aggregate always returns its row
    return MapCounts(*row)


def trouble(using: str, instance_id: UUID | str, step: str) -> MapCounts:
    key = instance_key(instance_id)
    if key is None:
        return MapCounts(0, 0, 0, None)
    params = [key, step]
    try:
        row = fetch_one(connections[using], MAP_ITEM_TROUBLE, params)
    except DatabaseError as error:
        row = again(using, error, lambda db: fetch_one(db, MAP_ITEM_TROUBLE, params))
    assert row is not None  # an aggregate always returns its row
    failed, running, first = row
    return MapCounts(0, failed, running, first)


def failure(using: str, instance_id: UUID | str, step: str, index: int) -> tuple[int, str]:
    key = instance_key(instance_id)
    params = [key, step, index]
    row = fetch_one(connections[using], MAP_ITEM_FAILURE, params) if key is not None else None
    if row is None:
        return 0, "(not recorded)"
    attempts, text = row
    error = codec.loads(text) if text is not None else None
    return attempts, error if isinstance(error, str) else "(not recorded)"


def restart(using: str, instance_id: UUID | str, step: str) -> None:
    key = instance_key(instance_id)
    if key is None:
        return
    params = [key, step]
    try:
        _execute(connections[using], MAP_ITEM_RESTART, params)
    except DatabaseError as error:
        again(using, error, lambda db: _execute(db, MAP_ITEM_RESTART, params))


def forget(using: str, instance_id: UUID | str, steps: list[str]) -> int:
    """Delete the items of map ``steps`` of the instance, of every generation (``step`` or
    ``step#N``), in the caller's transaction (a rewind's locked write): not run again on a
    dropped connection, the rewind is."""
    key = instance_key(instance_id)
    if key is None or not steps:
        return 0
    with connections[using].cursor() as cursor:
        cursor.execute(MAP_ITEMS_FORGET, [key, steps])
        return int(cursor.rowcount)


def _execute(connection: Any, sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
