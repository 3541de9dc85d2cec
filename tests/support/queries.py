"""What a block of code costs the database: its statements and its commits, as Django sends them.

Statements are captured with a Django execute wrapper (every statement of the connection, as
``CaptureQueriesContext`` sees them), each labelled by its verb and table (``INSERT
workflow_instances``). Commits are the transactions that end in one: every statement run in
autocommit (its own transaction) plus every ``commit()`` Django makes at the end of an atomic
block. ``BEGIN`` and ``COMMIT`` themselves are sent by psycopg, not executed as statements.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import connections


@dataclass
class Cost:
    """The statements (labelled) and the commits of a block."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0


def label(sql: str) -> str:
    """``VERB table``: what a statement does and to what (a ``WITH`` names its main verb)."""
    words = sql.split()
    head = words[0].upper() if words else ""
    if head == "WITH":
        inner = re.search(r"\(\s*(INSERT|UPDATE|DELETE|SELECT)\b", sql, re.IGNORECASE)
        head = f"WITH {inner.group(1).upper()}" if inner else head
    target = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", sql, re.IGNORECASE)
    return f"{head} {target.group(1)}" if target else head


@contextmanager
def cost(using: str = "default") -> Iterator[Cost]:
    """Count the statements and commits of the block on connection ``using``."""
    connection = connections[using]
    counted = Cost()

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        counted.statements.append(label(sql))
        if connection.get_autocommit():
            counted.commits += 1
        return execute(sql, params, many, context)

    commit = connection.commit

    def counted_commit() -> None:
        counted.commits += 1
        commit()

    connection.commit = counted_commit
    try:
        with connection.execute_wrapper(wrapper):
            yield counted
    finally:
        del connection.commit
