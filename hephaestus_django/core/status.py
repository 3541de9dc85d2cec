"""The six statuses an instance moves through."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where an instance is in its life.

    The value is what is stored in the ``status`` column, so a ``Status`` and
    its string are interchangeable in queries.
    """

    PENDING = "pending"
    """Created but not started yet."""
    RUNNING = "running"
    """Has steps that are ready to execute (or executing)."""
    WAITING = "waiting"
    """Every active step waits for an external event or a timer."""
    COMPLETED = "completed"
    """No step is active or waiting: the workflow reached its end."""
    FAILED = "failed"
    """A step failed; nothing else runs until the instance is retried."""
    CANCELLED = "cancelled"
    """Stopped by ``Workflow.cancel``: nothing runs again (after its compensations, if any)."""
