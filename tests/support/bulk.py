"""Many failed instances at once, for the bulk operations' fault test: copies of one stored
instance's row, written by PostgreSQL itself (``INSERT ... SELECT generate_series``)."""

from __future__ import annotations

from uuid import UUID

from django.db import connection

_COPIES = """
INSERT INTO workflow_instances
    (id, workflow, status, workflow_version, state, revision, inserted_at, updated_at)
SELECT gen_random_uuid(), t.workflow, t.status, t.workflow_version, t.state, 1,
       clock_timestamp(), clock_timestamp()
FROM workflow_instances t, generate_series(1, %(n)s)
WHERE t.id = %(id)s
"""


def copies(instance_id: UUID, n: int) -> None:
    """``n`` copies of the stored instance ``instance_id`` (its status and state), new ids."""
    with connection.cursor() as cursor:
        cursor.execute(_COPIES, {"id": instance_id, "n": n})
