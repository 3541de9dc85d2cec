"""``DjangoStorage``: workflow instances in the ``workflow_instances`` table.

Each operation is exactly one SQL statement on the database alias ``using``,
so it takes part in the caller's transaction (``transaction.atomic(using=...)``)
and costs one round trip:

- ``get``: ``SELECT ... WHERE id = %s``
- ``put``: ``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE revision = %s
  RETURNING ...``; no row back means another writer got there first, which
  is :class:`StaleInstanceError`. ``workflow_version`` and ``inserted_at``
  are left out of the update, so they never change.
- ``delete``: ``DELETE ... WHERE id = %s``
- ``query``: ``SELECT ... WHERE <filters> ORDER BY inserted_at, id LIMIT %s``
- ``claim``: ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...``
- ``renew``: ``UPDATE ... SET lease_expires_at WHERE id = %s AND lease_owner = %s``

``update`` (a locked read-modify-write for transitions coming from any process)
is the one composite: a short transaction around ``SELECT ... FOR UPDATE`` and
the ``put``.

Outside a transaction, every operation survives a dropped connection (a restart of
PostgreSQL, a terminated backend): it connects again and goes on, see
:mod:`~hephaestus_django.reconnect`. A ``put`` or ``update`` whose outcome the lost connection
left unknown reads the row to find out, and writes again only if nothing was written.

The state is sent and read as JSON text produced by the codec, so what comes
back is decoded with the same rules as every other backend. Rows are read with
:func:`~hephaestus_django.cursors.fetch_one` and ``fetch_all``: through Django's cursor,
reading timestamps with psycopg's compiled loader where that changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import DatabaseError, connections, transaction

from hephaestus_django.core.errors import (
    CorruptInstanceError,
    InstanceNotFound,
    StaleInstanceError,
)
from hephaestus_django.core.instance import Instance, instance_key
from hephaestus_django.cursors import fetch_all, fetch_one
from hephaestus_django.reconnect import again, dropped
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.document import StoredRow, decode_rows, from_row, to_row
from hephaestus_django.runtime.filters import QueryFilters, parse_filters

TABLE = "workflow_instances"
FIELDS = (
    "id",
    "workflow",
    "status",
    "workflow_version",
    "state",
    "revision",
    "inserted_at",
    "updated_at",
    "due_at",
    "lease_owner",
    "lease_expires_at",
)
"""The columns every read selects, in the order :func:`stored_row` reads them: the order of
the model's fields, so a queryset selecting whole rows reads them in this order too."""
# The state is read as text, for the codec to decode.
_SELECTED = tuple("state::text" if field == "state" else field for field in FIELDS)
COLUMNS = ", ".join(_SELECTED)

SELECT_ONE = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s"
RENEW = f"UPDATE {TABLE} SET lease_expires_at = %s WHERE id = %s AND lease_owner = %s"
# One statement hands each row to one worker: SKIP LOCKED keeps concurrent workers off the rows
# another is claiming, and the revision bump makes every write based on an older read stale.
CLAIM = f"""
WITH candidates AS (
    SELECT id FROM {TABLE}
    WHERE (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= %(now)s)
      AND ((due_at IS NOT NULL AND due_at <= %(now)s) OR status = 'running')
    ORDER BY COALESCE(due_at, updated_at), id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {TABLE} AS claimed
SET lease_owner = %(owner)s, lease_expires_at = %(until)s, revision = claimed.revision + 1
FROM candidates
WHERE claimed.id = candidates.id
RETURNING {", ".join(f"claimed.{field}" for field in _SELECTED)}
"""
DELETE = f"DELETE FROM {TABLE} WHERE id = %s"
# clock_timestamp(), not now(): several puts in one transaction keep their order.
UPSERT = f"""
INSERT INTO {TABLE} AS stored (
    id, workflow, status, workflow_version, state, revision, inserted_at, updated_at,
    lease_owner, lease_expires_at, due_at
)
VALUES (
    %s, %s, %s, %s, %s::jsonb, %s + 1, clock_timestamp(), clock_timestamp(), %s, %s, %s
)
ON CONFLICT (id) DO UPDATE SET
    workflow = EXCLUDED.workflow,
    status = EXCLUDED.status,
    state = EXCLUDED.state,
    revision = stored.revision + 1,
    updated_at = EXCLUDED.updated_at,
    lease_owner = EXCLUDED.lease_owner,
    lease_expires_at = EXCLUDED.lease_expires_at,
    due_at = EXCLUDED.due_at
WHERE stored.revision = %s
RETURNING revision, workflow_version, inserted_at, updated_at
"""
# After a lost connection: is the row what a put of revision %s wrote? (What UPSERT returns.)
WRITTEN = f"""
SELECT revision, workflow_version, inserted_at, updated_at FROM {TABLE}
WHERE id = %s AND revision = %s AND state = %s::jsonb
  AND lease_owner IS NOT DISTINCT FROM %s AND status = %s
"""
REVISION = f"SELECT revision FROM {TABLE} WHERE id = %s"


