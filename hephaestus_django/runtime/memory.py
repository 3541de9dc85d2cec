"""A thread-safe storage in process memory, for tests and for running without a database.

It keeps each instance as the same JSON text the PostgreSQL backend writes,
so it refuses what PostgreSQL would refuse and gives back fresh objects that
share nothing with the caller's. It passes the same contract suite as
``DjangoStorage``; ship it in your own tests with
``hephaestus_django.runtime.configure(storages={"default": InMemoryStorage()})``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hephaestus_django.core.errors import InstanceNotFound, StaleInstanceError
from hephaestus_django.core.instance import Instance, instance_key
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.document import StoredRow, decode_rows, from_row, to_row
from hephaestus_django.runtime.filters import parse_filters


@dataclass(frozen=True, slots=True)
class _Record:
    row: StoredRow
    text: str


def utcnow() -> datetime:
    return datetime.now(UTC)


class InMemoryStorage:
    """Instances in a dict guarded by a lock; implements the storage contract."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._records: dict[UUID, _Record] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, instance_id: UUID | str) -> Instance:
        key = instance_key(instance_id)
        record = self._records.get(key) if key is not None else None
        if record is None:
            raise InstanceNotFound(instance_id)
        return from_row(replace(record.row, state=codec.loads(record.text)))

    def put(self, instance: Instance) -> None:
        row = to_row(instance)
        text = codec.dumps(row.state)
        with self._lock:
            stored = self._records.get(row.id)
            if stored is not None and stored.row.revision != instance.revision:
                raise StaleInstanceError(instance.id, instance.revision)
            now = self._clock()
            row = replace(
                row,
                state=None,
                revision=instance.revision + 1,
                inserted_at=stored.row.inserted_at if stored else now,
                updated_at=now,
                workflow_version=stored.row.workflow_version if stored else row.workflow_version,
            )
            self._records[row.id] = _Record(row, text)
        instance.revision = row.revision
        instance.inserted_at = row.inserted_at
        instance.updated_at = row.updated_at
        instance.workflow_version = row.workflow_version

    def delete(self, instance_id: UUID | str) -> None:
        key = instance_key(instance_id)
        if key is None:
            return
        with self._lock:
            self._records.pop(key, None)

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        parsed = parse_filters(filters, limit=limit)
        if parsed.matches_nothing:
            return []
        with self._lock:
            records = list(self._records.values())
        matching = sorted(
            (
                record
                for record in records
                if parsed.match(
                    id=record.row.id,
                    status=record.row.status,
                    workflow=record.row.workflow,
                    workflow_version=record.row.workflow_version,
                )
            ),
            key=lambda record: (record.row.inserted_at, str(record.row.id)),
        )
        if parsed.limit is not None:
            matching = matching[: parsed.limit]
        return decode_rows(
            replace(record.row, state=codec.loads(record.text)) for record in matching
        )

    def clear(self) -> None:
        """Forget every instance."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)
