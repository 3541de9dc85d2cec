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
from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.reconnect import again
from hephaestus_django.postgres.sql import (
    MAP_ITEM_PROGRESS,
    MAP_ITEM_RECORD,
    MAP_ITEM_RESULTS,
    MAP_ITEMS_FORGET,
)
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.contract import MapItemState


def progress(using: str, instance_id: UUID | str, step: str) -> dict[int, MapItemState]:
    key = instance_key(instance_id)
    if key is None:
        return {}
    params = [key, step]
    try:
        rows = fetch_all(connections[using], MAP_ITEM_PROGRESS, params)
    except DatabaseError as error:
        rows = again(using, error, lambda db: fetch_all(db, MAP_ITEM_PROGRESS, params))
    return {index: MapItemState(done=done, attempts=attempts) for index, done, attempts in rows}


def record(
    using: str,
    instance_id: UUID | str,
    step: str,
    index: int,
    *,
    attempts: int,
    done: bool,
    result: Any = None,
) -> None:
    key = instance_key(instance_id)
    if key is None:
        raise InstanceNotFound(instance_id)
    text = codec.dumps(codec.encode(result, path=f"item {index} of {step}")) if done else None
    params = [key, step, index, done, attempts, text]
    try:
        _execute(connections[using], params)
    except IntegrityError as error:  # the foreign key: the instance is gone
        raise InstanceNotFound(key, "it was deleted while its map ran") from error
    except DatabaseError as error:
        again(using, error, lambda db: _execute(db, params))


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


def _execute(connection: Any, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(MAP_ITEM_RECORD, params)