class DjangoStorage:
    """The storage contract on a Django database alias (PostgreSQL only)."""

    def __init__(self, *, using: str = "default") -> None:
        if not isinstance(using, str) or not using:
            raise ValueError(f"using must be a database alias, not {using!r}")
        self.using = using

    def __repr__(self) -> str:
        return f"DjangoStorage(using={self.using!r})"

    def in_transaction(self) -> bool:
        """Whether this thread is inside ``transaction.atomic()`` on the storage's database.

        The runner then runs a fan-out's branches in this thread, so that they see the
        caller's uncommitted rows as every other step does (a pool thread's connection would
        not).
        """
        return bool(connections[self.using].in_atomic_block)

    def get(self, instance_id: UUID | str) -> Instance:
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        try:
            found = fetch_one(connections[self.using], SELECT_ONE, [key])
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_one(db, SELECT_ONE, [key]))
        if found is None:
            raise InstanceNotFound(instance_id)
        return from_row(stored_row(found))

    def put(self, instance: Instance) -> None:
        row = to_row(instance)
        state = codec.dumps_encoded(row.state)
        params = [
            row.id,
            row.workflow,
            row.status,
            row.workflow_version,
            state,
            row.revision,
            row.lease_owner,
            row.lease_expires_at,
            row.due_at,
            row.revision,
        ]
        try:
            written = fetch_one(connections[self.using], UPSERT, params)
        except DatabaseError as error:
            if not dropped(self.using, error):
                raise
            written = self._put_again(row, state, params)
        if written is None:
            raise StaleInstanceError(instance.id, instance.revision)
        revision, version, inserted_at, updated_at = written
        instance.revision = revision
        instance.workflow_version = version
        instance.inserted_at = inserted_at
        instance.updated_at = updated_at

    def _put_again(self, row: StoredRow, state: str, params: list[Any]) -> Any:
        """After the connection dropped under a put: what it wrote, writing it if it did not.

        The row says whether the lost write landed: then it holds this very state at the next
        revision. If it still holds the revision the put was based on (or is absent, for a new
        instance), nothing was written and the put is made again; any other revision is
        another writer's, and the put is stale (None).
        """
        connection = connections[self.using]
        landed = fetch_one(
            connection,
            WRITTEN,
            [row.id, row.revision + 1, state, row.lease_owner, row.status],
        )
        if landed is not None:
            return landed
        current = fetch_one(connection, REVISION, [row.id])
        if current is None or current[0] == row.revision:
            return fetch_one(connection, UPSERT, params)
        return None

    def update(self, instance_id: UUID | str, change: Callable[[Instance], Instance]) -> Instance:
        """Read the row locked (``SELECT ... FOR UPDATE``), apply ``change``, put, commit.

        The transaction lasts one read and one write: ``change`` is an engine transition,
        never a step, so no lock is held while steps run. If the connection drops before the
        commit, nothing was written and the whole update is made again, ``change`` applied to
        a fresh read; if it drops during the commit, the row says whether the write landed.
        """
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        written: list[Instance] = []
        try:
            return self._update(key, instance_id, change, written)
        except DatabaseError as error:
            if not dropped(self.using, error):
                raise
            if written and self._landed(written[0]):
                return written[0]
            return self._update(key, instance_id, change, [])

    def _update(
        self,
        key: UUID,
        instance_id: UUID | str,
        change: Callable[[Instance], Instance],
        written: list[Instance],
    ) -> Instance:
        with transaction.atomic(using=self.using):
            found = fetch_one(connections[self.using], SELECT_ONE + " FOR UPDATE", [key])
            if found is None:
                raise InstanceNotFound(instance_id)
            current = from_row(stored_row(found))
            changed = change(current)
            if changed is not current:
                self.put(changed)
                written.append(changed)
        return changed

    def _landed(self, instance: Instance) -> bool:
        """Whether the row holds ``instance`` as its put left it (before the commit was lost)."""
        row = to_row(instance)
        state = codec.dumps_encoded(row.state)
        params = [row.id, row.revision, state, row.lease_owner, row.status]
        return fetch_one(connections[self.using], WRITTEN, params) is not None

    def claim(self, owner: str, *, now: datetime, until: datetime, limit: int) -> list[Instance]:
        params = {"owner": owner, "now": now, "until": until, "limit": limit}
        try:
            found = fetch_all(connections[self.using], CLAIM, params)
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_all(db, CLAIM, params))
        return decode_rows(found, stored_row)

    def renew(self, instance_id: UUID | str, owner: str, until: datetime) -> bool:
        key = instance_key(instance_id)
        if key is None:
            return False
        try:
            return _changed(connections[self.using], RENEW, [until, key, owner])
        except DatabaseError as error:
            return again(self.using, error, lambda db: _changed(db, RENEW, [until, key, owner]))

    def delete(self, instance_id: UUID | str) -> None:
        key = instance_key(instance_id)
        if key is None:
            return
        try:
            _changed(connections[self.using], DELETE, [key])
        except DatabaseError as error:
            again(self.using, error, lambda db: _changed(db, DELETE, [key]))

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        parsed = parse_filters(filters, limit=limit)
        if parsed.matches_nothing or parsed.limit == 0:
            return []
        where, params = where_clause(parsed)
        sql = f"SELECT {COLUMNS} FROM {TABLE}{where} ORDER BY inserted_at, id"
        if parsed.limit is not None:
            sql += " LIMIT %s"
            params.append(parsed.limit)
        try:
            found = fetch_all(connections[self.using], sql, params)
        except DatabaseError as error:
            found = again(self.using, error, lambda db: fetch_all(db, sql, params))
        return decode_rows(found, stored_row)


def _changed(connection: Any, sql: str, params: list[Any]) -> bool:
    """Execute a statement that changes rows; whether it changed exactly one."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def where_clause(filters: QueryFilters) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and its parameters for parsed query filters."""
    conditions: list[str] = []
    params: list[Any] = []
    if filters.id is not None:
        conditions.append("id = %s")
        params.append(filters.id)
    if filters.statuses is not None:
        conditions.append("status = ANY(%s)")
        params.append(sorted(filters.statuses))
    if filters.workflow is not None:
        conditions.append("workflow = %s")
        params.append(filters.workflow)
    if filters.workflow_version is not None:
        conditions.append("workflow_version = %s")
        params.append(filters.workflow_version)
    if filters.workflow_family is not None:
        family = filters.workflow_family
        if family.endswith("."):
            conditions.append("workflow LIKE %s")
            params.append(like_prefix(family))
        else:
            conditions.append("(workflow = %s OR workflow LIKE %s)")
            params.extend([family, like_prefix(family + ".")])
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def stored_row(values: Any) -> StoredRow:
    """The row read as the columns of :data:`FIELDS`, in their order, the state as text.

    ``CorruptInstanceError`` if the state's text cannot be read (see :func:`parse_state`).
    """
    (
        instance_id,
        workflow,
        status,
        version,
        state,
        revision,
        inserted_at,
        updated_at,
        due_at,
        lease_owner,
        lease_expires_at,
    ) = values
    loaded = parse_state(instance_id, state)
    return StoredRow(
        id=instance_id,
        workflow=workflow,
        status=status,
        workflow_version=version,
        state=loaded,
        plain=codec.is_plain_jsonb(state, loaded),
        revision=revision,
        inserted_at=inserted_at,
        updated_at=updated_at,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
        due_at=due_at,
    )


def parse_state(instance_id: object, text: str) -> codec.JSON:
    """The ``state`` column's text, parsed; ``CorruptInstanceError`` if it cannot be.

    PostgreSQL always prints valid JSON, but a value written by hand in SQL may be nested
    deeper than Python can parse: that row is corrupt, and must not fail the others read with
    it.
    """
    try:
        return codec.loads(text)
    except ValueError as error:
        problem = f"its JSON cannot be read: {error}"
        raise CorruptInstanceError(instance_id, "state", problem) from None
